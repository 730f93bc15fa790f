"""Shared pieces of every command: the ``PREFIX.log``, input/output options, seeds, threads."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import time

from genosynth import seeds
from genosynth.errors import InputError
from genosynth.provenance import command_line, versions


class RunLog:
    """Writes ``PREFIX.log`` as plink does: command line, version, options, messages, timings.

    Messages also go to stdout. Only options and summary figures are logged, never genotypes,
    per-person values or un-noised private statistics.
    """

    def __init__(self, prefix: str | None, command: str, argv: list[str]):
        self.prefix = prefix
        self.path = f"{prefix}.log" if prefix else None
        self.command = command
        self.argv = argv
        self._fh = None
        self._t0 = time.perf_counter()

    def __enter__(self) -> "RunLog":
        if self.path:
            folder = os.path.dirname(self.path)
            if folder:
                os.makedirs(folder, exist_ok=True)
            self._fh = open(self.path, "w", encoding="utf-8")
        found = versions(libraries=False)
        self._write(f"genosynth {found['genosynth']} ({platform.python_implementation()} {found['python']})")
        self._write(f"Command: {command_line(self.argv)}")
        self._write(f"Start time: {_dt.datetime.now().isoformat(timespec='seconds')}")
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        elapsed = time.perf_counter() - self._t0
        if exc is not None:
            self._write(f"Error: {exc}")
        self._write(f"End time: {_dt.datetime.now().isoformat(timespec='seconds')} ({elapsed:.1f} s)")
        if self._fh:
            self._fh.close()
            self._fh = None
        return False

    def _write(self, line: str) -> None:
        if self._fh:
            self._fh.write(line + "\n")
            self._fh.flush()

    def info(self, message: str) -> None:
        """A message for the user and the log."""
        print(message)
        self._write(message)

    def warn(self, message: str) -> None:
        print(f"Warning: {message}", file=sys.stderr)
        self._write(f"Warning: {message}")

    def options(self, args: argparse.Namespace) -> None:
        """Record the resolved options."""
        shown = {k: v for k, v in sorted(vars(args).items()) if not k.startswith("_") and k != "command"}
        self._write("Options: " + json.dumps(shown, default=str, sort_keys=True))

    def record(self, key: str, value) -> None:
        """Record a resolved value (seed, device, timing) as ``key: value``."""
        self._write(f"{key}: {json.dumps(value, default=str) if not isinstance(value, str) else value}")

    def timing(self, label: str, seconds: float) -> None:
        self.info(f"{label}: {seconds:.2f} s")


# ---------------------------------------------------------------------------------- options
def add_input_arguments(parser: argparse.ArgumentParser, *, samples: bool = True) -> None:
    """``--bfile | --vcf | --hapt --legend`` and ``--samples``."""
    g = parser.add_argument_group("input (one of)")
    g.add_argument("--bfile", metavar="PREFIX", help="PLINK 1 PREFIX.bed/.bim/.fam")
    g.add_argument("--vcf", metavar="FILE", help="VCF, VCF.gz or BCF")
    g.add_argument("--hapt", metavar="FILE", help="Yelmen .hapt haplotype file (needs --legend)")
    g.add_argument("--legend", metavar="FILE", help="legend of a .hapt file (id position a0 a1)")
    if samples:
        g.add_argument("--samples", metavar="TSV",
                       help="sample table: sample, pop, super_pop[, sex, phenotype, ...] joined by sample id")
        g.add_argument("--allow-unknown-samples", action="store_true",
                       help="ignore sample-table rows whose id is not in the genotype file")


def add_common_arguments(parser: argparse.ArgumentParser, *, out_required: bool = True) -> None:
    """``--out``, ``--seed``, ``--threads``."""
    parser.add_argument("--out", metavar="PREFIX", required=out_required,
                        help="output prefix; PREFIX.log records the run")
    parser.add_argument("--seed", type=int, default=None,
                        help="random seed; drawn and recorded in PREFIX.log when omitted")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")


def load_input(args: argparse.Namespace, log: RunLog | None = None):
    """Read the cohort named by the input options."""
    from genosynth.io import read_cohort

    t0 = time.perf_counter()
    cohort = read_cohort(
        bfile=args.bfile, vcf=args.vcf, hapt=args.hapt, legend=args.legend,
        samples=getattr(args, "samples", None),
        allow_unknown_samples=getattr(args, "allow_unknown_samples", False),
        threads=getattr(args, "threads", None),
    )
    if log:
        kind = "haplotypes (phased)" if cohort.phased else "genotypes (unphased)"
        log.info(f"Loaded {cohort.n_samples} samples x {cohort.n_variants} variants, {kind} "
                 f"in {time.perf_counter() - t0:.2f} s")
        for key, count in cohort.meta.get("skipped", {}).items():
            if count:
                log.info(f"Skipped {count} {key} records")
    return cohort


def resolve_seed(seed: int | None, log: RunLog | None = None) -> int:
    """``None`` means draw a seed (:func:`genosynth.seeds.resolve_seed`); either way it is recorded in the log."""
    if seed is not None and seed < 0:
        raise InputError(f"--seed must be >= 0, got {seed}")
    seed = seeds.resolve_seed(seed)
    if log:
        log.record("seed", seed)
    return seed


def secret_seed(seed: int | None, log: RunLog, *, note: str = "") -> int:
    """The seed of a run under ``--epsilon``: drawn from the OS and written nowhere.

    Whoever knows the seed of a DP mechanism can redraw and remove its noise, so ``--seed`` is
    ignored (with a warning ending in ``note``) and the log records only that the seed is secret.
    """
    if seed is not None:
        log.warn("--seed is ignored with --epsilon: the seed of the DP noise is drawn from the OS and written "
                 f"nowhere (whoever knows it could redraw the noise){note}")
    log.record("seed", "secret (drawn from the OS; not recorded under --epsilon)")
    return seeds.noise_seed()


def set_threads(threads: int | None, log: RunLog | None = None) -> int:
    """Limit CPU threads of torch and BLAS; return the number used."""
    n = threads or os.cpu_count() or 1
    if n < 1:
        raise InputError(f"--threads must be >= 1, got {threads}")
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    if log:
        log.record("threads", n)
    return n


def read_id_list(path: str) -> list[str]:
    """Sample ids from a ``--keep/--remove`` file: one per line, or FID IID columns (IID used)."""
    if not os.path.exists(path):
        raise InputError(f"{path}: file not found; give a file with one sample id per line")
    ids = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            ids.append(parts[1] if len(parts) >= 2 else parts[0])
    return ids
