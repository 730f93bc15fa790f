"""Calibration generators and the train/holdout split."""

from __future__ import annotations

import numpy as np
import pytest

from genosynth.errors import InputError
from genosynth.evaluate import copy_generator, independent_snps_generator, split_train_holdout


def test_split_is_stratified_disjoint_and_seeded(sim_cohort):
    train, holdout = split_train_holdout(sim_cohort, holdout_fraction=0.2, seed=4)
    assert train.n_samples + holdout.n_samples == sim_cohort.n_samples
    assert not set(train.samples["sample"]) & set(holdout.samples["sample"])
    _, counts = np.unique(holdout.labels("super_pop"), return_counts=True)
    assert (counts == 20).all()  # 100 per super population in the fixture
    again = split_train_holdout(sim_cohort, holdout_fraction=0.2, seed=4)[1]
    assert list(again.samples["sample"]) == list(holdout.samples["sample"])
    with pytest.raises(InputError, match="holdout_fraction"):
        split_train_holdout(sim_cohort, holdout_fraction=1.0)


def test_copy_generator_returns_training_people(sim_cohort):
    c = copy_generator(sim_cohort, n=50, seed=1)
    rows = {r.tobytes() for r in sim_cohort.genotypes()}
    assert c.n_samples == 50 and all(r.tobytes() in rows for r in c.genotypes())
    assert c.samples["sample"].str.startswith("copy_").all()
    assert copy_generator(sim_cohort, n=400, seed=1).n_samples == 400  # with replacement beyond train size


def test_independent_snps_keep_population_frequencies_and_have_no_ld(sim_cohort):
    syn = independent_snps_generator(sim_cohort, n=3000, seed=2)
    for pop in ("YRI", "CEU"):
        real_af = sim_cohort.subset(samples=sim_cohort.labels("pop") == pop).allele_frequencies()
        syn_af = syn.subset(samples=syn.labels("pop") == pop).allele_frequencies()
        assert np.abs(real_af - syn_af).max() < 0.08
    assert set(syn.labels("super_pop")) == {"AFR", "EUR", "EAS"}
    g = syn.subset(samples=syn.labels("pop") == "CEU").genotypes().astype(float)
    g = g[:, g.std(0) > 0][:, :40]
    r = np.corrcoef(g, rowvar=False)[np.triu_indices(g.shape[1], 1)]
    assert np.abs(r).mean() < 0.05
    with pytest.raises(InputError, match="labels"):
        independent_snps_generator(sim_cohort, label_column="nope")
