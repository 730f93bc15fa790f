"""The LD prior's options: CorrGuideConfig checks its fields at the door."""

from __future__ import annotations

import pytest

from genosynth.errors import InputError
from genosynth.models.ld_prior import CorrGuideConfig


def test_corr_guide_config_defaults_reach_only_copula_decoding():
    cfg = CorrGuideConfig()
    assert cfg.method == "latent+copula" and cfg.reach == "copula"
    assert 0 < cfg.reach_floor < cfg.var_floor  # the relaxed guards are looser than the default ones


@pytest.mark.parametrize("fields, message", [
    ({"reach": "sometimes"}, "reach must be one of"),
    ({"reach_r": 1.0}, "reach_r"),
    ({"reach_step": 0.0}, "reach_step"),
    ({"reach_af": 0.6}, "reach_af"),
    ({"reach_partners": -1}, "reach_partners"),
    ({"reach_floor": 0.0}, "reach_floor"),
])
def test_corr_guide_config_rejects_bad_reach_options(fields, message):
    with pytest.raises(InputError, match=message):
        CorrGuideConfig(**fields)
