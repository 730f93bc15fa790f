"""``genosynth demo --out DIR``: the whole job in one command, in a few minutes on a laptop CPU.

1. simulates a 3-population out-of-Africa cohort with msprime and a case/control trait with
   tstrait (``DIR/cohort.vcf.gz``, ``DIR/cohort.samples.tsv``, ``DIR/cohort.truth.json``),
2. splits it into training and held-out people (``DIR/train.vcf.gz``, ``DIR/holdout.vcf.gz`` and
   their ``.samples.tsv``),
3. trains the generator on the training people, conditioned on ancestry and the trait (``DIR/model.pt``),
4. samples as many synthetic people, cases and controls (``DIR/synthetic.vcf.gz`` + ``.samples.tsv``),
5. evaluates them against the real people, with a GWAS of the trait (``DIR/report.html``,
   ``DIR/report.json``).

The run log is ``DIR/demo.log``; ``DIR/demo.json`` records options, seed, headline figures and
the ``genosynth evaluate`` command that recomputes the report from the files in ``DIR``.
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
#: The demo's trait (liability threshold, simulated with tstrait): few causal SNPs so that a
#: training set of ~1,200 people shows clear GWAS hits.
DEMO_TRAIT = {"n_causal": 10, "heritability": 0.5, "prevalence": 0.3}
#: People per sampling batch in the demo (the whole synthetic cohort is held in memory anyway).
DEMO_SAMPLE_BATCH = 128
#: A light evaluation for ``--size tiny`` (written to DIR/evaluate.config.json for the re-run).
TINY_EVALUATION = {"classifiers": ["lr"], "gwas_repeats": 1, "mia_repeats": 2, "aats_repeats": 1, "rf_trees": 10}


def add_arguments(parser) -> None:
    parser.add_argument("--out", metavar="DIR", required=True, help="output folder (created)")
    parser.add_argument("--seed", type=int, default=None, help="random seed; drawn and recorded when omitted")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    parser.add_argument("--n", type=int, default=1500, help="simulated people (default 1500)")
    parser.add_argument("--length-mb", type=float, default=2.0, help="simulated region in Mb (default 2)")
    parser.add_argument("--max-snps", type=int, default=1000, help="thin to at most this many SNPs (default 1000)")
    parser.add_argument("--model", default="builtin", metavar="NAME",
                        help="demographic model: 'builtin' out-of-Africa (default) or a stdpopsim HomSap model id "
                             "(see `genosynth simulate --help`)")
    parser.add_argument("--vae-epochs", type=int, default=DEMO_TRAINING["vae_epochs"])
    parser.add_argument("--dit-epochs", type=int, default=DEMO_TRAINING["dit_epochs"])
    parser.add_argument("--size", choices=("auto", "default", "tiny"), default="auto",
                        help="'auto' (default): the configuration `genosynth train` picks for the simulated region "
                             "(dense: a per-token DiT MLP); 'default': the default configuration; 'tiny': a tiny "
                             "model and a light evaluation (seconds; for smoke tests)")
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
    log.info(f"[1/5] Simulating {args.n} people over {args.length_mb:g} Mb (msprime) with a case/control trait "
             "(tstrait)")
    cohort = simulate_stage(args, seed=seed, log=log)
    t = cohort.meta["truth"]
    log.info(f"Simulated {cohort.n_samples} people x {cohort.n_variants} SNPs "
             f"({', '.join(sorted(set(cohort.labels('super_pop'))))}); trait: {t['n_cases']} cases, "
             f"{t['n_controls']} controls, {len(t['causal'])} causal SNPs, h2 {t['heritability']:g}")
    log.info("[2/5] Splitting into training and held-out people")
    train, holdout = split_stage(cohort, out, seed=seed)
    timings["simulate_s"] = time.perf_counter() - t0
    log.timing("Simulation and split", timings["simulate_s"])

    t0 = time.perf_counter()
    log.info(f"[3/5] Training the generator on {train.n_samples} people (ancestry and trait)")
    model = train_stage(args, train, seed=seed, log=log)
    timings["train_s"] = time.perf_counter() - t0
    log.timing("Training", timings["train_s"])

    t0 = time.perf_counter()
    log.info(f"[4/5] Sampling {train.n_samples} synthetic people")
    synthetic = sample_stage(model, train.n_samples, out, seed=seed, progress=not args.no_progress)
    timings["sample_s"] = time.perf_counter() - t0
    log.timing(f"Sampling {train.n_samples} people", timings["sample_s"])

    headline = evaluate_stage(args, train, holdout, synthetic, seed=seed, log=log, timings=timings)
    command = evaluate_command(args, seed)
    record = {**provenance(command=log.argv, seed=seed, options=args),
              "timings_s": {k: round(v, 1) for k, v in timings.items()}, "headline": headline,
              "model": os.path.join(out, "model.pt"), "vae_metrics": model.meta["metrics"],
              "evaluate_command": command}
    path = os.path.join(out, "demo.json")
    with atomic_outputs([path]) as (tmp,):
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(record, fh, indent=2, default=str)
    log.info(f"Demo finished in {sum(timings.values()):.0f} s; open {os.path.join(out, 'report.html')}")
    log.info(f"Re-run the evaluation on the files in {out}:\n  {command}")
    return 0


def evaluate_command(args, seed: int) -> str:
    """The ``genosynth evaluate`` command that recomputes ``DIR/report.*`` from the demo's files."""
    import shlex

    def p(name: str) -> str:
        return shlex.quote(os.path.join(args.out, name))

    config = f" --config {p('evaluate.config.json')}" if args.size == "tiny" else ""
    return (f"genosynth evaluate --real {p('train.vcf.gz')} --holdout {p('holdout.vcf.gz')} "
            f"--synthetic genosynth={p('synthetic.vcf.gz')} --samples {p('cohort.samples.tsv')} "
            f"--synthetic-samples genosynth={p('synthetic.samples.tsv')} --gwas-phenotype phenotype{config} "
            f"--seed {seed} --out {p('report_rerun')}")


