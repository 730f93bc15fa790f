"""Fitting the LD prior (genosynth.training.ld_fit): plain and DP bands, the band the SNP spacing can use, the prior stored by training."""

from __future__ import annotations

import numpy as np
import pytest

from genosynth.models.ld_prior import CorrelationPrior
from genosynth.training.ld_fit import fit_prior
from genosynth.errors import PrivacyError


def test_fit_prior_plain_equals_per_label_correlation_band(sim_cohort):
    from genosynth.stats.ld import correlation_band

    prior = fit_prior(sim_cohort, label_column="super_pop", window=5)
    y = sim_cohort.labels("super_pop")
    assert prior.labels == sorted(set(y)) and not prior.private
    g = sim_cohort.genotypes().astype(float)
    for k, lab in enumerate(prior.labels):
        np.testing.assert_allclose(prior.bands[k], correlation_band(g[y == lab], window=5), atol=1e-6)
    back = CorrelationPrior.from_state_dict(prior.state_dict())
    np.testing.assert_array_equal(back.bands, prior.bands)
    assert back.labels == prior.labels and back.info["n_per_label"] == prior.info["n_per_label"]


def test_fit_prior_dp_needs_clip_and_center_and_records_one_event(sim_cohort):
    from genosynth.privacy import PrivacyAccountant

    with pytest.raises(PrivacyError, match="center"):
        fit_prior(sim_cohort, window=4, noise_multiplier=2.0)
    acc = PrivacyAccountant()
    g = sim_cohort.genotypes().astype(float)
    plain = fit_prior(sim_cohort, window=4)
    dp = fit_prior(sim_cohort, window=4, noise_multiplier=0.5, clip=5.0, center=g.mean(0), accountant=acc,
                   rng=np.random.default_rng(0))
    assert dp.private and dp.info["noise_multiplier"] == 0.5 and dp.info["n_per_label"] == {}  # no exact counts
    assert [e["name"] for e in acc.events] == ["correlation_prior"] and acc.events[0]["count"] == 1
    assert not np.allclose(dp.bands, plain.bands)  # noised
    assert np.corrcoef(dp.bands.ravel(), plain.bands.ravel())[0, 1] > 0.5  # ... but still the same LD


def test_stored_band_is_what_the_snp_spacing_can_use(sim_cohort):
    """A sparse panel (SNPs > 1 Mb apart) stores a band of 1; the cap and the copula band apply."""
    import dataclasses

    from genosynth.training.ld_fit import plain_correlation_prior as _plain_correlation_prior
    from genosynth.models.config import tiny_config

    c = sim_cohort.subset(variants=np.arange(30))
    vocab = sorted(set(c.labels("super_pop").tolist()))
    sparse_variants = c.variants.copy()
    sparse_variants["pos"] = np.arange(30) * 2_000_000 + 1  # 2 Mb apart: no pair within max_bp
    sparse = dataclasses.replace(c, variants=sparse_variants)
    cfg = tiny_config()
    state = _plain_correlation_prior(sparse, cfg, vocab)
    assert state["window"] == 1 and state["info"]["copula_window"] == 1
    dense = _plain_correlation_prior(c, cfg.replace(sampling={"corr_latent_window": 12, "corr_window": 5}), vocab)
    assert dense["window"] == 12 and dense["info"]["copula_window"] == 5
    assert _plain_correlation_prior(c, cfg.replace(sampling={"corr_guidance": "none"}), vocab) is None


def test_generator_stores_the_prior_and_samples_guided_or_plain(sim_cohort):
    from genosynth.models.config import tiny_config
    from genosynth.training.plain import train_generator

    small = sim_cohort.subset(samples=np.arange(0, 300, 5), variants=np.arange(48))  # 20 per population
    model = train_generator(small, config=tiny_config(), seed=0)
    assert model.corr_prior is not None and model.corr_prior.bands.shape[:2] == (3, 48)
    assert not model.corr_prior.private
    # the first 48 SNPs lie within 1 Mb of each other: the band holds every earlier SNP (47), not 768
    assert model.corr_prior.window == 47 and model.corr_prior.info["copula_window"] == 47
    narrow = train_generator(small, config=tiny_config(sampling={"corr_window": 4, "corr_latent_window": 10}), seed=0)
    assert narrow.corr_prior.window == 10 and narrow.corr_prior.info["copula_window"] == 4
    # the copula band is a training choice stored with the prior; latent guidance uses the whole band
    assert np.array_equal(narrow.corr_prior.bands, model.corr_prior.bands[:, :, :10])
    plain = model.sample(12, seed=1, corr_guidance="none")
    guided = model.sample(12, seed=1)  # default latent+copula
    again = model.sample(12, seed=1)
    assert np.array_equal(guided.alleles, again.alleles)
    assert not np.array_equal(plain.alleles, guided.alleles)
    off = train_generator(small, config=tiny_config(sampling={"corr_guidance": "none"}), seed=0)
    assert off.corr_prior is None and off.meta["correlation_prior"] is None
    # a model without a prior decodes plainly whatever is asked
    assert np.array_equal(off.sample(12, seed=1).alleles, off.sample(12, seed=1, corr_guidance="copula").alleles)
