"""``genosynth train``: train the generator (VAE + latent DiT) on a cohort; write ``PREFIX.pt``.

The checkpoint holds the resolved configuration, seed, software versions, variant table, label
vocabulary and training mix, training curves and model weights; never genotypes or per-person
latents. It is rewritten atomically every ``--checkpoint-every`` epochs, so an interrupted run
continues with ``--resume`` and ends exactly where an uninterrupted one would. Under
``--epsilon`` the resumable state (noise generator states included) goes to a private file beside
the checkpoint instead, deleted at the end (:func:`run_private`).

Under ``torchrun --nproc_per_node N -m genosynth.cli train ...`` (or ``python -m
torch.distributed.run ...``) the plain run trains as DistributedDataParallel over N processes
(:mod:`genosynth.training.distributed`, docs/scaling.md); rank 0 alone writes ``PREFIX.pt``,
``PREFIX.log`` and ``PREFIX.train.json``, and the other ranks print nothing.
"""

from __future__ import annotations

import json
import os
import time

from genosynth.cli.common import (add_common_arguments, add_input_arguments, load_input, reading, resolve_seed,
                                   secret_seed, set_threads)
from genosynth.errors import InputError
from genosynth.io.atomic import atomic_outputs
from genosynth.models.config import SIZES
from genosynth.models.ld_prior import CHOICES

HELP = "train a synthetic-cohort generator (VAE + diffusion transformer) on a cohort; writes PREFIX.pt"