def simulate_stage(args, *, seed: int, log):
    """1. The msprime cohort with a tstrait trait: ``DIR/cohort.vcf.gz``, ``.samples.tsv``, ``.truth.json``."""
    from genosynth.io import write_cohort
    from genosynth.io.samples import write_sample_table
    from genosynth.simulation import PhenotypeSpec, simulate_cohort

    cohort = simulate_cohort(n_samples=args.n, sequence_length=int(args.length_mb * 1e6), maf=0.05,
                             max_snps=args.max_snps, seed=seed, demographic_model=args.model,
                             phenotype=PhenotypeSpec(**DEMO_TRAIT), trait_model="tstrait")
    write_cohort(cohort, os.path.join(args.out, "cohort"), "vcf")
    write_sample_table(cohort, os.path.join(args.out, "cohort.samples.tsv"))
    path = os.path.join(args.out, "cohort.truth.json")
    with atomic_outputs([path]) as (tmp,):
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(cohort.meta["truth"], fh, indent=2)
    return cohort


def split_stage(cohort, out: str, *, seed: int):
    """2. Training and held-out people (80/20 by super-population): ``DIR/train.vcf.gz``, ``DIR/holdout.vcf.gz``
    and their sample tables (the inputs ``genosynth evaluate`` needs to recompute the report)."""
    from genosynth.evaluate import split_train_holdout
    from genosynth.io import write_cohort
    from genosynth.io.samples import write_sample_table

    train, holdout = split_train_holdout(cohort, holdout_fraction=0.2, stratify="super_pop", seed=seed)
    for name, part in (("train", train), ("holdout", holdout)):
        write_cohort(part, os.path.join(out, name), "vcf")
        write_sample_table(part, os.path.join(out, f"{name}.samples.tsv"))
        part.meta = {**part.meta, "source": os.path.abspath(os.path.join(out, f"{name}.vcf.gz"))}  # for the report
    return train, holdout


