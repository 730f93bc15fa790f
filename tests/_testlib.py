"""Helpers shared by test files: small seeded cohorts and comparisons (fixtures live in conftest.py)."""

from __future__ import annotations

import numpy as np
import torch
from scipy import special

from genosynth.cohort import Cohort, make_samples, make_variants

def toy(n=600, v=40, *, causal=(3, 17), effect=0.9, seed=0, missing=0.0, chrom=None, pos=None):
    """Independent SNPs and a logistic trait on ``causal``; returns a Cohort."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.1, 0.5, size=v)
    g = rng.binomial(2, p, size=(n, v)).astype(np.int8)
    eta = -1.0 + effect * (g[:, list(causal)] - 2 * p[list(causal)]).sum(axis=1)
    y = (rng.random(n) < special.expit(eta)).astype(float)
    if missing:
        g[rng.random((n, v)) < missing] = -1
    variants = make_variants(chrom=chrom if chrom is not None else ["1"] * v,
                             pos=pos if pos is not None else (np.arange(v) + 1) * 1_000_000,
                             ref=["A"] * v, alt=["G"] * v)
    pops = np.where(np.arange(n) % 2 == 0, "YRI", "CEU")
    return Cohort(g, variants, make_samples(range(n), pop=pops, super_pop=np.where(pops == "YRI", "AFR", "EUR"),
                                            phenotype=y), phased=False)



def label_subset(cohort, counts, *, n_variants):
    """The first ``counts[k]`` people of each block of 100 (one population each in ``sim_cohort``) x ``n_variants`` SNPs."""
    idx = np.concatenate([np.arange(100 * k, 100 * k + c) for k, c in enumerate(counts)])
    return cohort.subset(samples=idx, variants=np.arange(n_variants))


def same_tensors(a, b) -> bool:
    """Whether two (nested) checkpoint states hold equal tensors and values."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_tensors(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_tensors(x, y) for x, y in zip(a, b))
    return a == b


def small_privacy(**kw):
    """A DP configuration small enough for 60-person test cohorts (keyword changes on top)."""
    from genosynth.training.dp_plan import PrivacyConfig

    base = dict(epsilon=8.0, delta=1e-3, batch_size=20, correlation_window=4, stage1_epochs=1,
                timesteps_split=45, latent_clip=1.0)
    base.update(kw)
    return PrivacyConfig(**base)


def nested_cohort(*, n_per: int, f: float, v: int = 400, seed: int = 0, pops_per_super: int = 3) -> Cohort:
    """Unphased people of 2 super populations x ``pops_per_super`` populations; population frequencies are
    Balding-Nichols draws with divergence ``f`` around their super population's (``f`` = 0: identical)."""
    rng = np.random.default_rng(seed)
    g, pops, supers = [], [], []
    for sp in ("AFR", "EUR"):
        q = rng.uniform(0.1, 0.9, size=v)
        for k in range(pops_per_super):
            p = q if f == 0 else rng.beta(q * (1 - f) / f, (1 - q) * (1 - f) / f)
            g.append(rng.binomial(2, p, size=(n_per, v)))
            pops += [f"{sp}{k}"] * n_per
            supers += [sp] * n_per
    variants = make_variants(chrom=["1"] * v, pos=(np.arange(v) + 1) * 10_000, ref=["A"] * v, alt=["G"] * v)
    return Cohort(np.concatenate(g).astype(np.int8), variants,
                  make_samples(range(len(pops)), pop=pops, super_pop=supers), phased=False)
