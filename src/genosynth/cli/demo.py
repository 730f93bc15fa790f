"""``genosynth demo --out DIR``: the whole job in one command, in a few minutes on a laptop CPU.

1. simulates a 3-population out-of-Africa cohort with msprime (``DIR/cohort.vcf.gz``),
2. splits it into training and held-out people (``DIR/train.samples.tsv``, ``DIR/holdout.samples.tsv``),
3. trains the generator on the training people (``DIR/model.pt``),
4. samples as many synthetic people (``DIR/synthetic.vcf.gz`` + ``.samples.tsv``),
5. evaluates them against the real people (``DIR/report.html``, ``DIR/report.json``).

The run log is ``DIR/demo.log`` and ``DIR/demo.json`` records options, seed and
headline figures.
"""

from __future__ import annotations

import json
import os
import time

from genosynth.cli.common import resolve_seed, set_threads
from genosynth.errors import InputError
from genosynth.io.atomic import atomic_outputs
from genosynth.provenance import provenance

HELP = "simulate a cohort, train, sample and evaluate in one command (a few minutes on a CPU)"

#: Demo training schedule: small enough for a few minutes on 2 CPU cores.
DEMO_TRAINING = {"vae_epochs": 12, "dit_epochs": 40, "checkpoint_every": 10}


def add_arguments(parser) -> None:
    parser.add_argument("--out", metavar="DIR", required=True, help="output folder (created)")
    parser.add_argument("--seed", type=int, default=None, help="random seed; drawn and recorded when omitted")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    parser.add_argument("--n", type=int, default=1500, help="simulated people (default 1500)")
    parser.add_argument("--length-mb", type=float, default=2.0, help="simulated region in Mb (default 2)")
    parser.add_argument("--max-snps", type=int, default=1000, help="thin to at most this many SNPs (default 1000)")
    parser.add_argument("--vae-epochs", type=int, default=DEMO_TRAINING["vae_epochs"])
    parser.add_argument("--dit-epochs", type=int, default=DEMO_TRAINING["dit_epochs"])
    parser.add_argument("--size", choices=("default", "tiny"), default="default",
                        help="'tiny': a tiny model and a light evaluation (seconds; for smoke tests)")
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def log_prefix(args) -> str:
    """The demo's ``--out`` is a folder: its log is ``DIR/demo.log``."""
    return os.path.join(args.out, "demo")


def run(args, log) -> int:
    if args.n < 20:
        raise InputError(f"--n must be >= 20 people for a meaningful demo, got {args.n}")
    out = args.out
    if os.path.exists(out) and not os.path.isdir(out):
        raise InputError(f"--out {out} is a file; give a folder name")
    os.makedirs(out, exist_ok=True)
    seed = resolve_seed(args.seed, log)
    set_threads(args.threads, log)
    timings = {}

    t0 = time.perf_counter()
    cohort = simulate_stage(args, seed=seed, log=log)
    timings["simulate_s"] = time.perf_counter() - t0
    log.info(f"Simulated {cohort.n_samples} people x {cohort.n_variants} SNPs "
             f"({', '.join(sorted(set(cohort.labels('super_pop'))))}) in {timings['simulate_s']:.1f} s")
    train, holdout = split_stage(cohort, out, seed=seed)

    t0 = time.perf_counter()
    model = train_stage(args, train, seed=seed, log=log)
    timings["train_s"] = time.perf_counter() - t0
    log.timing("Training", timings["train_s"])

    t0 = time.perf_counter()
    synthetic = sample_stage(model, train.n_samples, out, seed=seed)
    timings["sample_s"] = time.perf_counter() - t0
    log.timing(f"Sampling {train.n_samples} people", timings["sample_s"])

    headline = evaluate_stage(args, train, holdout, synthetic, seed=seed, log=log, timings=timings)
    record = {**provenance(command=log.argv, seed=seed, options=args),
              "timings_s": {k: round(v, 1) for k, v in timings.items()}, "headline": headline,
              "model": os.path.join(out, "model.pt"), "vae_metrics": model.meta["metrics"]}
    path = os.path.join(out, "demo.json")
    with atomic_outputs([path]) as (tmp,):
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(record, fh, indent=2, default=str)
    log.info(f"Demo finished in {sum(timings.values()):.0f} s; open {os.path.join(out, 'report.html')}")
    return 0