def add_arguments(parser) -> None:
    add_input_arguments(parser)
    add_common_arguments(parser)
    g = parser.add_argument_group("model")
    g.add_argument("--label-column", default="super_pop", metavar="COL",
                   help="sample-table column the generator conditions on (default super_pop)")
    g.add_argument("--phenotype-column", default=None, metavar="COL",
                   help="also condition on this binary trait column (1 case, 0 control; missing = unconditional, "
                        "refused under --epsilon), so that `genosynth sample --cases N --controls M` works")
    g.add_argument("--pheno", action="store_true",
                   help="the same as --phenotype-column phenotype (.fam column 6 or the samples table)")
    g.add_argument("--mode", choices=("auto", "haplotype", "genotype"), default="auto",
                   help="model haplotypes (phased input) or genotype counts (default auto: haplotypes when phased)")
    g.add_argument("--size", choices=SIZES, default="auto",
                   help="'auto' (default: up to 10,000 SNPs 'dense' for a dense region and 'default' for SNPs far "
                        "apart, 'chromosome' above), 'default', 'dense' (the default plus a per-token DiT MLP that keeps "
                        "more LD), 'chromosome' (cost linear in the SNP count, docs/generator.md) or 'tiny' "
                        "(seconds; for smoke tests)")
    g.add_argument("--config", metavar="JSON",
                   help='JSON file or string overriding config fields, e.g. \'{"vae": {"latent_channels": 8}}\'')
    g.add_argument("--vae-epochs", type=int, default=None, metavar="N", help="VAE epochs (default from config)")
    g.add_argument("--dit-epochs", type=int, default=None, metavar="N", help="DiT epochs (default from config)")
    g.add_argument("--corr-guidance", choices=CHOICES, default=None,
                   help="default decoding of the model (default auto: copula on sparse panels, latent+copula on "
                        "dense ones). Without --epsilon any value but "
                        "none stores the un-noised banded per-label LD prior in PREFIX.pt; with --epsilon only "
                        "its DP release is stored")
    t = parser.add_argument_group("run")
    t.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu",
                   help="cpu (default; bit-reproducible), cuda, or auto (cuda when present)")
    t.add_argument("--precision", choices=("fp32", "bf16"), default=None,
                   help="forward passes of plain training in float32 or under bfloat16 autocast (bf16: meant for GPUs "
                        "with bfloat16 tensor cores; not bit-identical to fp32; default from config: fp32)")
    t.add_argument("--resume", action="store_true", help="continue an interrupted run from PREFIX.pt")
    t.add_argument("--checkpoint-every", type=int, default=None, metavar="EPOCHS",
                   help="rewrite PREFIX.pt every EPOCHS epochs (default from config)")
    t.add_argument("--no-progress", action="store_true", help="no progress bars")
    d = parser.add_argument_group("differential privacy (docs/privacy.md)")
    d.add_argument("--epsilon", type=float, default=None, metavar="E",
                   help="train with (E, --delta)-DP for the whole run (every private input, one accountant); "
                        "an impossible budget is refused before training")
    d.add_argument("--delta", type=float, default=None, metavar="D",
                   help="delta of the guarantee, in (0, 1/n) (default 1e-5; needs --epsilon)")
    d.add_argument("--public-reference", metavar="FILE",
                   help="public cohort (VCF, or PLINK .bed prefix) with the same variants to train the VAE on "
                        "without spending budget")
    d.add_argument("--from-model", metavar="PUBLIC.pt",
                   help="adapt this released public model (a `genosynth train` checkpoint of a public panel) to the "
                        "input under --epsilon: its VAE, DiT start and LD band are public and cost no budget; the "
                        "input is aligned to its SNPs by position and alleles (docs/privacy.md, public model)")
    d.add_argument("--dp-batch-size", type=int, default=256, metavar="B",
                   help="expected Poisson batch size (people) of DP-SGD (default 256)")
    d.add_argument("--max-grad-norm", type=float, default=1.0, metavar="C",
                   help="per-person gradient clip of DP-SGD (default 1.0)")
    d.add_argument("--latent-clip", type=float, default=4.0, metavar="C",
                   help="L2 clip of each person's latent before the stage-1 release (default 4)")
    d.add_argument("--dp-split", type=int, default=None, metavar="S",
                   help="diffusion stage split: t >= S trained from the one stage-1 release (default 0.99 T)")
    d.add_argument("--corr-window", type=int, default=32, metavar="W",
                   help="band of the DP correlation prior in SNPs (0 = none; default 32)")
    d.add_argument("--frequency-denoiser", choices=("low_rank", "shrink"), default="low_rank",
                   help="post-processing of the per-label allele-frequency release (free of budget): low_rank "
                        "(default; suits fine labels such as --label-column pop) or shrink (per label)")
    d.add_argument("--frequency-clip", type=float, default=None, metavar="C",
                   help="clip each person's centred dosages to C sqrt(V) before the frequency release, in (0, 1] "
                        "(less noise, some bias towards the centre; default 1 = no clipping, or 0.7 with "
                        "--frequency-centre public)")
    d.add_argument("--frequency-centre", choices=("one", "public"), default="one",
                   help="with --from-model: centre each person's dosages on the public model's frequencies of their "
                        "label before the frequency release (public: ~30 %% less noise, AF r +0.001 over 8 splits; "
                        "benchmarks/RESULTS.md, issue 19); default one (frequency 1/2)")
    d.add_argument("--ancestry-dims", type=int, default=4, metavar="K",
                   help="directions of the DP within-label ancestry spread, so synthetic people of a label differ "
                        "in ancestry as real ones do (at most labels - 1; 0 = not released; default 4)")


