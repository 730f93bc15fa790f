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


def test_missing_calls_are_filled_with_the_whole_cohorts_mean_per_label(sim_cohort):
    """Labels are fitted one at a time from the int8 calls; missing ones take the cohort-wide called mean."""
    from genosynth.cohort import Cohort
    from genosynth.stats.ld import correlation_band

    g = sim_cohort.genotypes().copy()  # (N, V) int8
    g[np.random.default_rng(1).random(g.shape) < 0.1] = -1
    masked = Cohort(g, sim_cohort.variants, sim_cohort.samples, phased=False)
    prior = fit_prior(masked, label_column="super_pop", window=5)
    y = masked.labels("super_pop")
    called = np.where(g >= 0, g, 0).sum(0) / np.maximum((g >= 0).sum(0), 1)  # (V,) mean of the called
    filled = np.where(g >= 0, g, called[None]).astype(float)  # (N, V)
    for k, lab in enumerate(prior.labels):
        np.testing.assert_allclose(prior.bands[k], correlation_band(filled[y == lab], window=5), atol=1e-6)


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
    # the first 48 SNPs lie within 1 Mb of each other: the band is fitted over every earlier SNP (47),
    # not 768, and stored as far as the shrunk correlations reach (this LD reaches across the region)
    assert model.corr_prior.info["fitted_window"] == 47 and model.corr_prior.window == 47
    assert model.corr_prior.info["copula_window"] == 47
    narrow = train_generator(small, config=tiny_config(sampling={"corr_window": 4, "corr_latent_window": 10}), seed=0)
    assert narrow.corr_prior.window == 10 and narrow.corr_prior.info["copula_window"] == 4
    # the copula band is a training choice stored with the prior; latent guidance uses the whole band.
    # The shrinkage is fitted to the entries of the band, so a narrower band shrinks a little differently
    a, b = narrow.corr_prior.bands, model.corr_prior.bands[:, :, :10]
    assert np.abs(a - b).mean() < 0.2 * np.abs(b).mean() and np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.95
    plain = model.sample(12, seed=1, corr_guidance="none")
    guided = model.sample(12, seed=1)  # default latent+copula
    again = model.sample(12, seed=1)
    assert np.array_equal(guided.alleles, again.alleles)
    assert not np.array_equal(plain.alleles, guided.alleles)
    off = train_generator(small, config=tiny_config(sampling={"corr_guidance": "none"}), seed=0)
    assert off.corr_prior is None and off.meta["correlation_prior"] is None
    # a model without a prior decodes plainly whatever is asked
    assert np.array_equal(off.sample(12, seed=1).alleles, off.sample(12, seed=1, corr_guidance="copula").alleles)


# ---------------------------------------------------------------------------------------------------------------
# shrinkage of the plain prior by its sampling noise (issue 21: no invented LD where the data are thin)
# ---------------------------------------------------------------------------------------------------------------

def _independent_cohort(n_per_label=20, v=60, *, labels=("A", "B", "C"), spacing=10_000, seed=0, phased=False):
    """People whose SNPs are independent draws from their label's allele frequencies (no LD at all)."""
    from genosynth.cohort import Cohort, make_samples, make_variants

    rng = np.random.default_rng(seed)
    rows, pops = [], []
    for lab in labels:
        p = rng.uniform(0.1, 0.5, size=v)  # (V,) this label's frequencies
        rows.append((rng.random((n_per_label, 2, v)) < p).astype(np.int8))  # (n, 2, V) haplotypes
        pops += [lab] * n_per_label
    hap = np.concatenate(rows)  # (N, 2, V)
    variants = make_variants(chrom=["1"] * v, pos=(np.arange(v) + 1) * spacing, ref=["A"] * v, alt=["G"] * v)
    samples = make_samples([f"i{k}" for k in range(len(pops))], pop=pops, super_pop=pops)
    if phased:
        return Cohort(hap.reshape(-1, v), variants, samples, phased=True)
    return Cohort(hap.sum(axis=1).astype(np.int8), variants, samples, phased=False)


def test_shrunk_prior_of_independent_snps_is_about_zero():
    c = _independent_cohort(n_per_label=15, v=80)
    raw = fit_prior(c, window=12)
    shrunk = fit_prior(c, window=12, shrink=True)
    assert raw.bands.shape == shrunk.bands.shape and not shrunk.private
    assert np.abs(raw.bands).max() > 0.5  # 15 people per label: chance correlations of size 0.5+
    assert np.abs(shrunk.bands).max() < 0.1  # ... all ~0 once shrunk by their noise
    assert (shrunk.bands.astype(float) ** 2).mean() < 0.02 * (raw.bands.astype(float) ** 2).mean()
    assert max(shrunk.info["shrinkage"]["kept_fraction"]) < 0.05


