"""Calibration generators and the train/holdout split used to check the evaluator itself.

* :func:`copy_generator` - returns training people verbatim: every privacy figure must flag it.
* :func:`independent_snps_generator` - draws every allele independently from per-population allele
  frequencies: allele frequencies (overall and per population) are right and pooled LD between
  ancestry-informative SNPs partly survives through population structure, but LD within a
  population is gone; the within-population LD figure must flag it.

Benchmarks report generators next to these two rows and the real holdout.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from genosynth.cohort import Cohort, make_samples
from genosynth.errors import InputError
from genosynth.stats.frequency import allele_frequencies


def split_train_holdout(cohort: Cohort, *, holdout_fraction: float = 0.2, stratify: str | None = "super_pop",
                        seed: int = 0) -> tuple[Cohort, Cohort]:
    """Split people into train and holdout, stratified by ``stratify`` labels when given.

    Returns
    -------
    (train, holdout) : Cohort, Cohort
    """
    if not 0 < holdout_fraction < 1:
        raise InputError(f"holdout_fraction must lie in (0, 1), got {holdout_fraction}")
    rng = np.random.default_rng(seed)
    n = cohort.n_samples
    if stratify and stratify in cohort.samples.columns:
        y = cohort.labels(stratify)
    else:
        y = np.zeros(n, dtype=object)
    hold = []
    for lab in np.unique(y):
        idx = np.flatnonzero(y == lab)
        k = int(round(holdout_fraction * len(idx)))
        hold.append(rng.choice(idx, size=k, replace=False))
    mask = np.zeros(n, dtype=bool)
    mask[np.concatenate(hold)] = True
    return cohort.subset(samples=np.flatnonzero(~mask)), cohort.subset(samples=np.flatnonzero(mask))


def copy_generator(train: Cohort, *, n: int | None = None, seed: int = 0) -> Cohort:
    """A "generator" that outputs training people (with replacement when ``n`` > train size).

    Sample ids are renamed ``copy_<k>``; population labels are kept.
    """
    rng = np.random.default_rng(seed)
    n = train.n_samples if n is None else int(n)
    idx = rng.permutation(train.n_samples)[:n] if n <= train.n_samples else rng.integers(0, train.n_samples, n)
    samples = train.samples.iloc[idx].reset_index(drop=True)
    samples["sample"] = [f"copy_{k}" for k in range(n)]
    samples["fid"] = samples["sample"]
    if train.phased:
        rows = (idx[:, None] * train.ploidy + np.arange(train.ploidy)[None, :]).ravel()
    else:
        rows = idx
    return dataclasses.replace(train, alleles=np.ascontiguousarray(train.alleles[rows]), samples=samples,
                               variants=train.variants.copy(), meta={"generator": "copy"})


def independent_snps_generator(train: Cohort, *, n: int | None = None, label_column: str = "pop",
                               seed: int = 0) -> Cohort:
    """Phased people whose alleles are independent draws from their population's allele frequencies.

    Each synthetic person gets a population drawn with the training proportions; each of its
    haplotype alleles is Bernoulli(AF of that population in train). Labels (``label_column`` and,
    when present, ``super_pop`` of that population) are written in the sample table.
    """
    if label_column not in train.samples.columns or (train.labels(label_column) == "").all():
        raise InputError(f"independent_snps_generator needs {label_column!r} labels in train; give --samples")
    rng = np.random.default_rng(seed)
    n = train.n_samples if n is None else int(n)
    y = train.labels(label_column)
    g = train.genotypes()
    groups, counts = np.unique(y, return_counts=True)
    draw = rng.choice(len(groups), size=n, p=counts / counts.sum())
    hap = np.empty((n, 2, train.n_variants), dtype=np.int8)
    super_of = {}
    if "super_pop" in train.samples.columns:
        sp = train.labels("super_pop")
        super_of = {lab: sp[y == lab][0] for lab in groups}
    for k, lab in enumerate(groups):
        rows = np.flatnonzero(draw == k)
        if not rows.size:
            continue
        af = np.nan_to_num(allele_frequencies(g[y == lab], missing="skip"))  # (V,), 0 where none is called
        hap[rows] = (rng.random((rows.size, 2, train.n_variants)) < af).astype(np.int8)
    pops = groups[draw]
    ids = [f"indep_{k}" for k in range(n)]
    if label_column == "pop":
        samples = make_samples(ids, pop=pops, super_pop=[super_of.get(p, "") for p in pops])
    elif label_column == "super_pop":
        samples = make_samples(ids, super_pop=pops)
    else:
        samples = make_samples(ids)
        samples[label_column] = pops
    return Cohort(alleles=hap.reshape(2 * n, train.n_variants), variants=train.variants.copy(), samples=samples,
                  phased=True, ploidy=2, meta={"generator": "independent_snps", "label_column": label_column})