def simulate_stage(args, *, seed: int, log):
    """1. The msprime cohort, written as ``DIR/cohort.vcf.gz`` and ``DIR/cohort.samples.tsv``."""
    from genosynth.io import write_cohort
    from genosynth.io.samples import write_sample_table
    from genosynth.simulation import simulate_cohort

    cohort = simulate_cohort(n_samples=args.n, sequence_length=int(args.length_mb * 1e6), maf=0.05,
                             max_snps=args.max_snps, seed=seed)
    write_cohort(cohort, os.path.join(args.out, "cohort"), "vcf")
    write_sample_table(cohort, os.path.join(args.out, "cohort.samples.tsv"))
    return cohort


def split_stage(cohort, out: str, *, seed: int):
    """2. Training and held-out people (80/20 by super-population), their sample tables written."""
    from genosynth.io.samples import write_sample_table

    try:
        from genosynth.evaluate import split_train_holdout
    except ImportError:  # pragma: no cover - the evaluator ships with the package
        split_train_holdout = None
    if split_train_holdout is not None:
        train, holdout = split_train_holdout(cohort, holdout_fraction=0.2, stratify="super_pop", seed=seed)
    else:  # pragma: no cover
        import numpy as np

        idx = np.random.default_rng(seed).permutation(cohort.n_samples)
        cut = int(0.8 * len(idx))
        train, holdout = cohort.subset(samples=np.sort(idx[:cut])), cohort.subset(samples=np.sort(idx[cut:]))
    write_sample_table(train, os.path.join(out, "train.samples.tsv"))
    write_sample_table(holdout, os.path.join(out, "holdout.samples.tsv"))
    return train, holdout


def train_stage(args, train, *, seed: int, log):
    """3. The generator trained on the training people (``DIR/model.pt``)."""
    from genosynth.models.config import GeneratorConfig, tiny_config
    from genosynth.training.plain import train_generator

    cfg = (tiny_config() if args.size == "tiny" else GeneratorConfig()).replace(
        training={**DEMO_TRAINING, "vae_epochs": args.vae_epochs, "dit_epochs": args.dit_epochs})
    return train_generator(train, config=cfg, seed=seed, device=args.device,
                           checkpoint=os.path.join(args.out, "model.pt"), progress=not args.no_progress,
                           log=log.info)


def sample_stage(model, n: int, out: str, *, seed: int):
    """4. ``n`` synthetic people (``DIR/synthetic.vcf.gz`` + ``.samples.tsv``), seed ``seed + 1``."""
    from genosynth.io import write_cohort
    from genosynth.io.samples import write_sample_table

    synthetic = model.sample(n, seed=seed + 1)  # small enough to hold; `sample` streams
    syn_prefix = os.path.join(out, "synthetic")
    write_cohort(synthetic, syn_prefix, "vcf")
    write_sample_table(synthetic, f"{syn_prefix}.samples.tsv")
    return synthetic


def evaluate_stage(args, train, holdout, synthetic, *, seed: int, log, timings: dict) -> dict:
    """5. The report (``DIR/report.html``, ``DIR/report.json``); returns the headline figures."""
    try:
        from genosynth.evaluate import EvalConfig, evaluate, summary, write_report
    except ImportError:  # pragma: no cover
        log.warn("the evaluation suite is not installed; skipped the report")
        return {}
    t0 = time.perf_counter()
    eval_cfg = EvalConfig()
    if args.size == "tiny":
        eval_cfg = EvalConfig(classifiers=("lr",), gwas_repeats=1, mia_repeats=2, aats_repeats=1, rf_trees=10)
    results = evaluate(train, holdout, {"genosynth": synthetic}, label_column="super_pop", config=eval_cfg,
                       seed=seed)
    paths = write_report(results, os.path.join(args.out, "report"), title="genosynth demo")
    timings["evaluate_s"] = time.perf_counter() - t0
    s = summary(results, "genosynth")
    keys = ("af_r", "ld_r_near_within", "aats", "identical_to_train", "tstr_super_pop_lr", "trtr_super_pop_lr")
    headline = {k: s.get(k) for k in keys}
    log.info("Evaluation: " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                        for k, v in headline.items()))
    log.info("Wrote " + ", ".join(paths))
    return headline
