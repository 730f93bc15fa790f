"""Fine-label (population) corrections of a model conditioned on super population (training/calibration.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genosynth.cohort import Cohort
from genosynth.errors import InputError
from genosynth.training.calibration import fine_label_corrections
from genosynth.training.data import class_counts, prepare_data, smoothed_frequencies

from _testlib import nested_cohort


def admixed_cohort(*, n_per: int = 15, v: int = 400, seed: int = 0) -> tuple[Cohort, dict]:
    """Unphased people of 2 super populations: ``SRC`` (populations ``A``, ``AB``: 100 / 90 % source ``A``) and ``MIX``
    (populations ``M2``, ``M5``, ``M8``: 20 / 50 / 80 % ``A`` ancestry, each person its own share within
    +-0.1). Returns the cohort and each population's true ALT frequencies (V,)."""
    from genosynth.cohort import make_samples, make_variants

    rng = np.random.default_rng(seed)
    pa, pb = rng.uniform(0.05, 0.95, v), rng.uniform(0.05, 0.95, v)
    share = {"A": 1.0, "AB": 0.9, "M2": 0.2, "M5": 0.5, "M8": 0.8}
    g, pops, supers = [], [], []
    for pop, m in share.items():
        own = np.clip(m + rng.uniform(-0.1, 0.1, (n_per, 1)), 0, 1) if pop.startswith("M") else np.full((n_per, 1), m)
        g.append(rng.binomial(2, own * pa + (1 - own) * pb))
        pops += [pop] * n_per
        supers += ["MIX" if pop.startswith("M") else "SRC"] * n_per
    variants = make_variants(chrom=["1"] * v, pos=(np.arange(v) + 1) * 10_000, ref=["A"] * v, alt=["G"] * v)
    cohort = Cohort(np.concatenate(g).astype(np.int8), variants, make_samples(range(len(pops)), pop=pops,
                                                                               super_pop=supers), phased=False)
    return cohort, {pop: m * pa + (1 - m) * pb for pop, m in share.items()}


def decoded_alt(cohort: Cohort, fl: dict) -> tuple[np.ndarray, np.ndarray]:
    """(each population's ALT frequencies after its correction, its super population's), both (Lf, V)."""
    data = prepare_data(cohort, label_column="super_pop")
    _, per_label = smoothed_frequencies(*class_counts(data.alleles, data.labels, 2, 3), pseudo_count=0.5)
    q = per_label[fl["parent"]].double() * fl["correction"].double().exp()  # (Lf, V, K)
    alt = ((q / q.sum(-1, keepdim=True)) * torch.arange(3.0)).sum(-1).numpy() / 2
    sup = (per_label[fl["parent"]].double() * torch.arange(3.0)).sum(-1).numpy() / 2
    return alt, sup


def corrections(cohort: Cohort, **kw) -> dict | None:
    data = prepare_data(cohort, label_column=kw.pop("label_column", "super_pop"))
    n_labels = len(data.vocabulary)
    _, per_label = smoothed_frequencies(*class_counts(data.alleles, data.labels, n_labels, data.n_classes),
                                        pseudo_count=0.5)  # (L, V, K), as training calibrates to
    opts = {"setting": "auto", "max_people": 50, "exponent": 0.5, "rank": 0, **kw}  # rank 0: per-SNP shrinkage
    return fine_label_corrections(cohort, data, per_label, label_column="super_pop", **opts)


def test_divergence_is_estimated_from_unsmoothed_frequencies():
    """F of 15 people per population: near the simulated 0.03 (smoothed frequencies gave about half)."""
    fl = corrections(nested_cohort(n_per=15, f=0.03))
    assert fl["column"] == "pop" and fl["labels"] == ["AFR0", "AFR1", "AFR2", "EUR0", "EUR1", "EUR2"]
    assert fl["parent"] == [0, 0, 0, 1, 1, 1] and fl["correction"].shape == (6, 400, 3)
    assert all(0.018 < f < 0.045 for f in fl["F"]), fl["F"]
    assert np.isclose(sum(fl["mix"].values()), 1.0)


