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


def corrections(cohort: Cohort, **kw) -> dict | None:
    data = prepare_data(cohort, label_column=kw.pop("label_column", "super_pop"))
    n_labels = len(data.vocabulary)
    _, per_label = smoothed_frequencies(*class_counts(data.alleles, data.labels, n_labels, data.n_classes),
                                        pseudo_count=0.5)  # (L, V, K), as training calibrates to
    opts = {"setting": "auto", "max_people": 50, "exponent": 0.5, **kw}
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