def train_stage(args, train, *, seed: int, log):
    """3. The generator trained on the training people (``DIR/model.pt``)."""
    from genosynth.models.config import config_for_variants, tiny_config
    from genosynth.training.plain import train_generator

    cfg = (tiny_config() if args.size == "tiny" else config_for_variants(args.size, train.variants)).replace(
        training={**DEMO_TRAINING, "vae_epochs": args.vae_epochs, "dit_epochs": args.dit_epochs},
        phenotype_column="phenotype")
    return train_generator(train, config=cfg, seed=seed, device=args.device,
                           checkpoint=os.path.join(args.out, "model.pt"), progress=not args.no_progress,
                           log=log.info)


def sample_stage(model, n: int, out: str, *, seed: int, progress: bool = True):
    """4. ``n`` synthetic people, cases and controls as in training (``DIR/synthetic.vcf.gz`` + ``.samples.tsv``).

    Seed ``seed + 1``; batches of :data:`DEMO_SAMPLE_BATCH` people behind a progress bar.
    """
    import numpy as np
    import pandas as pd
    from tqdm.auto import tqdm

    from genosynth.cohort import Cohort
    from genosynth.io import write_cohort
    from genosynth.io.samples import write_sample_table
    from genosynth.sampling.counts import plan_counts

    counts, cases = plan_counts(None, n=n, cases=None, controls=None, vocabulary=model.vocabulary,
                                mix=model.label_mix, case_fraction=model.case_fraction)
    parts = []
    with tqdm(total=n, desc="sampling", unit="person", disable=not progress, dynamic_ncols=True) as bar:
        for part in model.iter_batches(counts, seed=seed + 1, cases=cases, batch_size=DEMO_SAMPLE_BATCH):
            parts.append(part)  # small enough to hold; `genosynth sample` streams
            bar.update(part.n_samples)
    synthetic = Cohort(alleles=np.concatenate([p.alleles for p in parts]), variants=model.variants,
                       samples=pd.concat([p.samples for p in parts], ignore_index=True),
                       phased=model.phased, ploidy=2, meta=parts[0].meta)
    syn_prefix = os.path.join(out, "synthetic")
    write_cohort(synthetic, syn_prefix, "vcf")
    write_sample_table(synthetic, f"{syn_prefix}.samples.tsv")
    synthetic.meta = {**synthetic.meta, "source": os.path.abspath(f"{syn_prefix}.vcf.gz")}  # the report names it
    return synthetic


def evaluate_stage(args, train, holdout, synthetic, *, seed: int, log, timings: dict) -> dict:
    """5. The report (``DIR/report.html``, ``DIR/report.json``); returns the headline figures."""
    try:
        from genosynth.evaluate import EvalConfig, evaluate, summary, write_report
    except ImportError:  # pragma: no cover
        log.warn("the evaluation suite is not installed; skipped the report")
        return {}
    t0 = time.perf_counter()
    log.info("[5/5] Evaluating: fidelity, population structure, GWAS of the trait (cases vs controls), "
             "privacy attacks")
    values = {"gwas_phenotype": "phenotype"}
    if args.size == "tiny":
        values.update(TINY_EVALUATION)
        path = os.path.join(args.out, "evaluate.config.json")
        with atomic_outputs([path]) as (tmp,):
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(TINY_EVALUATION, fh, indent=2)
    eval_cfg = EvalConfig.from_dict(values)
    results = evaluate(train, holdout, {"genosynth": synthetic}, label_column="super_pop", config=eval_cfg,
                       seed=seed, progress=not args.no_progress)
    paths = write_report(results, os.path.join(args.out, "report"), title="genosynth demo")
    timings["evaluate_s"] = time.perf_counter() - t0
    s = summary(results, "genosynth")
    keys = ("af_r", "ld_r_near_within", "aats", "identical_to_train", "tstr_super_pop_lr", "trtr_super_pop_lr",
            "gwas_rank_r", "gwas_overlap_top10")
    headline = {k: s.get(k) for k in keys}
    log.info("Evaluation: " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                        for k, v in headline.items()))
    log.info("Wrote " + ", ".join(paths))
    return headline