def test_corrections_grow_with_divergence_and_shrink_with_the_exponent():
    same = corrections(nested_cohort(n_per=15, f=0.0, seed=1))["correction"].abs().mean()
    cohort = nested_cohort(n_per=15, f=0.05, seed=1)
    half, mean, raw = (corrections(cohort, exponent=e)["correction"].abs().mean() for e in (0.5, 1.0, 0.0))
    assert same < 0.5 * mean  # identical populations: little to correct (the noise is shrunk away)
    assert mean < half < raw  # posterior mean < constrained Bayes < the populations' own frequencies


def test_corrections_move_decoded_frequencies_to_the_shrunk_population_frequencies():
    """Adding a population's correction to its super population's frequencies gives frequencies between the
    super population's and the population's own, closer to the population's the more it differs."""
    cohort = nested_cohort(n_per=15, f=0.2, seed=2)
    fl = corrections(cohort)
    data = prepare_data(cohort, label_column="super_pop")
    _, per_label = smoothed_frequencies(*class_counts(data.alleles, data.labels, 2, 3), pseudo_count=0.5)
    pop = cohort.labels("pop")
    own = np.stack([cohort.genotypes()[pop == lab].mean(0) / 2 for lab in fl["labels"]])  # (6, V)
    q = per_label[fl["parent"]] * fl["correction"].exp()  # (6, V, K)
    alt = ((q / q.sum(-1, keepdim=True)) * torch.arange(3.0)).sum(-1).numpy() / 2  # (6, V)
    sup = (per_label[fl["parent"]] * torch.arange(3.0)).sum(-1).numpy() / 2  # (6, V)
    moved = np.corrcoef((alt - sup).ravel(), (own - sup).ravel())[0, 1]
    assert moved > 0.95  # in the direction of the population's own frequencies
    slope = ((alt - sup) * (own - sup)).sum() / ((own - sup) ** 2).sum()
    assert 0.6 < slope < 1.0  # F = 0.2, 30 alleles: w ~ 0.88, w ** 0.5 ~ 0.94 (minus smoothing)


def test_auto_stores_corrections_only_for_thin_nested_populations():
    assert corrections(nested_cohort(n_per=60, f=0.03, v=50)) is None  # 60 people per population: not thin
    assert corrections(nested_cohort(n_per=60, f=0.03, v=50), max_people=0) is not None  # 0 = always
    assert corrections(nested_cohort(n_per=15, f=0.03, v=50), setting="off") is None
    lone = nested_cohort(n_per=15, f=0.03, v=50, pops_per_super=1)  # one population per super population
    assert corrections(lone) is None
    with pytest.raises(InputError, match="no 'region' column"):
        corrections(lone, setting="region")


def test_ancestry_spread_sees_admixture_and_not_genotype_noise():
    """People of one label with varying admixture proportions have a spread along the labels' axis; people
    drawn from their label's frequencies alone have (almost) none."""
    from genosynth.cohort import make_samples, make_variants
    from genosynth.training.calibration import label_ancestry_spread

    rng = np.random.default_rng(4)
    v, n = 300, 80
    pa, pb = rng.uniform(0.05, 0.95, v), rng.uniform(0.05, 0.95, v)
    plain = np.concatenate([rng.binomial(2, pa, (n, v)), rng.binomial(2, pb, (n, v))])
    share = rng.uniform(0, 1, (n, 1))  # label B people: each its own share of A ancestry
    admixed = np.concatenate([rng.binomial(2, pa, (n, v)), rng.binomial(2, share * pa + (1 - share) * pb)])
    variants = make_variants(chrom=["1"] * v, pos=(np.arange(v) + 1) * 10_000, ref=["A"] * v, alt=["G"] * v)
    spreads = []
    for g in (plain, admixed):
        cohort = Cohort(g.astype(np.int8), variants, make_samples(range(2 * n), super_pop=["A"] * n + ["B"] * n),
                        phased=False)
        data = prepare_data(cohort, label_column="super_pop")
        _, per_label = smoothed_frequencies(*class_counts(data.alleles, data.labels, 2, 3), pseudo_count=0.5)
        spread = label_ancestry_spread(cohort, data, per_label)
        assert spread["basis"].shape == (v, 1) and spread["freq"].shape == (2, v)
        spreads.append(spread["cov"][:, 0, 0])
    axis = float(((pa - pb) ** 2).sum())  # squared distance between the labels along their axis
    assert spreads[0].max() < 0.01 * axis  # genotype noise is taken out
    assert spreads[1][1] > 0.04 * axis and spreads[1][0] < 0.01 * axis  # Var(share) = 1/12 of it, for B only


