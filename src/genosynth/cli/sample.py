"""``genosynth sample``: draw a synthetic cohort from a trained model (``--model PREFIX.pt``).

Writes the cohort (``--format bed|vcf|hapt|pgen``), ``PREFIX.samples.tsv`` with each person's label,
``PREFIX.privacy.json`` when the model carries a privacy guarantee, ``PREFIX.sample.json``
(options, seed, the model's provenance, and this run's under ``provenance``) and ``PREFIX.log``.
People are generated in batches and staged on disk (``PREFIX.staging.tmp`` for the genotypes,
``PREFIX.samples.staging.tmp`` for the sample table; removed at the end, on Ctrl-C and on SIGTERM;
a stale one left by SIGKILL is replaced by the next run), so memory stays flat however many are
asked for. Sample ids are ``--id-prefix`` + a 7-digit number; the default
prefix ``<basename of --out>_s<seed>_`` keeps ids of different runs apart (``bcftools merge``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import threading
import time

from genosynth.cli.common import add_common_arguments, resolve_seed, set_threads
from genosynth.errors import InputError
from genosynth.io.atomic import atomic_outputs
from genosynth.models.ld_prior import CHOICES
from genosynth.models.solvers import SAMPLERS
from genosynth.provenance import provenance

HELP = "generate a synthetic cohort from a trained model (bed, VCF.gz, hapt or pgen + samples table)"


def add_arguments(parser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--model", required=True, metavar="CHECKPOINT", help="PREFIX.pt written by genosynth train")
    parser.add_argument("--n", type=int, default=None, metavar="N",
                        help="people to generate, split by the training label mix (or give --labels)")
    parser.add_argument("--labels", default=None, metavar="L=N,...",
                        help="people per label, e.g. EUR=500,AFR=500 (default: --n in the training mix)")
    parser.add_argument("--cases", type=int, default=None, metavar="N",
                        help="cases to generate (model trained with --phenotype-column); spread over the labels as "
                             "in the training cases, or by --labels")
    parser.add_argument("--controls", type=int, default=None, metavar="N", help="controls to generate (with --cases)")
    parser.add_argument("--format", choices=("bed", "vcf", "hapt", "pgen"), default="bed",
                        help="output format (default bed; vcf, hapt and pgen keep phase)")
    parser.add_argument("--id-prefix", default=None, metavar="TEXT",
                        help="start of every synthetic sample id (default: <basename of --out>_s<seed>_, so that "
                             "ids of different runs never collide)")
    parser.add_argument("--guidance", type=float, default=None,
                        help="classifier-free guidance scale (default from the model, 1 = plain conditional)")
    parser.add_argument("--pheno-guidance", type=float, default=None, metavar="W",
                        help="phenotype models with --cases/--controls: a separate guidance scale for case/control "
                             "status given the ancestry (--guidance then scales the ancestry alone); default: "
                             "one joint scale")
    parser.add_argument("--steps", type=int, default=None, help="sampler steps, one DiT pass each (default from the model)")
    parser.add_argument("--sampler", default=None, choices=SAMPLERS,
                        help="latent sampler: dpm++2m (DPM-Solver++, the default of new models: 8 steps match 20 of "
                             "deterministic ddim; benchmarks/RESULTS.md, issue 18) or ddim (with --eta; the chromosome "
                             "configuration samples 20 stochastic ddim steps, eta 1); default from the model")
    parser.add_argument("--batch-size", type=int, default=None, metavar="N",
                        help="people per batch written to the staging file (default from the model: 2048, 64 for "
                             "--size tiny models); the model draws in blocks of its own sampling.batch_size whatever "
                             "N is, so N changes neither the output nor, measurably, the speed "
                             "(benchmarks/RESULTS.md, issue 20)")
    parser.add_argument("--temperature", type=float, default=None, metavar="T",
                        help="decoder temperature: allele logits are divided by T before drawing (below 1 sharper, "
                             "above 1 more diverse); default from the model (1, or the temperature fitted in training "
                             "by the chromosome configuration, docs/generator.md)")
    parser.add_argument("--eta", type=float, default=None, metavar="E",
                        help="with --sampler ddim: stochastic steps (0 deterministic, 1 DDPM-like; default from the "
                             "model: 1 for the chromosome configuration, else 0). Stochastic steps keep more "
                             "long-range LD than deterministic ones on an imperfect DiT but need ~20 steps "
                             "(docs/diffusion.md)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default=None,
                        help="DiT passes in float32 (the default: a seed gives the same file on any CPU) or under "
                             "bfloat16 autocast (faster on CPUs with AMX and on GPUs; not bit-identical to fp32, and "
                             "may differ between machines; benchmarks/RESULTS.md, issue 18)")
    parser.add_argument("--argmax", action="store_true",
                        help="take the most likely allele instead of drawing it (less diverse; not recommended)")
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--corr-guidance", choices=CHOICES, default=None,
                        help="correlation-guided decoding with the model's LD prior (default from the model; new "
                             "models: auto = copula on sparse panels, latent+copula on dense ones); none = plain "
                             "per-SNP draws (docs/corrguide.md)")
    parser.add_argument("--no-ancestry-spread", action="store_true",
                        help="DP models: draw everyone at their label's released mean ancestry instead of each "
                             "person's own draw from the released within-label spread (docs/privacy.md)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args, log) -> int:
    from genosynth.sampling.generator import Generator
    from genosynth.sampling.write import default_id_prefix, staging_path, write_synthetic

    if args.steps is not None and args.steps < 1:
        raise InputError(f"--steps must be >= 1, got {args.steps}")
    if args.batch_size is not None and args.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.guidance is not None and args.guidance < 0:
        raise InputError(f"--guidance must be >= 0 (1 = no guidance), got {args.guidance}")
    if args.pheno_guidance is not None and args.pheno_guidance < 0:
        raise InputError(f"--pheno-guidance must be >= 0 (1 = no extra guidance), got {args.pheno_guidance}")
    if args.id_prefix is not None and not re.fullmatch(r"[A-Za-z0-9_.:-]*", args.id_prefix):
        raise InputError(f"--id-prefix {args.id_prefix!r} has characters sample ids cannot hold; use letters, "
                         "digits and _ . : - only")
    seed = resolve_seed(args.seed, log)
    set_threads(args.threads, log)
    model = Generator.load(args.model, device=args.device)
    if (args.cases is not None or args.controls is not None) and not model.conditions_on_phenotype:
        raise InputError(f"--cases/--controls need a phenotype-conditional model, and {args.model} was trained "
                         "without a phenotype; retrain with `genosynth train ... --phenotype-column phenotype`")
    if args.pheno_guidance is not None and args.cases is None and args.controls is None:
        raise InputError("--pheno-guidance guides the case/control condition: give --cases N --controls M too")
    if args.no_ancestry_spread:
        model.config.sampling.ancestry_spread = False
    if args.sampler is not None:
        model.config.sampling.sampler = args.sampler
        if args.sampler != "ddim" and args.eta is None:
            model.config.sampling.eta = 0.0  # a deterministic sampler asked for over a model's stochastic ddim steps
    if args.eta is not None:
        if not 0 <= args.eta <= 1:
            raise InputError(f"--eta must lie in [0, 1] (0 deterministic, 1 DDPM-like), got {args.eta}")
        if args.eta > 0 and model.config.sampling.sampler != "ddim":
            raise InputError(f"--eta {args.eta} needs the ddim sampler (the {model.config.sampling.sampler} sampler is "
                             "deterministic): add --sampler ddim, e.g. --sampler ddim --steps 20 --eta 1")
        model.config.sampling.eta = args.eta
    if args.precision is not None:
        model.config.sampling.precision = args.precision
    if args.temperature is not None:
        if not args.temperature > 0:
            raise InputError(f"--temperature must be > 0 (1 = the decoder's own probabilities), got {args.temperature}")
        model.config.sampling.temperature = args.temperature
    log.info(f"Model {args.model}: {len(model.variants)} SNPs, labels {', '.join(model.vocabulary)} "
             f"({'haplotypes' if model.phased else 'genotypes'}), decoder temperature "
             f"{model.config.sampling.temperature:g}")
    id_prefix = default_id_prefix(args.out, seed) if args.id_prefix is None else args.id_prefix
    log.record("id_prefix", id_prefix)
    stale = staging_path(args.out)
    if os.path.exists(stale):
        log.warn(f"removing {stale}, the staging file of an earlier run that was killed")  # write_synthetic does
    t0 = time.perf_counter()
    with _sigterm_as_interrupt():
        paths = write_synthetic(model, args.out, args.format, n=args.n, labels=args.labels, seed=seed,
                                steps=args.steps, guidance=args.guidance, argmax=args.argmax,
                                batch_size=args.batch_size, progress=not args.no_progress,
                                corr_guidance=args.corr_guidance, cases=args.cases, controls=args.controls,
                                pheno_guidance=args.pheno_guidance, id_prefix=id_prefix)
    elapsed = time.perf_counter() - t0
    n = sum(1 for _ in open(f"{args.out}.samples.tsv", encoding="utf-8")) - 1
    log.timing(f"Generated {n} people", elapsed)
    info = sample_record(args, model, seed=seed, n=n, paths=paths, id_prefix=id_prefix)
    info["provenance"] = provenance(command=log.argv, timings={"generate_s": round(elapsed, 1)})
    path = f"{args.out}.sample.json"
    with atomic_outputs([path]) as (tmp,):
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(info, fh, indent=2, default=str)
    for p in paths + [path]:
        log.info(f"Wrote {p}")
    return 0


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """Within the block, SIGTERM ends the run as Ctrl-C does: files being written (and the staging
    file) are removed, exit status 130."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def sample_record(args, model, *, seed: int, n: int, paths: list[str], id_prefix: str = "syn") -> dict:
    """``PREFIX.sample.json`` before its ``provenance``: the resolved sampling options, the seed and
    the model's own record (``model_seed``; ``versions`` are those that trained it)."""
    sc = model.config.sampling
    return {"model": args.model, "model_seed": model.meta["seed"], "seed": seed, "n": n, "format": args.format,
            "id_prefix": id_prefix,
            "labels": args.labels, "cases": args.cases, "controls": args.controls,
            "phenotype_column": model.phenotype_column,
            "guidance": args.guidance if args.guidance is not None else sc.guidance,
            "pheno_guidance": args.pheno_guidance if args.pheno_guidance is not None else sc.pheno_guidance,
            "steps": args.steps or sc.steps, "sampler": sc.sampler, "eta": sc.eta, "temperature": sc.temperature,
            "precision": sc.precision, "argmax": args.argmax,
            "corr_guidance": model.decoding(args.corr_guidance),
            "ancestry_spread": model.ancestry_spread is not None and sc.ancestry_spread,
            "versions": model.meta["versions"], "privacy": model.privacy, "files": paths}
