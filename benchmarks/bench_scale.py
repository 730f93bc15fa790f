"""Cost and quality of genosynth as the SNP count grows (issue 17: chromosome scale).

One run = one SNP count: the first ``--snps`` SNPs of a simulated chromosome (a contiguous region,
so SNP density and LD stay those of the chromosome), people split 80/20 by population (seed 0),
``genosynth`` trained with ``--size auto`` (``chromosome_config`` above 10,000 SNPs) on the 80 %,
then, each in its own process so that peak memory is its own, ``genosynth sample`` of
``--sample-n`` people (people/s, peak RSS; two sizes show whether memory is flat in people),
and the synthetic set scored against the held-out 20 % at matched sample size:

* ``af_r``: allele-frequency Pearson r, synthetic vs held-out;
* ``ld_decay``: within-population mean r^2 per distance bin (0-1 kb ... 100 kb-1 Mb) of held-out
  and synthetic people (equal numbers per population), and their ratio;
* ``boundary``: the same ratio for pairs that straddle a VAE token boundary (every ``patch`` SNPs,
  the model's window) and for pairs inside one token, in the same distance bins; straddling pairs
  again split by whether the two tokens share a DiT patch (the DiT draws patches, not tokens); and
  ``boundary_gap_matched``: straddling against inside pairs in narrow bins (1-5, 5-10, 10-20, 20-40,
  40-100 kb), the issue's "pairs of the same distance";
* ``aats``: AATS of the held-out people against as many synthetic people (matched per population);
* ``genosynth.evaluate`` headline figures (AATS, MIA AUC, identical people, TSTR/TRTR by
  super population, PCA energy distance) when ``--evaluate`` is given;
* with ``--also-decode none``, the same figures for the model's latents decoded independently
  (no copula): the DiT alone, "stage (b)" of RESULTS.md.

``--size chromosome`` forces the chromosome configuration below 10,000 SNPs and ``--config`` overrides
fields of it (JSON by section), so a 5,000-SNP window serves as its test bed.

Usage (cohorts from ``benchmarks/make_scale_cohorts.sh``)::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_scale.py --bfile /tmp/scale/chr1_100k --snps 20000 \\
        --out /tmp/scale/run20k --json benchmarks/results/scale_20k.json --evaluate
    python benchmarks/bench_scale.py --vcf /tmp/s10/chr1_first5000.vcf.gz --samples SAMPLES.tsv --size chromosome \\
        --config '{"dit": {"local_mlp": 0}}' --sample-n 600 --also-decode none --threads 1 --out /tmp/x --json x.json
    python benchmarks/bench_scale.py --plot benchmarks/results/scale_*.json --png benchmarks/results/scale_cost.png
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np

BINS_BP = ((0, 1_000), (1_000, 10_000), (10_000, 100_000), (100_000, 1_000_000))
#: narrower bins for the boundary gap: straddling and inside pairs compared at about the same distance
GAP_BINS_BP = ((1_000, 5_000), (5_000, 10_000), (10_000, 20_000), (20_000, 40_000), (40_000, 100_000))
_CHILD = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
          "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
          "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def load_split(bfile: str | None, snps: int, seed: int, *, vcf: str | None = None, samples: str | None = None):
    """The cohort (a PLINK prefix, or a phased VCF and its sample table) and its 80/20 split."""
    from genosynth.evaluate.baselines import split_train_holdout
    from genosynth.io import read_cohort

    if vcf:
        cohort = read_cohort(vcf=vcf, samples=samples or vcf.removesuffix(".vcf.gz") + ".samples.tsv", progress=True)
    else:
        cohort = read_cohort(bfile=bfile, samples=samples or bfile + ".samples.tsv")
    if snps and snps < cohort.n_variants:
        cohort = cohort.subset(variants=np.arange(snps))
    train, holdout = split_train_holdout(cohort, holdout_fraction=0.2, stratify="pop", seed=seed)
    return cohort, train, holdout


def train(train_cohort, args) -> dict:
    """Train with ``--size`` (default ``auto``) and the ``--config`` overrides; per-stage wall time and
    seconds per epoch."""
    from genosynth.models.config import config_for_variants
    from genosynth.training.plain import train_generator

    cfg = config_for_variants(args.size, train_cohort.variants).replace(label_column="pop")
    sections = {k: dict(v) for k, v in json.loads(args.config).items()}
    epochs = {k: v for k, v in (("vae_epochs", args.vae_epochs), ("dit_epochs", args.dit_epochs)) if v}
    if epochs:
        sections["training"] = {**sections.get("training", {}), **epochs}
    if sections:
        cfg = cfg.replace(**sections)
    t0 = time.perf_counter()
    model = train_generator(train_cohort, config=cfg, seed=args.seed, checkpoint=args.out + ".pt", progress=True)
    total = time.perf_counter() - t0
    per_epoch = {s: float(np.median(v)) for s, v in model.meta["epoch_seconds"].items() if v}
    return {"train_s": total, "s_per_epoch": per_epoch, "train_peak_rss_mb": peak_mb(),
            "config": cfg.to_dict(), "vae_params": sum(p.numel() for p in model.vae.parameters()),
            "dit_params": sum(p.numel() for p in model.dit.parameters())}


def sample(args, n: int, decoding: str | None = None) -> dict:
    """``genosynth sample`` in a child process (``decoding``: its ``--corr-guidance``, None = the
    model's default): wall time and its own peak RSS."""
    prefix = f"{args.out}.syn{n}" + (f".{decoding}" if decoding else "")
    cmd = [sys.executable, "-c", _CHILD, sys.executable, "-m", "genosynth.cli", "sample", "--model",
           args.out + ".pt", "--n", str(n), "--seed", str(args.seed), "--out", prefix, "--format", "bed",
           "--threads", str(args.threads)] + (["--corr-guidance", decoding] if decoding else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.split()
    wall, rss_kb = float(out[-2]), float(out[-1])
    return {"n": n, "wall_s": wall, "people_per_s": n / wall, "peak_rss_mb": rss_kb / 1024.0, "prefix": prefix,
            "decoding": decoding or "default"}


def pair_table(variants, patch: int, seed: int, max_pairs: int = 200_000):
    """Near SNP pairs (< 1 Mb), their distance and whether they straddle a token boundary."""
    from genosynth.evaluate.fidelity import near_pairs

    i, j, _ = near_pairs(variants, window_bp=1_000_000, max_pairs=max_pairs, rng=np.random.default_rng(seed))
    pos = variants["pos"].to_numpy(dtype=np.int64)
    return i, j, np.abs(pos[j] - pos[i]), (i // patch) != (j // patch)


def gap_pairs(variants, patch: int, *, lo: int = GAP_BINS_BP[0][0], hi: int = GAP_BINS_BP[-1][1]):
    """Every SNP pair on one chromosome ``lo <= distance < hi`` bp apart (not a sample: the boundary gap's
    inside pairs at 40-100 kb are a few per VAE token, and a 200,000-pair sample of all pairs < 1 Mb holds
    about a thousand of them), with its distance and whether it straddles a token boundary."""
    from genosynth.evaluate.fidelity import near_pairs

    i, j, _ = near_pairs(variants, window_bp=hi - 1, max_pairs=2**62, rng=np.random.default_rng(0))  # all
    pos = variants["pos"].to_numpy(dtype=np.int64)
    dist = np.abs(pos[j] - pos[i])
    keep = dist >= lo
    i, j, dist = i[keep], j[keep], dist[keep]
    return i, j, dist, (i // patch) != (j // patch)


def pair_r2(g: np.ndarray, labels: np.ndarray, i, j) -> np.ndarray:
    """Within-population r^2 of every pair (i, j), averaged over populations; float, shape (pairs,)."""
    from genosynth.stats.frequency import allele_freq
    from genosynth.stats.ld import pair_correlations

    per_pop = []
    for lab in sorted(set(labels.tolist())):
        gl = g[labels == lab]
        r = pair_correlations(gl, i, j, fill=2 * allele_freq(gl))
        per_pop.append(r * r)
    return np.nanmean(np.stack(per_pop), axis=0)


def decay(r2: np.ndarray, dist, mask, *, bins=BINS_BP, min_pairs: int = 20) -> list[float | None]:
    """Mean of the pairs' ``r2`` (:func:`pair_r2`) per distance bin, pairs selected by ``mask``; None for a
    bin with fewer than ``min_pairs`` pairs."""
    out = []
    for lo, hi in bins:
        m = mask & (dist >= lo) & (dist < hi)
        out.append(float(np.nanmean(r2[m])) if m.sum() >= min_pairs else None)
    return out


def matched(syn, holdout, seed: int):
    """Synthetic people subsampled to the held-out count of every population."""
    rng = np.random.default_rng(seed)
    ls, lh = syn.labels("pop"), holdout.labels("pop")
    keep = []
    for lab in sorted(set(lh.tolist())):
        idx = np.flatnonzero(ls == lab)
        keep.extend(rng.choice(idx, size=min(idx.size, int((lh == lab).sum())), replace=False).tolist())
    return syn.subset(samples=np.sort(np.asarray(keep)))


def score(train_cohort, holdout, syn, *, patch: int, seed: int, dit_patch: int | None = None,
          all_pairs: bool = False) -> dict:
    """AF r and the LD-decay ratios; with ``dit_patch`` the straddling pairs are also split by whether
    their two VAE tokens fall in one DiT patch (``straddle_same_dit``) or in two (``straddle_cross_dit``).
    ``all_pairs``: the matched-distance boundary gap also over every pair of 1-100 kb
    (``boundary_gap_all_pairs``, :func:`gap_pairs`), free of the pair sample's noise."""
    from genosynth.evaluate.fidelity import pearson
    from genosynth.stats.frequency import allele_freq

    sm = matched(syn, holdout, seed)
    gh, gs = holdout.genotypes(), sm.genotypes()
    i, j, dist, straddle = pair_table(holdout.variants, patch, seed)
    every = np.ones_like(straddle)
    res = {"af_r": pearson(allele_freq(gh), allele_freq(syn.genotypes())), "n_matched": sm.n_samples,
           "bins_bp": BINS_BP}
    masks = [("all", every), ("straddle", straddle), ("inside", ~straddle)]
    if dit_patch:
        cross = (i // (patch * dit_patch)) != (j // (patch * dit_patch))  # two DiT patches
        masks += [("straddle_same_dit", straddle & ~cross), ("straddle_cross_dit", straddle & cross)]
    r2h, r2s = pair_r2(gh, holdout.labels("pop"), i, j), pair_r2(gs, sm.labels("pop"), i, j)  # (pairs,) each
    for name, mask in masks:
        real, synth = decay(r2h, dist, mask), decay(r2s, dist, mask)
        res[f"ld_decay_{name}"] = {"real": real, "synthetic": synth, "ratio": _ratios(real, synth)}
    res["boundary_gap_matched"] = matched_gap(r2h, r2s, dist, straddle)
    if all_pairs:
        i, j, dist, straddle = gap_pairs(holdout.variants, patch)
        res["boundary_gap_all_pairs"] = matched_gap(pair_r2(gh, holdout.labels("pop"), i, j),
                                                    pair_r2(gs, sm.labels("pop"), i, j), dist, straddle)
    return res


def _ratios(real, synth) -> list[float | None]:
    return [None if (a is None or b is None or a == 0) else b / a for a, b in zip(real, synth)]


def matched_gap(r2h: np.ndarray, r2s: np.ndarray, dist, straddle) -> dict:
    """The boundary gap at matched distance (issue 17 item 2: straddling pairs against "pairs of the same
    distance inside a window"): r^2 ratios of straddling and inside pairs in the narrow ``GAP_BINS_BP``
    (at least 200 pairs each) and their difference. The coarse ``ld_decay_straddle`` / ``_inside`` bins
    mix distances: inside pairs of the 10-100 kb bin lie mostly below 40 kb, straddling ones above.
    ``r2h``, ``r2s``: :func:`pair_r2` of held-out and synthetic people."""
    out = {"bins_bp": GAP_BINS_BP}
    for name, mask in (("straddle", straddle), ("inside", ~straddle)):
        real = decay(r2h, dist, mask, bins=GAP_BINS_BP, min_pairs=200)
        synth = decay(r2s, dist, mask, bins=GAP_BINS_BP, min_pairs=200)
        out[name] = _ratios(real, synth)
        out[f"{name}_pairs"] = [int((mask & (dist >= lo) & (dist < hi)).sum()) for lo, hi in GAP_BINS_BP]
    out["gap"] = [None if a is None or b is None else a - b for a, b in zip(out["straddle"], out["inside"])]
    return out


def holdout_aats(holdout, syn, seed: int) -> float:
    """AATS of the held-out people against as many synthetic people (matched per population)."""
    from genosynth.evaluate.attacks import aats

    gh, gs = holdout.genotypes(), matched(syn, holdout, seed).genotypes()
    n = min(len(gh), len(gs))
    return float(aats(gh[:n].astype(np.float32), gs[:n].astype(np.float32))["aats"])


def evaluate_set(train_cohort, holdout, syn, seed: int) -> dict:
    from genosynth.evaluate import evaluate, summary

    t0 = time.perf_counter()
    res = evaluate(train_cohort, holdout, {"synthetic": syn}, label_column="super_pop", seed=seed)
    out = {"synthetic": summary(res, "synthetic"), "holdout": summary(res, "holdout")}
    out["evaluate_s"] = time.perf_counter() - t0
    return out


def run(args) -> dict:
    import torch

    from genosynth.io import read_cohort

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    cohort, tr, ho = load_split(args.bfile, args.snps, args.seed, vcf=args.vcf, samples=args.samples)
    rec = {"snps": cohort.n_variants, "people": cohort.n_samples, "train_people": tr.n_samples,
           "holdout_people": ho.n_samples, "load_s": time.perf_counter() - t0, "threads": args.threads,
           "machine": platform.processor() or platform.machine(), "load_before": os.getloadavg()}
    rec.update(train(tr, args))
    rec["load_after_train"] = os.getloadavg()
    if args.json:  # a record of the training alone, in case sampling or scoring is stopped
        with open(args.json + ".train", "w") as fh:
            json.dump(rec, fh, indent=1)
    rec["sampling"] = [sample(args, n) for n in args.sample_n]
    prefix = rec["sampling"][-1]["prefix"]
    syn = read_cohort(bfile=prefix, samples=prefix + ".samples.tsv")
    rec["quality"] = score(tr, ho, syn, patch=rec["config"]["vae"]["patch"], seed=args.seed,
                           dit_patch=rec["config"]["dit"]["patch_size"], all_pairs=True)
    rec["quality"]["aats"] = holdout_aats(ho, syn, args.seed)
    for decoding in args.also_decode:  # the same model decoded otherwise, e.g. "none" = the DiT alone (stage b)
        run_ = sample(args, args.sample_n[-1], decoding)
        other = read_cohort(bfile=run_["prefix"], samples=run_["prefix"] + ".samples.tsv")
        rec[f"quality_{decoding}"] = score(tr, ho, other, patch=rec["config"]["vae"]["patch"], seed=args.seed,
                                           dit_patch=rec["config"]["dit"]["patch_size"])
        rec[f"quality_{decoding}"]["aats"] = holdout_aats(ho, other, args.seed)
        rec["sampling"].append(run_)
    if args.evaluate:
        rec["evaluate"] = evaluate_set(tr, ho, syn, args.seed)
    rec["load_after"] = os.getloadavg()
    return rec


def plot(paths: list[str], png: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = sorted((json.load(open(p)) for p in paths), key=lambda r: r["snps"])
    x = [r["snps"] for r in recs]
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.8))
    ax[0].plot(x, [r["s_per_epoch"].get("vae") for r in recs], "o-", label="VAE")
    ax[0].plot(x, [r["s_per_epoch"].get("dit") for r in recs], "s-", label="DiT")
    ax[0].set_ylabel("training s / epoch")
    ax[0].legend(loc="upper left")
    ax[1].plot(x, [r["sampling"][-1]["people_per_s"] for r in recs], "o-")
    ax[1].set_ylabel("sampling people / s")
    ax[2].plot(x, [r["train_peak_rss_mb"] / 1024 for r in recs], "o-", label="training")
    ax[2].plot(x, [max(s["peak_rss_mb"] for s in r["sampling"]) / 1024 for r in recs], "s-", label="sampling")
    ax[2].set_ylabel("peak RSS (GB)")
    ax[2].legend(loc="upper left")
    for a in ax:
        a.set_xscale("log")
        a.set_xlabel("SNPs")
    ax[1].set_yscale("log")
    fig.suptitle("genosynth cost against SNP count (2 threads; benchmarks/bench_scale.py)")
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bfile", help="simulated chromosome (PLINK prefix)")
    p.add_argument("--vcf", help="or a phased VCF.gz (trained in haplotype mode)")
    p.add_argument("--samples", help="sample table (default: PREFIX.samples.tsv)")
    p.add_argument("--snps", type=int, default=0, help="first N SNPs (0 = all)")
    p.add_argument("--out", default="/tmp/scale/run", help="prefix of the checkpoint and synthetic sets")
    p.add_argument("--json", help="write the record here")
    p.add_argument("--size", default="auto", choices=("auto", "default", "dense", "chromosome"),
                   help="configuration (genosynth train --size); chromosome forces chromosome_config at any SNP count")
    p.add_argument("--config", default="{}", metavar="JSON",
                   help='overrides of config sections, e.g. \'{"dit": {"local_mlp": 0}}\'')
    p.add_argument("--also-decode", nargs="*", default=[], metavar="METHOD",
                   help="also sample the last --sample-n with these --corr-guidance decodings and score them "
                        "(none = the DiT's latents decoded independently)")
    p.add_argument("--vae-epochs", type=int, default=None)
    p.add_argument("--dit-epochs", type=int, default=None)
    p.add_argument("--sample-n", type=int, nargs="+", default=[1000, 3000])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--evaluate", action="store_true", help="also run genosynth.evaluate (slow at 10^5 SNPs)")
    p.add_argument("--plot", nargs="+", help="JSON records to plot instead of running")
    p.add_argument("--png", default="benchmarks/results/scale_cost.png")
    args = p.parse_args(argv)
    if args.plot:
        plot(args.plot, args.png)
        return
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_step import emit

    emit(run(args), args.json)


if __name__ == "__main__":
    main()
