"""One synthetic person across chromosomes (issue 17, item 3): a genome of several chromosomes as one model.

The cohort (a PLINK prefix or a phased VCF of several chromosomes with ``PREFIX.samples.tsv``, from
``benchmarks/make_scale_cohorts.sh``: 5 chromosomes x 20,000 SNPs) is split 80/20 by population
(seed), one generator is trained on the 80 % with ``--size auto`` (every chromosome in one model, so
each synthetic person has one latent, hence one ancestry, for the whole genome), and as many
synthetic people as there are held-out people are sampled per population. Scored against the
held-out people:

* ``agreement``: for every chromosome, a PCA (top ``--pcs`` PCs) + logistic regression trained on
  the real training people's genotypes of that chromosome alone predicts each person's population;
  for every pair of chromosomes (A, B), the fraction of people whose two predictions agree, averaged
  over pairs, for held-out real people and for synthetic people (the issue: within 0.02). Also each
  chromosome's accuracy against the person's label.
* ``energy_distance``: genome-wide PCA (fitted on the real training people, all SNPs) energy distance
  of the synthetic people to the held-out people, next to the training people's own (the
  reference at these sizes; the issue: <= 0.05).
* AF r genome-wide and per chromosome.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_genome.py --vcf /tmp/scale/genome5x20k_phased.vcf.gz \\
        --out /tmp/scale/genome --json benchmarks/results/genome_5x20k.json [--vae-epochs 2 --dit-epochs 10]
    # proxy: a one-chromosome model's synthetic set (bench_scale.py), its SNPs cut into 5 parts
    python benchmarks/bench_genome.py --vcf /tmp/scale/chr1_100k_phased.vcf.gz --synthetic /tmp/scale/run.syn3000 \
        --segments 5 --json benchmarks/results/genome_proxy_100k.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time

import numpy as np


def chromosome_predictions(train_g, train_y, sets: dict, chroms: np.ndarray, *, pcs: int, seed: int) -> dict:
    """Per chromosome, the population predicted for each person of each set: ``{set: (n_chrom, n_people)}``."""
    from sklearn.linear_model import LogisticRegression

    from genosynth.evaluate.structure import PCAFeatures
    from genosynth.stats.frequency import allele_freq

    out = {name: [] for name in sets}
    for c in np.unique(chroms):
        cols = np.flatnonzero(chroms == c)
        g = train_g[:, cols]
        feats = PCAFeatures(g, fill=2 * allele_freq(g), n_pcs=pcs, seed=seed)
        clf = LogisticRegression(max_iter=1000).fit(feats.transform(g), train_y)
        for name, gs in sets.items():
            out[name].append(clf.predict(feats.transform(gs[:, cols])))
    return {name: np.stack(p) for name, p in out.items()}


def agreement(pred: np.ndarray) -> float:
    """Mean over chromosome pairs (A < B) of the fraction of people with the same prediction. pred: (C, n)."""
    c = pred.shape[0]
    return float(np.mean([np.mean(pred[a] == pred[b]) for a in range(c) for b in range(a + 1, c)]))


def score(train, holdout, syn, *, pcs: int, seed: int, segments: int = 0) -> dict:
    """Cross-chromosome agreement, genome-wide PCA energy distance and AF r (module docstring).

    ``segments`` > 0 cuts the SNPs into that many contiguous equal parts and treats them as the
    chromosomes (a one-chromosome model read as a proxy genome)."""
    from genosynth.evaluate.fidelity import energy_distance, pearson
    from genosynth.evaluate.structure import PCAFeatures
    from genosynth.stats.frequency import allele_freq

    gt, gh, gs = train.genotypes(), holdout.genotypes(), syn.genotypes()
    chroms = train.variants["chrom"].astype(str).to_numpy()
    if segments:
        chroms = (np.arange(len(chroms)) * segments // len(chroms)).astype(str)  # (V,) part index
    yt, yh, ys = train.labels("pop"), holdout.labels("pop"), syn.labels("pop")
    pred = chromosome_predictions(gt, yt, {"holdout": gh, "synthetic": gs}, chroms, pcs=pcs, seed=seed)
    res: dict = {"chromosomes": sorted(set(chroms.tolist())), "n_holdout": len(yh), "n_synthetic": len(ys)}
    for name, y in (("holdout", yh), ("synthetic", ys)):
        res[name] = {"agreement": agreement(pred[name]),
                     "accuracy_per_chromosome": [float(np.mean(p == y)) for p in pred[name]]}
    res["agreement_gap"] = res["synthetic"]["agreement"] - res["holdout"]["agreement"]
    fill = 2 * allele_freq(gt)
    feats = PCAFeatures(gt, fill=fill, n_pcs=pcs, seed=seed)
    rng = np.random.default_rng(seed)
    ft, fh, fs = feats.transform(gt), feats.transform(gh), feats.transform(gs)
    res["energy_distance"] = {"synthetic_vs_holdout": energy_distance(fs, fh, max_samples=2000, rng=rng),
                              "train_vs_holdout": energy_distance(ft, fh, max_samples=2000, rng=rng),
                              "n_pcs": pcs}
    res["af_r"] = pearson(allele_freq(gh), allele_freq(gs))
    res["af_r_per_chromosome"] = [pearson(allele_freq(gh[:, chroms == c]), allele_freq(gs[:, chroms == c]))
                                  for c in res["chromosomes"]]
    return res


def run(args) -> dict:
    import torch

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_scale import load_split

    from genosynth.models.config import config_for_variants
    from genosynth.sampling.generator import Generator
    from genosynth.training.plain import train_generator

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    cohort, tr, ho = load_split(args.bfile, 0, args.seed, vcf=args.vcf, samples=args.samples)
    rec = {"snps": cohort.n_variants, "people": cohort.n_samples, "train_people": tr.n_samples,
           "holdout_people": ho.n_samples, "load_s": time.perf_counter() - t0, "threads": args.threads,
           "phased": bool(cohort.phased), "machine": platform.processor() or platform.machine(),
           "load_before": os.getloadavg()}
    if args.synthetic:  # score a sampled set only (e.g. bench_scale's), as many per population as held out
        from bench_scale import matched

        from genosynth.io import read_cohort

        syn = read_cohort(bfile=args.synthetic, samples=args.synthetic + ".samples.tsv")
        rec["synthetic"] = args.synthetic
        rec["quality"] = score(tr, ho, matched(syn, ho, args.seed), pcs=args.pcs, seed=args.seed,
                               segments=args.segments)
        return rec
    cfg = config_for_variants("auto", tr.variants).replace(label_column="pop")
    epochs = {k: v for k, v in (("vae_epochs", args.vae_epochs), ("dit_epochs", args.dit_epochs)) if v}
    if epochs:
        cfg = cfg.replace(training=epochs)
    t0 = time.perf_counter()
    if not (args.reuse and os.path.exists(args.out + ".pt")):
        train_generator(tr, config=cfg, seed=args.seed, checkpoint=args.out + ".pt", progress=True)
    rec["train_s"] = time.perf_counter() - t0
    rec["train_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    rec["config"] = cfg.to_dict()
    rec["load_after_train"] = os.getloadavg()
    counts = {str(k): int(v) for k, v in zip(*np.unique(ho.labels("pop"), return_counts=True))}
    t0 = time.perf_counter()
    syn = Generator.load(args.out + ".pt").sample(labels=counts, seed=args.seed + 1)
    rec["sample_s"] = time.perf_counter() - t0
    rec["quality"] = score(tr, ho, syn, pcs=args.pcs, seed=args.seed, segments=args.segments)
    rec["load_after"] = os.getloadavg()
    return rec


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bfile", help="genome of several chromosomes (PLINK prefix)")
    p.add_argument("--vcf", help="or a phased VCF.gz of several chromosomes")
    p.add_argument("--samples", help="sample table (default: PREFIX.samples.tsv)")
    p.add_argument("--out", default="/tmp/scale/genome", help="prefix of the checkpoint")
    p.add_argument("--json", help="write the record here")
    p.add_argument("--vae-epochs", type=int, default=None)
    p.add_argument("--dit-epochs", type=int, default=None)
    p.add_argument("--pcs", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reuse", action="store_true", help="sample from an existing OUT.pt instead of training")
    p.add_argument("--synthetic", help="score this synthetic PLINK prefix (same SNPs) instead of training and sampling")
    p.add_argument("--segments", type=int, default=0,
                   help="treat K contiguous equal parts of the SNPs as the chromosomes (one-chromosome proxy)")
    args = p.parse_args(argv)
    rec = run(args)
    text = json.dumps(rec, indent=1, default=float)
    print(text)
    if args.json:
        with open(args.json, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
