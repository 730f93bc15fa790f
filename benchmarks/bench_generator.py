"""Generator benchmarks: quality against the acceptance targets, and speed / memory.

Quality (train on a split, evaluate on the held-out rest with :func:`genosynth.evaluate.evaluate`)::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_generator.py quality --data 805 --threads 2
    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_generator.py quality --data sim --threads 2
    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_generator.py quality --data sim3kx --threads 2 \
        --save /tmp/dense.pt   # the dense-region acceptance cohort

``sim3kx`` (3,000 people, 3 Mb, 2,000 SNPs, out-of-Africa model with the recent expansion) is the
dense-region acceptance cohort; ``sim3k`` is the same without the expansion, whose cohort is full
of cryptic relatives sharing whole haplotypes (benchmarks/RESULTS.md, "Dense region, session 5").
With 1,500 people even a fresh real sample of the training size only reaches within-population
LD r 0.83 against train (estimation noise of ~1M mostly unlinked pairs), below the 0.85 target;
3,000 people lift that ceiling to about 0.9. ``--model CKPT`` re-samples a saved checkpoint (same ``--data``/``--seed``) with
other sampling options (``--steps``, ``--guidance``, ``--temperature``, ``--corr-guidance``,
``--pairing``) without retraining. The DiT's optimisation has its own flags: ``--dit-lr-schedule
cosine --dit-warmup STEPS`` (learning-rate schedule), ``--ema-decay``, ``--dit-target mean``
(learn posterior means instead of posterior draws) and ``--prediction`` (v, eps or x0).

Speed and peak memory (train time per epoch, sampling people/s, peak RSS) at 805 and ~5,000 SNPs::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_generator.py perf --data 805 --threads 2
    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_generator.py perf --data sim5k --threads 2

Every run prints one JSON line and writes ``benchmarks/results/generator_<mode>_<data>.json``.
Options such as ``--vae-epochs`` override :class:`genosynth.models.config.GeneratorConfig` fields.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from genosynth.models.config import GeneratorConfig, config_for_variants
from genosynth.training.plain import train_generator

REPO = Path(__file__).resolve().parents[1]
DATA_805 = Path(os.environ.get("GENOSYNTH_SHARED", REPO.parent / "shared")) / "data" / "1000g_805"
KEYS = ("af_r", "ld_r_near", "ld_r_near_within", "aats", "aats_holdout", "identical_to_train",
        "identical_haplotypes_to_train", "trtr_super_pop_lr", "tstr_super_pop_lr", "mia_auc")


def dense_region(n_samples: int, seed: int, *, recent_expansion: bool = False):
    """An msprime dense region: ``n_samples`` people, 3 Mb, 2,000 SNPs at MAF >= 0.05 (thinned evenly);
    ``recent_expansion`` adds Tennessen et al. (2012)'s recent growth to the demography."""
    from genosynth.simulation import simulate_cohort

    return simulate_cohort(n_samples=n_samples, sequence_length=3_000_000, maf=0.05, max_snps=2000, seed=seed,
                           recent_expansion=recent_expansion)


def load(name: str, seed: int):
    """The benchmark cohort: ``805`` (1000 Genomes AISNPs), ``sim`` / ``sim3k`` (msprime dense region,
    1,500 / 3,000 people), ``sim3kx`` (3,000 people with the recent expansion) or ``sim5k`` (8 Mb,
    5,000 SNPs)."""
    if name == "805":
        from genosynth.io import read_cohort

        return read_cohort(hapt=str(DATA_805 / "haplotypes.hapt.gz"), legend=str(DATA_805 / "snps.legend"),
                           samples=str(DATA_805 / "panel.tsv"))
    if name == "sim":
        return dense_region(1500, seed)
    if name == "sim3k":  # the dense-region acceptance cohort: 3,000 people (why: benchmarks/RESULTS.md)
        return dense_region(3000, seed)
    if name == "sim3kx":  # the same with realistic present population sizes (why: benchmarks/RESULTS.md)
        return dense_region(3000, seed, recent_expansion=True)
    if name == "sim5k":
        from genosynth.simulation import simulate_cohort

        return simulate_cohort(n_samples=1500, sequence_length=8_000_000, maf=0.05, max_snps=5000, seed=seed)
    raise SystemExit(f"unknown --data {name!r}")