def test_principal_axes_are_the_top_pcs_of_the_standardised_people():
    from genosynth.training.calibration import principal_axes

    cohort, _ = admixed_cohort(v=120)
    g = cohort.genotypes().copy()
    g[::7, ::5] = -1  # missing calls count as the centre
    cohort = Cohort(g, cohort.variants, cohort.samples, phased=False)
    q = np.where(g < 0, np.nan, g).astype(float)
    freq = np.nanmean(q, axis=0) / 2  # (V,)
    axes = principal_axes(cohort, freq=freq, rank=3, chunk=50)  # three chunks of SNPs
    x = np.where(g < 0, 0.0, (g - 2 * freq) / np.sqrt(2 * freq * (1 - freq)))
    vt = np.linalg.svd(x, full_matrices=False)[2][:3].T  # (V, 3)
    assert axes.shape == (120, 3) and np.allclose(axes.T @ axes, np.eye(3), atol=1e-8)
    assert np.allclose(np.abs((axes * vt).sum(0)), 1.0, atol=1e-8)  # the same axes up to sign
    assert principal_axes(cohort, freq=freq, rank=500).shape == (120, cohort.n_samples - 1)
    assert principal_axes(cohort, freq=freq).shape == (120, 1)  # one axis of structure (the admixture) above noise
    rng = np.random.default_rng(0)
    flat = Cohort(rng.binomial(2, freq, g.shape).astype(np.int8), cohort.variants, cohort.samples, phased=False)
    assert principal_axes(flat, freq=freq).shape == (120, 1)  # no structure above the edge: the floor of one axis
    five = nested_cohort(n_per=20, f=0.1, v=200, seed=1)  # 6 drifted populations: 5 axes
    f5 = five.genotypes().mean(0) / 2
    assert principal_axes(five, freq=f5).shape == (200, 5)
    few = principal_axes(five, freq=f5, max_people=60)  # evenly spaced 60 of the 120 people: the same axes
    assert few.shape == (200, 5) and np.linalg.svd(few.T @ principal_axes(five, freq=f5), compute_uv=False).min() > 0.8


def test_axis_corrections_put_admixed_populations_at_their_ancestry():
    """Populations that differ by their share of two sources: the corrections along the principal axes
    (default rank: the axes above the noise edge, here the one admixture axis) bring each population's
    frequencies close to its true ones, closer than the per-SNP shrinkage, whose estimate keeps each
    SNP's sampling noise."""
    cohort, truth = admixed_cohort(seed=3)
    axes = corrections(cohort, rank=-1)
    assert axes["rank"] == 1 and axes["labels"] == ["A", "AB", "M2", "M5", "M8"] and axes["parent"] == [1, 1, 0, 0, 0]
    alt, sup = decoded_alt(cohort, axes)
    true = np.stack([truth[lab] for lab in axes["labels"]])  # (5, V)
    assert np.corrcoef((alt - sup)[2:].ravel(), (true - sup)[2:].ravel())[0, 1] > 0.8  # moved along the admixture
    err_axes = ((alt - true) ** 2).mean()
    err_none = ((sup - true) ** 2).mean()
    err_shrink = ((decoded_alt(cohort, corrections(cohort, exponent=1.0))[0] - true) ** 2).mean()
    # (all three keep the super population's own sampling noise)
    assert err_axes < 0.9 * err_shrink and err_axes < 0.6 * err_none, (err_axes, err_shrink, err_none)


