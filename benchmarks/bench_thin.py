"""Thin data (issue 21): few unphased people per population with missing calls, against held-out people.

Cohort (a) of issue 21 (default): the shared 1000 Genomes 805-SNP data (../shared/data/1000g_805, or
$GENOSYNTH_805) made unphased (haplotype pairs summed), thinned to ``--per-pop`` (15) training
people per population (26 populations) with ``--missing`` (3 %) of their calls set missing at
random, positions as given; ``--holdout-per-pop`` (10) other people per population are held out
(complete calls). The default generator (``GeneratorConfig()``, epochs shortened by flags if asked)
is trained once and sampled with the default decoding twice: AFTER, with the correlation prior
training stores now (shrunk by its sampling noise, band chosen from the data), and BEFORE, with the
unshrunk prior of the full band swapped in (the same networks; only the prior differs). A model
that stores population corrections (``--fine-labels auto``: ``training.fine_labels``, populations
placed along the principal axes, ``--fine-label-rank``) and the ancestry spread within populations is
also sampled with the corrections alone (``populations_only``) and without both
(``fine_labels_off``: super population only, as a default model). Also: plain decoding (no
correlation guidance) and the independent-SNP baseline
(:func:`genosynth.evaluate.baselines.independent_snps_generator`, per population); with
``--estimators`` also independent-SNP people from the per-SNP shrunk population frequencies
(``independent_shrunk``) and from the frequencies along the axes (``independent_axes``).

Everything is scored by :func:`genosynth.evaluate.evaluate` against the held-out people; the
table (printed, and written as JSON) holds per set: LD decay within super population per distance
bin as synthetic / real (held-out) r², the synthetic-vs-training correlation match (near pairs
within super population, and random pairs pooled; the holdout row is a fresh real sample's match),
PCA energy distance, TSTR for population and super population, AF r, MIA AUC, AATS and identical
people.

Cohort (b), a simulated sparse panel (``--bfile``): 24 populations of 40 people in 4 regions
(``genosynth simulate --model regions``), 10 chromosomes with SNPs at least 100 kb apart, of which
10-30 people per population train (``--per-pop 10,30``) and 10 are held out.

    nice -n 5 python benchmarks/bench_thin.py --json benchmarks/results/thin_805.json \\
        [--vae-epochs 10 --dit-epochs 50] [--checkpoint /tmp/thin.pt]
    genosynth simulate --model regions --n 960 --chromosomes 10 --length-mb 110 --min-spacing-kb 100 \
        --max-snps 1000 --no-phenotype --seed 21 --out /tmp/thin_b
    nice -n 5 python benchmarks/bench_thin.py --bfile /tmp/thin_b --per-pop 10,30 --json benchmarks/results/thin_b.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time

import numpy as np
import torch

KEYS = ("ld_r_near_within", "ld_r_all", "energy_distance", "tstr_pop_lr", "tstr_super_pop_lr", "af_r", "mia_auc",
        "aats", "identical_to_train")


def thin_cohort(*, per_pop: int | tuple[int, int], holdout_per_pop: int, missing: float, seed: int,
                bfile: str | None = None):
    """(train with missing calls, holdout, the same train people complete): unphased, per population.

    The 805-SNP data by default (cohort a), or ``bfile`` (PLINK prefix with ``PREFIX.samples.tsv``:
    cohort b, from ``genosynth simulate --model regions``). A ``(lo, hi)`` pair draws each
    population's training size uniformly in ``lo..hi``.
    """
    from genosynth.io import read_cohort

    if bfile:
        full = read_cohort(bfile=bfile, samples=bfile + ".samples.tsv")
    else:
        root = os.environ.get("GENOSYNTH_805", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                                             "shared", "data", "1000g_805"))
        full = read_cohort(hapt=os.path.join(root, "haplotypes.hapt.gz"), legend=os.path.join(root, "snps.legend"),
                           samples=os.path.join(root, "panel.tsv"))
    full = full.unphased() if full.phased else full
    rng = np.random.default_rng(seed)
    pops = full.labels("pop")
    tr, ho = [], []
    for p in sorted(set(pops.tolist())):
        idx = rng.permutation(np.flatnonzero(pops == p))
        k = per_pop if isinstance(per_pop, int) else int(rng.integers(per_pop[0], per_pop[1] + 1))
        tr.append(idx[:k])
        ho.append(idx[k:k + holdout_per_pop])
    train = full.subset(samples=np.sort(np.concatenate(tr)))
    holdout = full.subset(samples=np.sort(np.concatenate(ho)))
    g = train.alleles.copy()  # (N, V) int8 ALT counts
    g[rng.random(g.shape) < missing] = -1
    return dataclasses.replace(train, alleles=g), holdout, train


def train_model(train, a, say):
    """The default generator (epochs by flags), loaded from ``--checkpoint`` when it exists."""
    from genosynth.models.config import GeneratorConfig
    from genosynth.sampling.generator import Generator
    from genosynth.training.plain import train_generator

    if a.checkpoint and os.path.exists(a.checkpoint):
        return Generator.load(a.checkpoint), 0.0
    cfg = GeneratorConfig().replace(label_column=a.label_column, training={"fine_labels": a.fine_labels,
                                                                         "fine_label_rank": a.fine_label_rank})
    changes = {k: v for k, v in (("vae_epochs", a.vae_epochs), ("dit_epochs", a.dit_epochs)) if v is not None}
    if changes:
        cfg = cfg.replace(training=changes)
    t = time.perf_counter()
    model = train_generator(train, config=cfg, seed=a.seed, checkpoint=a.checkpoint, log=say if a.verbose else None)
    return model, time.perf_counter() - t


def synthetic_sets(model, train, a, timings: dict) -> dict:
    """AFTER (stored shrunk prior, the model's default decoding), latent+copula when that default is another
    (``auto`` on a sparse panel), BEFORE (unshrunk prior swapped in), plain decoding, independent SNPs."""
    from genosynth.evaluate.baselines import independent_snps_generator
    from genosynth.models.ld_prior import CorrelationPrior
    from genosynth.training.ld_fit import plain_correlation_prior

    n = a.n or train.n_samples
    sets = {}
    shrunk = model.corr_prior
    unshrunk = CorrelationPrior.from_state_dict(
        plain_correlation_prior(train, model.config, model.vocabulary, shrink=False))
    runs = [("after_shrunk", shrunk, None), ("before_unshrunk", unshrunk, None), ("plain_decoding", shrunk, "none")]
    first = 1
    if model.decoding() != "latent+copula":  # the default ("auto") is the copula here: latent steps too, to compare
        runs.insert(1, ("latent_copula", shrunk, "latent+copula"))
        first = 2
    runs = runs[:first] if a.only_default else runs
    if model.fine_labels is not None:  # populations and spread stored: also populations alone, and neither
        runs[1:1] = [("populations_only", shrunk, None), ("fine_labels_off", shrunk, None)]
    for name, prior, method in runs:
        model.corr_prior = prior
        model._corr_cache.clear()  # the decoding cache belongs to one prior
        model.config.sampling.fine_labels = name != "fine_labels_off"
        model.config.sampling.ancestry_spread = name not in ("fine_labels_off", "populations_only")
        t = time.perf_counter()
        sets[name] = model.sample(n, seed=a.seed + 1, corr_guidance=method)
        timings[f"sample_{name}"] = time.perf_counter() - t
    model.corr_prior = shrunk
    model.config.sampling.fine_labels = model.config.sampling.ancestry_spread = True
    sets["independent"] = independent_snps_generator(train, n=n, label_column="pop", seed=a.seed + 2)
    if a.estimators:
        sets.update(independent_estimators(train, seed=a.seed + 3))
    return sets, {"shrunk": _prior_summary(shrunk), "unshrunk": _prior_summary(unshrunk)}


def independent_estimators(train, *, seed: int) -> dict:
    """Independent-SNP people (as many per population as in train) drawn from two estimates of each population's
    frequencies: ``independent_shrunk``, the per-SNP posterior mean toward the super population
    (:func:`~genosynth.training.data.shrink_label_frequencies` of unsmoothed counts: what a ``pop`` model is
    calibrated to), and ``independent_axes``, the super population's frequencies plus the population's offset
    along the principal axes (:func:`~genosynth.training.calibration.fine_label_corrections`, default rank: what
    a ``super_pop`` model with ``training.fine_labels`` decodes)."""
    from genosynth.cohort import Cohort, make_samples
    from genosynth.training.calibration import fine_label_corrections
    from genosynth.training.data import (alt_frequency, class_counts, label_groups, label_parents, prepare_data,
                                         shrink_label_frequencies, smoothed_frequencies)

    coarse = prepare_data(train, label_column="super_pop", mode="genotype")
    _, per = smoothed_frequencies(*class_counts(coarse.alleles, coarse.labels, len(coarse.vocabulary), 3),
                                  pseudo_count=0.5)  # (S, V, 3)
    fl = fine_label_corrections(train, coarse, per, label_column="super_pop", setting="pop", max_people=0,
                                exponent=1.0, rank=-1)
    tilted = per[fl["parent"]].double() * fl["correction"].double().exp()  # (L, V, 3)
    fine = prepare_data(train, label_column="pop", mode="genotype")
    count, seen = class_counts(fine.alleles, fine.labels, len(fine.vocabulary), 3)
    _, raw = smoothed_frequencies(count, seen, pseudo_count=1e-3)  # (L, V, 3)
    groups = label_groups(fine.vocabulary, label_parents(train, "pop", fine.vocabulary))
    shrunk, _ = shrink_label_frequencies(raw, seen[:-1], groups, alleles_per_row=2, raw=raw)
    assert fl["labels"] == fine.vocabulary
    rng = np.random.default_rng(seed)
    pops, sups = train.labels("pop"), train.labels("super_pop")
    out = {}
    for name, freq in (("independent_shrunk", shrunk), ("independent_axes", tilted / tilted.sum(-1, keepdim=True))):
        p = alt_frequency(freq.double()).numpy()  # (L, V)
        index = np.array([fine.vocabulary.index(x) for x in pops])  # (N,) each training person's population
        g = rng.binomial(2, p[index]).astype(np.int8)  # (N, V)
        ids = [f"{name}_{k}" for k in range(len(index))]
        samples = make_samples(ids, pop=pops, super_pop=sups)
        out[name] = Cohort(alleles=g, variants=train.variants.copy(), samples=samples, phased=False, ploidy=2,
                           meta={"generator": name})
    out["_rank"] = fl["rank"]
    return out


def _prior_summary(prior) -> dict:
    b = prior.bands.astype(np.float64)
    return {"window": int(prior.window), "mean_r2": float((b ** 2).mean()), "max_abs_r": float(np.abs(b).max()),
            "n_abs_r_ge_0.3": int((np.abs(b) >= 0.3).sum()),
            "kept_fraction": (prior.info.get("shrinkage") or {}).get("kept_fraction")}


def score(train, holdout, sets: dict, seed: int) -> tuple[dict, list]:
    """The table per set (holdout = fresh real people) and the LD-decay bin edges."""
    from genosynth.evaluate import EvalConfig, evaluate, summary

    res = evaluate(train, holdout, sets, label_column="super_pop", config=EvalConfig(), seed=seed)
    real = res["fidelity"]["holdout"]["ld"]["decay_within"]
    table = {}
    for name in ["holdout", *sets]:
        s = summary(res, name)
        row = {k: s.get(k) for k in KEYS}
        if name == "holdout":
            row["tstr_pop_lr"], row["tstr_super_pop_lr"] = s.get("trtr_pop_lr"), s.get("trtr_super_pop_lr")
        dec = res["fidelity"][name]["ld"]["decay_within"]
        row["ld_decay_within"] = dec
        row["ld_decay_ratio"] = [None if (x is None or r is None or r == 0) else x / r for x, r in zip(dec, real)]
        table[name] = row
    return table, list(res["config"]["ld_decay_edges_bp"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--per-pop", default="15", help="training people per population, or LO,HI: drawn per population")
    ap.add_argument("--bfile", default=None, help="cohort (b): a PLINK prefix with PREFIX.samples.tsv (default: 805-SNP data)")
    ap.add_argument("--holdout-per-pop", type=int, default=10, help="held-out people per population")
    ap.add_argument("--missing", type=float, default=0.03, help="fraction of training calls set missing")
    ap.add_argument("--n", type=int, default=None, help="synthetic people per set (default: train size)")
    ap.add_argument("--vae-epochs", type=int, default=None)
    ap.add_argument("--dit-epochs", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--label-column", default="super_pop", help="what the generator conditions on (pop: hierarchical)")
    ap.add_argument("--fine-labels", default="off", help="training.fine_labels: off (the default), auto or a column")
    ap.add_argument("--fine-label-rank", type=int, default=-1,
                    help="training.fine_label_rank: axes of the populations (-1 from the data, 0 per-SNP shrinkage)")
    ap.add_argument("--only-default", action="store_true", help="sample the default decoding only (no BEFORE/plain sets)")
    ap.add_argument("--estimators", action="store_true",
                    help="also independent-SNP people from shrunk and from axis population frequencies")
    ap.add_argument("--checkpoint", default=None, help="reuse/write the trained generator here")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--verbose", action="store_true", help="training log lines")
    ap.add_argument("--json", required=True)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    per_pop = tuple(int(x) for x in a.per_pop.split(",")) if "," in a.per_pop else int(a.per_pop)
    train, holdout, complete = thin_cohort(per_pop=per_pop, holdout_per_pop=a.holdout_per_pop, missing=a.missing,
                                 seed=a.seed, bfile=a.bfile)
    model, timings["train"] = train_model(train, a, print)
    sets, priors = synthetic_sets(model, train, a, timings)
    axes_rank = sets.pop("_rank", None)
    t = time.perf_counter()
    # scored against the training people's complete calls: the missing calls are what the generator
    # was given, not what the people are (scoring masked calls against complete held-out calls gave
    # a fresh real sample MIA AUC 0.75 and energy distance 0.52 on cohort b)
    table, edges = score(complete, holdout, sets, a.seed)
    timings["evaluate"] = time.perf_counter() - t
    out = {"n_variants": train.n_variants, "n_train": train.n_samples, "n_holdout": holdout.n_samples,
           "missing_in_train": float((train.alleles < 0).mean()), "per_pop": a.per_pop, "bfile": a.bfile,
           "label_column": model.config.label_column, "epochs": [model.config.training.vae_epochs,
                                                                  model.config.training.dit_epochs],
           "seed": a.seed, "priors": priors, "table": table, "ld_decay_edges_bp": edges, "timings": timings,
           "fine_labels": None if model.fine_labels is None else {k: model.fine_labels.get(k)
                                                                  for k in ("column", "F", "exponent", "rank")},
           "independent_axes_rank": axes_rank,
           "total_s": time.perf_counter() - t0, "load_avg": os.getloadavg(),
           "argv": sys.argv if argv is None else argv,
           "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
                       "threads": a.threads}}
    os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
    with open(a.json, "w", encoding="utf-8") as fh:
        json.dump(out, fh, indent=2, default=float)
    print("priors", json.dumps(priors))
    print("decay edges (bp)", edges)
    for name, row in table.items():
        ratio = " ".join("-" if v is None else f"{v:.2f}" for v in row["ld_decay_ratio"])
        print(f"{name:>16} " + " ".join(f"{k}={row[k]:.4g}" if isinstance(row[k], float) else f"{k}={row[k]}"
                                        for k in KEYS) + f" decay_ratio=[{ratio}]")
    print("timings", {k: round(v, 1) for k, v in timings.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