def test_shrunk_prior_keeps_strong_ld(sim_cohort):
    c = sim_cohort.subset(variants=np.arange(120))  # 100 people per population, dense msprime LD
    raw = fit_prior(c, window=16)
    shrunk = fit_prior(c, window=16, shrink=True)
    strong = np.abs(raw.bands) > 0.5
    assert strong.sum() > 200
    kept = np.abs(shrunk.bands[strong]).sum() / np.abs(raw.bands[strong]).sum()
    assert kept > 0.85
    assert (np.sign(shrunk.bands[strong]) == np.sign(raw.bands[strong])).mean() > 0.99


def test_smaller_cohort_is_shrunk_more(sim_cohort):
    from _testlib import label_subset

    big = label_subset(sim_cohort, (100, 100, 100), n_variants=120)
    few = label_subset(sim_cohort, (12, 12, 12), n_variants=120)
    kept_big = np.mean(fit_prior(big, window=16, shrink=True).info["shrinkage"]["kept_fraction"])
    kept_few = np.mean(fit_prior(few, window=16, shrink=True).info["shrinkage"]["kept_fraction"])
    assert kept_few < kept_big - 0.1


def test_dp_prior_cannot_take_the_plain_shrinkage(sim_cohort):
    from genosynth.errors import InputError

    g = sim_cohort.genotypes().astype(float)
    with pytest.raises(InputError, match="shrink_correlation_bands"):
        fit_prior(sim_cohort, window=4, noise_multiplier=1.0, clip=5.0, center=g.mean(0), shrink=True)


def test_stored_band_ends_where_the_data_support_ld():
    """A cohort without LD stores a band of 1 (all ~0); training stores the shrunk band."""
    from genosynth.training.ld_fit import plain_correlation_prior
    from genosynth.models.config import tiny_config

    c = _independent_cohort(n_per_label=15, v=80)
    vocab = sorted(set(c.labels("super_pop").tolist()))
    state = plain_correlation_prior(c, tiny_config(sampling={"corr_latent_window": 40, "corr_window": 8}), vocab)
    assert state["window"] == 1 and state["info"]["fitted_window"] == 40
    assert np.abs(state["bands"]).max() < 0.05
    raw = plain_correlation_prior(c, tiny_config(sampling={"corr_latent_window": 40, "corr_window": 8}), vocab, shrink=False)
    assert raw["window"] == 40 and np.abs(raw["bands"]).max() > 0.5


def _near_r2(c, labels, lags=range(1, 6)) -> float:
    """Mean within-label r² of SNP pairs ``lag`` apart (ALT dosages; monomorphic pairs left out)."""
    from genosynth.stats.ld import correlation_band

    g = c.genotypes().astype(float)
    vals = []
    for lab in sorted(set(labels.tolist())):
        band = correlation_band(g[labels == lab], window=max(lags))  # (V, w)
        sd = g[labels == lab].std(axis=0)
        for lag in lags:
            ok = (sd[:-lag] > 0) & (sd[lag:] > 0)
            vals.append(band[: len(sd) - lag, lag - 1][ok] ** 2)
    return float(np.concatenate(vals).mean())


def test_cohort_without_ld_gives_synthetic_ld_within_noise_of_zero():
    """Acceptance (issue 21): trained with tiny_config and sampled with the default (guided) decoding."""
    from genosynth.models.config import tiny_config
    from genosynth.training.plain import train_generator

    train = _independent_cohort(n_per_label=15, v=48, phased=True, seed=1)
    model = train_generator(train, config=tiny_config(), seed=0)
    assert model.config.sampling.corr_guidance != "none" and model.corr_prior is not None
    n = 300
    syn = model.sample(n, seed=2, batch_size=2 * n)  # default decoding, one batch
    r2_syn = _near_r2(syn, syn.labels("super_pop"))
    # independent draws of the same size from the same kind of cohort: what "no LD" looks like at n
    null = [_near_r2(c, c.labels("super_pop")) for c in
            (_independent_cohort(n_per_label=n // 3, v=48, seed=s) for s in (11, 12, 13))]
    assert r2_syn < max(null) * 1.3, (r2_syn, null)