def test_axis_corrections_mix_back_to_the_super_population_classes():
    """The populations of a super population, mixed as in training, decode its genotype-class frequencies:
    the binomial tilt alone takes the heterozygote deficit of the populations' differences a second time."""
    cohort, _ = admixed_cohort(seed=9)
    data = prepare_data(cohort, label_column="super_pop")
    _, per_label = smoothed_frequencies(*class_counts(data.alleles, data.labels, 2, 3), pseudo_count=0.5)
    fl = corrections(cohort, rank=-1)
    tilted = per_label[fl["parent"]].double() * fl["correction"].double().exp()
    tilted = tilted / tilted.sum(-1, keepdim=True)  # (5, V, 3)
    weight = torch.tensor([fl["mix"][lab] for lab in fl["labels"]], dtype=torch.float64)
    for j in (0, 1):
        members = [i for i, p in enumerate(fl["parent"]) if p == j]
        mixed = (weight[members, None, None] * tilted[members]).sum(0) / weight[members].sum()  # (V, 3)
        assert (mixed - per_label[j]).abs().max() < 0.01  # without the recentring: up to 0.10
        assert abs(float(mixed[:, 1].mean() - per_label[j][:, 1].mean())) < 0.001  # heterozygotes kept (else -0.019)
    mix_alt = (tilted[2:] * torch.arange(3.0)).sum(-1) / 2  # (3, V) the admixed populations still differ
    assert float((mix_alt[0] - mix_alt[2]).abs().mean()) > 0.1


def test_axis_corrections_of_haplotype_rows_match_those_of_genotypes():
    """A phased cohort (2 allele classes per row) gets the same offsets as its unphased genotypes (3 classes)."""
    cohort, _ = admixed_cohort(seed=8)
    g = cohort.genotypes()
    hap = np.stack([(g >= 1), (g == 2)], axis=1).reshape(-1, g.shape[1]).astype(np.int8)  # (2N, V) rows 2i, 2i+1
    phased = Cohort(hap, cohort.variants, cohort.samples, phased=True)
    shifts = []
    for c in (cohort, phased):
        data = prepare_data(c, label_column="super_pop")
        k = data.n_classes
        _, per_label = smoothed_frequencies(*class_counts(data.alleles, data.labels, 2, k), pseudo_count=0.5)
        fl = fine_label_corrections(c, data, per_label, label_column="super_pop", setting="auto", max_people=50,
                                    exponent=0.5, rank=-1)
        assert fl["correction"].shape == (5, 400, k)
        q = per_label[fl["parent"]].double() * fl["correction"].double().exp()
        alt = ((q / q.sum(-1, keepdim=True)) * torch.arange(k)).sum(-1) / (k - 1)
        shifts.append((alt - (per_label[fl["parent"]].double() * torch.arange(k)).sum(-1) / (k - 1)).numpy())
    assert np.corrcoef(shifts[0].ravel(), shifts[1].ravel())[0, 1] > 0.99


def test_axis_corrections_leave_a_members_private_allele_out():
    """An allele only one training person carries moves its population's per-SNP estimate by about 1/30;
    along the axes it enters as one of all 75 people in a regression on their PC scores, so it moves less
    (weighted by how far the person and the population lie out along the axes: M2 is far out here)."""
    cohort, _ = admixed_cohort(seed=5)
    g = cohort.genotypes().copy()
    g[:, 7] = 0
    g[40, 7] = 1  # person 40 (population M2) alone carries the ALT allele of SNP 7
    cohort = Cohort(g, cohort.variants, cohort.samples, phased=False)
    axes, shrink = corrections(cohort, rank=-1), corrections(cohort, exponent=0.0)
    pop = axes["labels"].index("M2")
    moved = [abs(decoded_alt(cohort, fl)[0][pop, 7] - decoded_alt(cohort, fl)[1][pop, 7]) for fl in (axes, shrink)]
    assert moved[0] < 0.6 * moved[1], moved


def test_spread_around_populations_keeps_only_what_lies_within_them():
    """With population corrections the spread is measured from each person's population: the admixed
    populations' different centres no longer count as spread; each person's own share (+-0.1) still does."""
    from genosynth.training.calibration import label_ancestry_spread

    cohort, _ = admixed_cohort(n_per=40, seed=6)
    data = prepare_data(cohort, label_column="super_pop")
    _, per_label = smoothed_frequencies(*class_counts(data.alleles, data.labels, 2, 3), pseudo_count=0.5)
    fl = corrections(cohort, rank=-1)
    around_label = label_ancestry_spread(cohort, data, per_label)["cov"][0, 0, 0]  # MIX, its one axis
    around_pop = label_ancestry_spread(cohort, data, per_label, fine=fl)["cov"][0, 0, 0]
    assert 0 < around_pop < 0.25 * around_label, (around_pop, around_label)  # Var(share): 0.0033 vs 0.043


