"""Tests of the DP plan's options (genosynth.training.dp_plan): the frequency release's clip and centre."""

from __future__ import annotations

import numpy as np
import pytest
from _testlib import small_privacy

from genosynth.errors import InputError, PrivacyError
from genosynth.models.config import tiny_config
from genosynth.privacy.releases import PUBLIC_CLIP_FRACTION, release_label_frequencies
from genosynth.training.dp_plan import PrivacyConfig, plan_private


def test_frequency_clip_default_is_left_to_the_release(small):
    """``frequency_clip=None`` plans like any clip (the noise multiplier does not depend on it); a clip out of
    (0, 1] is refused, and so is an unknown centre."""
    assert PrivacyConfig().frequency_clip is None and PrivacyConfig().frequency_centre == "one"
    z = {c: plan_private(small, config=tiny_config(), privacy=small_privacy(frequency_clip=c))[0]["allele_frequencies"]
         for c in (None, 0.7, 1.0)}
    assert z[None] == z[0.7] == z[1.0]
    for bad in (0.0, 1.5):
        with pytest.raises(PrivacyError, match="--frequency-clip"):
            plan_private(small, config=tiny_config(), privacy=small_privacy(frequency_clip=bad))
    with pytest.raises(InputError, match="frequency centre"):
        plan_private(small, config=tiny_config(), privacy=small_privacy(frequency_centre="half"))


def test_default_clip_is_one_centred_on_one_and_the_public_bound_centred_on_public_rows():
    """``None`` releases as clip 1 centred on 1 (with or without public rows) and as ``PUBLIC_CLIP_FRACTION`` centred
    on public rows (same draws)."""
    rng = np.random.default_rng(2)
    v, n = 120, 30
    p = rng.uniform(0.1, 0.9, size=(2, v))
    y = np.repeat([0, 1], n)
    dos = rng.binomial(2, p[y]).astype(np.float64)  # (2n, V)
    public = np.vstack([p[0], np.full(v, np.nan)])
    kw = dict(noise_multiplier=0.5, rng=None)
    for pub, centre, clip in ((None, "one", 1.0), (public, "one", 1.0), (None, "public", 1.0),
                              (public, "public", PUBLIC_CLIP_FRACTION)):
        a = release_label_frequencies(dos, y, 2, public_freq=pub, clip_fraction=None, centre=centre,
                                      **{**kw, "rng": np.random.default_rng(4)})
        b = release_label_frequencies(dos, y, 2, public_freq=pub, clip_fraction=clip, centre=centre,
                                      **{**kw, "rng": np.random.default_rng(4)})
        assert np.array_equal(a["freq"], b["freq"]) and np.array_equal(a["counts"], b["counts"])
    c = release_label_frequencies(dos, y, 2, public_freq=public, clip_fraction=1.0, centre="public",
                                  **{**kw, "rng": np.random.default_rng(4)})
    assert not np.array_equal(c["freq"], b["freq"])