def config_from(args, variants) -> GeneratorConfig:
    """``--size`` (``auto``: as ``genosynth train`` picks for these ``variants``) with the options' changes."""
    cfg = config_for_variants(args.size, variants)
    changes = {"training": {}, "vae": {}, "dit": {}, "sampling": {}, "diffusion": {}}
    for key, section, field in (("vae_epochs", "training", "vae_epochs"), ("dit_epochs", "training", "dit_epochs"),
                                ("latent_channels", "vae", "latent_channels"), ("patch", "vae", "patch"),
                                ("kl_weight", "vae", "kl_weight"), ("width", "vae", "width"),
                                ("snp_dim", "vae", "snp_dim"), ("dit_hidden", "dit", "hidden"),
                                ("dit_depth", "dit", "depth"), ("steps", "sampling", "steps"),
                                ("guidance", "sampling", "guidance"), ("dit_lr", "training", "dit_lr"),
                                ("vae_lr", "training", "vae_lr"), ("dit_heads", "dit", "heads"),
                                ("dit_patch", "dit", "patch_size"), ("ema_decay", "training", "ema_decay"),
                                ("dit_batch_size", "training", "dit_batch_size"),
                                ("vae_batch_size", "training", "vae_batch_size"),
                                ("calibration_rows", "training", "calibration_rows"),
                                ("pairing", "sampling", "pairing"),
                                ("temperature", "sampling", "temperature"), ("eta", "sampling", "eta"),
                                ("dit_lr_schedule", "training", "dit_lr_schedule"),
                                ("dit_warmup", "training", "dit_warmup"), ("dit_target", "training", "dit_target"),
                                ("prediction", "diffusion", "prediction")):
        value = getattr(args, key, None)
        if value is not None:
            changes[section][field] = value
    if getattr(args, "label_column", None):  # e.g. pop: finer labels, super_pop still written (label_parents)
        cfg = cfg.replace(label_column=args.label_column)
    return cfg.replace(**{k: v for k, v in changes.items() if v})


def quality(args) -> dict:
    from genosynth.evaluate import evaluate, independent_snps_generator, split_train_holdout, summary

    cohort = load(args.data, args.seed)
    train, holdout = split_train_holdout(cohort, holdout_fraction=0.2, stratify="super_pop", seed=args.seed)
    t0 = time.perf_counter()
    if args.model:  # evaluate a saved model (e.g. other sampling options) without training
        from genosynth.sampling.generator import Generator

        model = Generator.load(args.model)
        if args.pairing:
            model.config.sampling.pairing = args.pairing
        cfg = model.config
    else:
        cfg = config_from(args, train.variants)
        model = train_generator(train, config=cfg, seed=args.seed, progress=args.progress, log=print,
                                checkpoint=args.save)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    n = args.n or train.n_samples
    synthetic = {"genosynth": model.sample(n, seed=args.seed + 1, steps=args.steps, guidance=args.guidance,
                                           eta=args.eta, temperature=args.temperature,
                                           corr_guidance=args.corr_guidance)}
    sample_s = time.perf_counter() - t0
    if args.baseline:
        synthetic["independent_snps_pop"] = independent_snps_generator(train, n=n, label_column="pop", seed=args.seed)
    t0 = time.perf_counter()
    results = evaluate(train, holdout, synthetic, label_column="super_pop", seed=args.seed)
    eval_s = time.perf_counter() - t0
    out = {"mode": "quality", "data": args.data, "snps": cohort.n_variants, "train_people": train.n_samples,
           "holdout_people": holdout.n_samples, "synthetic_people": n, "seed": args.seed,
           "threads": torch.get_num_threads(), "train_s": round(train_s, 1), "sample_s": round(sample_s, 1),
           "sample_people_per_s": round(n / sample_s, 1), "eval_s": round(eval_s, 1),
           "vae": {k: round(v, 4) for k, v in model.meta["metrics"].items()},
           "config": cfg.to_dict(), "sets": {}}
    for name in list(synthetic) + ["holdout"]:
        s = summary(results, name)
        out["sets"][name] = {k: (round(s[k], 4) if isinstance(s.get(k), float) else s.get(k)) for k in KEYS}
    return out


def ceiling_split(people: int, seed: int, *, recent_expansion: bool = False):
    """One simulation of ``people`` x 1.8 people split into train (80 % of ``people``), holdout (20 %)
    and a disjoint fresh sample as large as train: ``(cohort, train, holdout, fresh)``."""
    n_train = int(round(0.8 * people))
    cohort = dense_region(people + n_train, seed, recent_expansion=recent_expansion)
    order = np.random.default_rng(seed).permutation(cohort.n_samples)
    train, holdout, fresh = (cohort.subset(samples=np.sort(order[a:b]))
                             for a, b in ((0, n_train), (n_train, people), (people, people + n_train)))
    return cohort, train, holdout, fresh


def ceiling(args) -> dict:
    """What a perfect generator would score: a fresh real sample of the training size as "synthetic".

    One msprime cohort of ``--people`` x 1.8 people is split into train (80 % of ``--people``),
    holdout (20 %) and a disjoint fresh sample as large as train; all three come from the same
    simulation, so the fresh sample is a draw from the true distribution.
    """
    from genosynth.evaluate import evaluate, summary

    n = args.people
    cohort, train, holdout, fresh = ceiling_split(n, args.seed, recent_expansion=args.recent_expansion)
    results = evaluate(train, holdout, {"fresh_real": fresh}, label_column="super_pop", seed=args.seed)
    out = {"mode": "ceiling", "people": n, "recent_expansion": args.recent_expansion, "snps": cohort.n_variants, "train_people": train.n_samples,
           "holdout_people": holdout.n_samples, "fresh_people": fresh.n_samples, "seed": args.seed, "sets": {}}
    for name in ("fresh_real", "holdout"):
        sm = summary(results, name)
        out["sets"][name] = {k: (round(sm[k], 4) if isinstance(sm.get(k), float) else sm.get(k)) for k in KEYS}
    return out