def test_temperature_for_entropy_finds_the_temperature_of_sharper_logits():
    """The draws' entropy curve reaches the target entropy of the same logits at temperature 0.5; targets
    outside the curve take the grid's ends (never above 1)."""
    from genosynth.training.calibration import decoded_entropy, temperature_for_entropy

    logits = torch.randn(64, 2, 300, generator=torch.Generator().manual_seed(0)) * 2.0  # (B, K, V)
    grid = np.linspace(0.25, 1.0, 31)
    curve = decoded_entropy(logits, grid)
    assert np.all(np.diff(curve) > 0)  # sharper at lower temperature
    target = decoded_entropy(logits / 0.5, np.array([1.0]))[0]
    assert temperature_for_entropy(curve, grid, target) == pytest.approx(0.5, abs=0.01)
    assert temperature_for_entropy(curve, grid, curve[-1] + 0.1) == 1.0
    assert temperature_for_entropy(curve, grid, 0.0) == 0.25


def test_fitted_temperature_is_stored_used_and_brings_draws_to_the_training_entropy(small, tmp_path):
    """Training with ``fit_temperature``: the checkpoint holds the fitted temperature, the loaded model
    samples with it (and its stored copula factors were solved for it), and at that temperature the
    DiT's draws decode with the training rows' entropy (a VAE trained long and a DiT trained for one
    epoch: the DiT draws blurred latents, so the fit is well below 1)."""
    from genosynth.models.checkpoint import load_checkpoint
    from genosynth.models.config import tiny_config
    from genosynth.models.solvers import sample_latents
    from genosynth.sampling.generator import Generator
    from genosynth.training.calibration import decoded_entropy, fit_temperature
    from genosynth.training.plain import encode_posterior, train_generator

    path = str(tmp_path / "fit.pt")
    cfg = tiny_config(training={"fit_temperature": True, "vae_epochs": 20, "dit_epochs": 1},
                      sampling={"corr_guidance": "copula"})
    train_generator(small, config=cfg, seed=5, checkpoint=path)
    ck = load_checkpoint(path)
    t = ck["decoder_temperature"]
    assert 0.25 < t < 0.9
    model = Generator.load(path)
    assert model.config.sampling.temperature == t
    assert ck["copula_factors"]["signature"]["temperature"] == t
    # the fit's own claim, recomputed with fresh draws: entropy at t matches the training rows'
    data = prepare_data(small, label_column=cfg.label_column, mode=cfg.mode)
    mu, _ = encode_posterior(model.vae, data.alleles, torch.device("cpu"))
    fit = fit_temperature(model.vae, model.dit, model.diffusion, mu, data.labels, model.latent_scale, rows=64,
                          steps=cfg.training.calibration_steps, sampler=cfg.sampling.sampler,
                          rng=torch.Generator().manual_seed(1), dev=torch.device("cpu"))
    assert fit["entropy_draws"] > fit["entropy_train"]
    assert abs(fit["temperature"] - t) < 0.15  # another set of rows, about the same temperature
    y = torch.zeros(64, dtype=torch.long)
    z = sample_latents(model.diffusion, model.dit, (64, model.vae.config.latent_channels, model.vae.n_tokens),
                       sampler=cfg.sampling.sampler, cond={"y": y}, steps=cfg.training.calibration_steps,
                       noise=torch.randn(64, model.vae.config.latent_channels, model.vae.n_tokens,
                                         generator=torch.Generator().manual_seed(2)), device=torch.device("cpu"))
    with torch.no_grad():
        drawn = decoded_entropy(model.vae.decode(z / model.latent_scale, y), np.array([1.0, fit["temperature"]]))
    excess = drawn[0] - fit["entropy_train"]  # how much more blurred the draws are at temperature 1
    assert excess > 0 and abs(drawn[1] - fit["entropy_train"]) < 0.5 * excess


def test_models_trained_without_the_fit_keep_temperature_one(trained):
    from genosynth.models.checkpoint import load_checkpoint
    from genosynth.sampling.generator import Generator

    _, path = trained
    assert "decoder_temperature" not in load_checkpoint(path)
    assert Generator.load(path).config.sampling.temperature == 1.0