def build_config(args, *, variants=None):
    """The :class:`~genosynth.models.config.GeneratorConfig` named by the options.

    ``--size auto`` is resolved against the cohort's ``variants`` (SNP count and spacing; before the
    cohort is read: the default).
    """
    import os

    from genosynth.models.config import config_for, config_for_variants

    cfg = config_for(args.size, 0) if variants is None else config_for_variants(args.size, variants)
    pheno = args.phenotype_column or ("phenotype" if args.pheno else None)
    if args.phenotype_column and args.pheno and args.phenotype_column != "phenotype":
        raise InputError(f"--pheno means --phenotype-column phenotype, but --phenotype-column {args.phenotype_column} "
                         "was given too; keep one")
    cfg = cfg.replace(label_column=args.label_column, mode=args.mode, phenotype_column=pheno)
    if args.config:
        text = open(args.config, encoding="utf-8").read() if os.path.exists(args.config) else args.config
        try:
            overrides = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"--config is neither a file nor valid JSON ({exc}); give e.g. "
                             '\'{"training": {"vae_epochs": 20}}\'') from None
        check_overrides(cfg, overrides)
        try:
            cfg = cfg.replace(**overrides)
        except TypeError as exc:
            raise InputError(f"--config has an unknown field ({exc}); see docs/generator.md for the fields") from None
    training = {}
    for flag, field in (("vae_epochs", "vae_epochs"), ("dit_epochs", "dit_epochs"),
                        ("checkpoint_every", "checkpoint_every")):
        value = getattr(args, flag)
        if value is not None:
            if value < 1:
                raise InputError(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
            training[field] = value
    if getattr(args, "precision", None) is not None:
        training["precision"] = args.precision
    if getattr(args, "corr_guidance", None) is not None:
        cfg = cfg.replace(sampling={"corr_guidance": args.corr_guidance})
    return cfg.replace(training=training) if training else cfg


def check_overrides(cfg, overrides) -> None:
    """Refuse ``--config`` fields the configuration does not have, or values of the wrong kind."""
    import dataclasses

    def refuse(what: str):
        raise InputError(f"--config {what}; see docs/generator.md for the fields, e.g. "
                         '\'{"training": {"vae_epochs": 20}}\'')

    if not isinstance(overrides, dict):
        refuse(f"must be a JSON object of sections, got {type(overrides).__name__}")
    for key, value in overrides.items():
        if key not in {f.name for f in dataclasses.fields(cfg)}:
            refuse(f"has an unknown field {key!r}")
        current = getattr(cfg, key)
        if not dataclasses.is_dataclass(current):
            if current is not None and not _same_kind(value, current):
                refuse(f"field {key!r} must be like {current!r}, got {value!r}")
            continue
        if not isinstance(value, dict):
            refuse(f"section {key!r} must be a JSON object of its fields, got {value!r}")
        known = {f.name for f in dataclasses.fields(current)}
        for name, v in value.items():
            if name not in known:
                refuse(f"section {key!r} has no field {name!r} (it has {', '.join(sorted(known))})")
            default = getattr(current, name)
            if default is not None and v is not None and not _same_kind(v, default):
                refuse(f"field {key}.{name} must be like {default!r}, got {v!r}")


def _same_kind(value, default) -> bool:
    """Whether a JSON ``value`` may replace ``default`` (an int is a float; a bool is not a number)."""
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


def log_prefix(args) -> str | None:
    """Where ``PREFIX.log`` goes: ``--out``, but nowhere on torchrun ranks other than 0 (rank 0 keeps the log)."""
    from genosynth.training.distributed import env_rank

    return args.out if env_rank() == 0 else None


class QuietLog:
    """The log of a torchrun process other than rank 0: prints and writes nothing (rank 0 keeps ``PREFIX.log``)."""

    def info(self, message: str) -> None:
        pass

    def warn(self, message: str) -> None:
        pass

    def record(self, key: str, value) -> None:
        pass

    def timing(self, label: str, seconds: float) -> None:
        pass


def run(args, log) -> int:
    from genosynth.training import distributed

    if args.epsilon is None and (args.delta is not None or args.public_reference or getattr(args, "from_model", None)):
        raise InputError("--delta, --public-reference and --from-model belong to a DP run; add --epsilon E "
                         "(without it, train on the public panel and the private cohort as usual)")
    if args.epsilon is not None:
        if distributed.launched():
            raise InputError("--epsilon cannot run under torchrun (DP-SGD's Poisson sampling and the privacy "
                             "accountant assume one process); run the DP training as one process, without torchrun")
        return run_private(args, log)
    if not distributed.launched():
        return run_plain(args, log)
    dev = distributed.init_from_env(args.device)  # gloo on the CPU, nccl on CUDA
    try:
        status = run_plain(args, log if distributed.is_main() else QuietLog(), device=dev)
    except BaseException:
        distributed.shutdown(wait=False)  # torchrun stops the other ranks
        raise
    distributed.shutdown()
    return status


def run_plain(args, log, *, device=None) -> int:
    """The non-private run: one process, or one rank of a torchrun group (``device`` its device)."""
    from genosynth.training.distributed import agree, is_main, launched, local_processes
    from genosynth.training.plain import train_generator

    if args.resume:
        from genosynth.training.private import resume_path

        if os.path.exists(resume_path(f"{args.out}.pt")):
            raise InputError(f"{args.out} is an interrupted DP run ({resume_path(args.out + '.pt')} exists); resume it "
                             "with the same options including --epsilon/--delta")
    cfg = build_config(args)
    checkpoint = f"{args.out}.pt"
    if args.resume and args.seed is None:  # the run continues with the seed it was started with
        from genosynth.training.plain import resume_seed

        seed = resume_seed(checkpoint)
        log.record("seed", seed)
        log.info(f"--resume: seed {seed} read from {checkpoint}")
    else:
        seed = agree(resolve_seed(args.seed, log))  # under torchrun: rank 0's (the one its log records)
    threads = args.threads
    if threads is None and launched():  # share the cores of a machine among its processes
        threads = max(1, (os.cpu_count() or 1) // local_processes())
    set_threads(threads, log)
    cohort = load_input(args, log)
    if args.size == "auto":  # resolved by the SNP count and spacing, now that they are known
        cfg = build_config(args, variants=cohort.variants)
    log.record("device", args.device if device is None else str(device))
    if launched():
        log.record("processes", int(os.environ["WORLD_SIZE"]))
    log.record("config", cfg.to_dict())
    t0 = time.perf_counter()
    model = train_generator(cohort, config=cfg, seed=seed, device=args.device if device is None else device,
                            checkpoint=checkpoint, resume=args.resume, progress=not args.no_progress, log=log.info)
    log.timing("Training time", time.perf_counter() - t0)
    if not is_main():
        return 0
    summary = {"checkpoint": checkpoint, "seed": seed, "labels": model.vocabulary, "label_mix": model.label_mix,
               "metrics": model.meta["metrics"], "config": cfg.to_dict(), "versions": model.meta["versions"],
               "phenotype_column": model.phenotype_column, "case_fraction": model.case_fraction}
    path = _write_summary(f"{args.out}.train.json", summary)
    log.info(f"Wrote {checkpoint} and {path}")
    return 0


def _write_summary(path: str, summary: dict) -> str:
    """Write ``PREFIX.train.json`` atomically; return its path."""
    with atomic_outputs([path]) as (tmp,):
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(summary, fh, indent=2, default=str)
    return path


def check_budget(epsilon: float, delta: float, *, n_samples: int | None = None) -> None:
    """Refuse an impossible ``--epsilon``/``--delta`` (delta below 1/n once ``n_samples`` is known)."""
    import math

    from genosynth.privacy.accountant import check_delta

    if not (math.isfinite(epsilon) and epsilon > 0):
        raise InputError(f"--epsilon {epsilon:g} is not a positive finite number; pass e.g. --epsilon 8, or leave "
                         "--epsilon out for a non-private run")
    check_delta(delta, n_samples=n_samples)  # its message names --delta


def _align_to_public(path: str, cohort, log):
    """``--from-model``: the public model's payload and the input aligned to its SNPs (counts logged)."""
    from genosynth.models.checkpoint import variants_from_dict
    from genosynth.training.transfer import align_to_model, load_public_model, public_frequencies

    payload = load_public_model(path)
    aligned, report = align_to_model(cohort, variants_from_dict(payload["variants"]), log=log.info,
                                     fill=lambda: public_frequencies(payload))  # public model only
    log.record("alignment", report)  # counts of SNPs only
    return payload, aligned


def run_private(args, log) -> int:
    """``--epsilon``: :func:`genosynth.training.private.train_private`.

    The noise seed is drawn from the OS (:func:`genosynth.seeds.noise_seed`) and written nowhere
    (whoever knows it can recompute and remove the DP noise); ``--seed`` is ignored with a warning.
    The run state goes to the private file ``PREFIX.pt.private-resume`` every
    ``--checkpoint-every`` epochs, so ``--resume`` continues an interrupted run exactly (restored
    noise generators and accountant); the file is deleted when ``PREFIX.pt`` has been written.
    """
    from genosynth.io import read_cohort
    from genosynth.training.dp_plan import PrivacyConfig
    from genosynth.training.private import train_private

    cfg = build_config(args)
    if args.frequency_centre == "public" and not args.from_model:
        raise InputError("--frequency-centre public centres the release on a public model's frequencies: give "
                         "--from-model PUBLIC.pt too, or drop --frequency-centre")
    if cfg.training.precision != "fp32":
        raise InputError(f"--precision {cfg.training.precision} is for plain training; DP-SGD runs in fp32 "
                         "(drop --precision or --epsilon)")
    privacy = PrivacyConfig(epsilon=args.epsilon, delta=1e-5 if args.delta is None else args.delta,
                            batch_size=args.dp_batch_size, max_grad_norm=args.max_grad_norm,
                            latent_clip=args.latent_clip, timesteps_split=args.dp_split,
                            correlation_window=args.corr_window, frequency_denoiser=args.frequency_denoiser,
                            frequency_clip=args.frequency_clip, frequency_centre=args.frequency_centre,
                            ancestry_dims=args.ancestry_dims)
    check_budget(args.epsilon, privacy.delta)  # before the cohort is read: these errors come first
    secret_seed(args.seed, log, note="; an interrupted run still resumes exactly with --resume")  # warn, record "secret"
    set_threads(args.threads, log)
    cohort = load_input(args, log)
    check_budget(args.epsilon, privacy.delta, n_samples=cohort.n_samples)  # before --dp-batch-size is checked
    public = None
    if args.public_reference:
        ref = args.public_reference
        with reading(ref, "--public-reference"):
            public = read_cohort(vcf=ref) if ref.endswith((".vcf", ".vcf.gz", ".bcf")) else \
                read_cohort(bfile=ref[:-4] if ref.endswith(".bed") else ref)
    public_model = None
    if getattr(args, "from_model", None):
        public_model, cohort = _align_to_public(args.from_model, cohort, log)
    checkpoint = f"{args.out}.pt"
    log.record("config", cfg.to_dict())
    log.record("privacy_config", privacy.to_dict())
    t0 = time.perf_counter()
    model = train_private(cohort, config=cfg, privacy=privacy, public_reference=public,  # no seed: noise_seed draws it
                          public_model=public_model,
                          checkpoint=checkpoint, resume=args.resume, log=log.info,
                          progress=not args.no_progress)
    log.timing("Training time", time.perf_counter() - t0)
    log.record("privacy", model.privacy)
    summary = {"checkpoint": checkpoint, "seed": None, "labels": model.vocabulary, "label_mix": model.label_mix,
               "phenotype_column": model.phenotype_column, "case_fraction": model.case_fraction,  # DP releases
               "privacy": model.privacy, "privacy_config": privacy.to_dict(), "config": cfg.to_dict(),
               "versions": model.meta["versions"]}
    path = _write_summary(f"{args.out}.train.json", summary)
    log.info(f"Wrote {checkpoint} and {path} (epsilon={model.privacy['epsilon']:.4g}, delta={model.privacy['delta']:g})")
    return 0