def perf(args) -> dict:
    """Seconds per epoch of each stage, sampling people/s and peak RSS for one data set."""
    cohort = load(args.data, args.seed)
    cfg = config_from(args, cohort.variants).replace(training={"vae_epochs": 2, "dit_epochs": 2})
    model = train_generator(cohort, config=cfg, seed=args.seed)
    sec = model.meta["epoch_seconds"]
    n = args.n or 1000
    model.sample(16, seed=0)  # warm-up
    t0 = time.perf_counter()
    model.sample(n, seed=1)
    people_s = n / (time.perf_counter() - t0)
    return {"mode": "perf", "data": args.data, "snps": cohort.n_variants, "people": cohort.n_samples,
            "training_rows": cohort.n_samples * (2 if cohort.phased else 1), "threads": torch.get_num_threads(),
            "vae_s_per_epoch": round(float(np.mean(sec["vae"])), 2), "dit_s_per_epoch": round(float(np.mean(sec["dit"])), 2),
            "sample_people": n, "sample_steps": cfg.sampling.steps, "sample_people_per_s": round(people_s, 1),
            "decoding": cfg.sampling.corr_guidance,
            "corr_band": None if model.corr_prior is None else int(model.corr_prior.window),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=("quality", "perf", "ceiling"))
    p.add_argument("--people", type=int, default=1500, help="ceiling mode: benchmark cohort size")
    p.add_argument("--recent-expansion", action="store_true",
                   help="ceiling mode: simulate with the recent expansion (the population model of sim3kx)")
    p.add_argument("--data", default="805", choices=("805", "sim", "sim3k", "sim3kx", "sim5k"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", default="default", choices=("default", "auto", "dense"),
                   help="training configuration (auto: what `genosynth train` picks; default: GeneratorConfig())")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--n", type=int, default=None, help="synthetic people (default: training size)")
    p.add_argument("--baseline", action="store_true", help="also evaluate the independent-SNP baseline")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--tag", default="", help="suffix of the result file name")
    p.add_argument("--save", default=None, help="write the trained checkpoint here")
    p.add_argument("--model", default=None, help="evaluate this checkpoint instead of training (same --data/--seed)")
    p.add_argument("--eta", type=float, default=None, help="DDIM eta at sampling")
    p.add_argument("--temperature", type=float, default=None, help="decoder temperature at sampling")
    p.add_argument("--corr-guidance", default=None, choices=("none", "copula", "latent", "latent+copula"),
                   help="correlation-guided decoding at sampling (default: the model's)")
    p.add_argument("--pairing", default=None, choices=("random", "matched"), help="haplotype pairing")
    p.add_argument("--dit-lr-schedule", default=None, choices=("constant", "cosine"),
                   help="DiT learning rate over its steps (training.dit_lr_schedule)")
    p.add_argument("--dit-warmup", type=int, default=None, help="DiT linear warm-up steps (training.dit_warmup)")
    p.add_argument("--dit-target", default=None, choices=("sample", "mean"),
                   help="latents the DiT learns: posterior draws or means (training.dit_target)")
    p.add_argument("--prediction", default=None, choices=("v", "eps", "x0"), help="diffusion network target")
    p.add_argument("--label-column", default=None,
                   help="condition on this sample column (default super_pop); evaluation is by super_pop")
    for name, typ in (("vae-epochs", int), ("dit-epochs", int), ("latent-channels", int), ("patch", int),
                      ("kl-weight", float), ("width", int), ("snp-dim", int), ("dit-hidden", int),
                      ("dit-depth", int), ("steps", int), ("guidance", float), ("dit-lr", float),
                      ("vae-lr", float), ("dit-heads", int), ("dit-patch", int), ("ema-decay", float),
                      ("dit-batch-size", int), ("vae-batch-size", int), ("calibration-rows", int)):
        p.add_argument(f"--{name}", type=typ, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = {"quality": quality, "perf": perf, "ceiling": ceiling}[args.mode](args)
    out["command"] = "python benchmarks/bench_generator.py " + " ".join(sys.argv[1:] if argv is None else argv)
    folder = REPO / "benchmarks" / "results"
    folder.mkdir(parents=True, exist_ok=True)
    what = f"sim{args.people}{'x' if args.recent_expansion else ''}" if args.mode == "ceiling" else args.data
    path = folder / f"generator_{args.mode}_{what}{args.tag}.json"
    path.write_text(json.dumps(out, indent=2, default=str))
    print(json.dumps({k: v for k, v in out.items() if k != "config"}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
