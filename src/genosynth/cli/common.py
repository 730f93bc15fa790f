"""Shared pieces of every command: the ``PREFIX.log``, input/output options, seeds, threads."""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import platform
import sys
import time

from genosynth import seeds
from genosynth.errors import GenosynthError, InputError
from genosynth.provenance import command_line, versions


class RunLog:
    """Writes ``PREFIX.log`` as plink does: command line, version, options, messages, timings.

    Messages also go to stdout. Only options and summary figures are logged, never genotypes,
    per-person values or un-noised private statistics.
    """

    def __init__(self, prefix: str | None, command: str, argv: list[str], *, append: bool = False):
        self.prefix = prefix
        self.path = f"{prefix}.log" if prefix else None
        self.command = command
        self.argv = argv
        self.append = append  # a resumed run adds to the log of the run it continues
        self._fh = None
        self._t0 = time.perf_counter()

    def __enter__(self) -> "RunLog":
        if self.path:
            try:
                folder = os.path.dirname(self.path)
                if folder:
                    os.makedirs(folder, exist_ok=True)
                self._fh = open(self.path, "a" if self.append else "w", encoding="utf-8")
            except OSError as exc:
                raise InputError(f"cannot write the log {self.path} ({exc.strerror}); give --out a prefix in a "
                                 "folder you can write to") from None
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
    g.add_argument("--bfile", metavar="PREFIX", help="PLINK 1 PREFIX.bed/.bim/.fam (one per chromosome: A,B,...)")
    g.add_argument("--vcf", metavar="FILE", help="VCF, VCF.gz or BCF (one per chromosome: chr1.vcf.gz,chr2.vcf.gz)")
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
    parser.add_argument("--threads", type=positive_int, default=None, help="CPU threads (default: all cores)")


def positive_int(text: str) -> int:
    """argparse type of counts such as ``--threads``: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}; give a whole number >= 1") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


@contextlib.contextmanager
def reading(path: str, flag: str = ""):
    """Name ``flag path`` in an error raised while reading it (text that is not UTF-8 included)."""
    try:
        yield
    except UnicodeDecodeError as exc:
        bad = exc.object[exc.start:exc.end] if isinstance(exc.object, bytes) else b""
        where = f"{flag} {path}" if flag else path
        raise InputError(f"{where}: not UTF-8 text (byte {bad!r} in a sample or variant id or a table cell); "
                         "re-encode it as UTF-8 (e.g. iconv -f latin1 -t utf-8), or rename the ids "
                         "(bcftools reheader --samples for a VCF)") from None
    except GenosynthError as exc:
        if path in str(exc):
            raise
        raise type(exc)(f"{path}: {exc}") from None


def load_input(args: argparse.Namespace, log: RunLog | None = None):
    """Read the cohort named by the input options; an error names the file it came from."""
    from genosynth.io import read_cohort

    t0 = time.perf_counter()
    given = [(flag, value) for flag, value in (("--bfile", args.bfile), ("--vcf", args.vcf), ("--hapt", args.hapt))
             if value]
    flag, path = given[0] if len(given) == 1 else ("", "")
    with reading(path, flag):
        cohort = read_cohort(bfile=args.bfile, vcf=args.vcf, hapt=args.hapt, legend=args.legend,
                             threads=getattr(args, "threads", None), progress=not getattr(args, "no_progress", False))
    samples = getattr(args, "samples", None)
    if samples:
        from genosynth.io.samples import attach_samples, read_sample_table

        with reading(samples, "--samples"):
            table = read_sample_table(samples)
        cohort = attach_samples(cohort, table, allow_unknown=getattr(args, "allow_unknown_samples", False))
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
    if threads is not None and threads < 1:
        raise InputError(f"--threads must be >= 1, got {threads}")
    n = threads or os.cpu_count() or 1
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
    with reading(path, "id list"), open(path, encoding="utf-8") as fh:
        for line in fh:
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            ids.append(parts[1] if len(parts) >= 2 else parts[0])
    return ids


# ---------------------------------------------------------------------------------- output paths
#: The files of each genotype ``--format`` after ``PREFIX``.
FORMAT_SUFFIXES = {"bed": (".bed", ".bim", ".fam"), "vcf": (".vcf.gz",), "hapt": (".hapt", ".legend"),
                   "pgen": (".pgen", ".pvar", ".psam")}

#: What each command may write after ``PREFIX`` besides ``PREFIX.log`` ("format": the files of ``--format``).
COMMAND_OUTPUTS = {
    "info": (".info.json",),
    "convert": ("format", ".samples.tsv"),
    "simulate": ("format", ".samples.tsv", ".simulation.json", ".truth.json"),
    "train": (".pt", ".train.json", ".pt.private-resume"),
    "sample": ("format", ".samples.tsv", ".privacy.json", ".sample.json", ".staging.tmp"),
    "select": (".snplist", ".select.json", ".gwas.tsv"),
    "evaluate": (".json", ".html"),
}

HAPT_SUFFIXES = (".hapt.gz", ".hapt")
VCF_SUFFIXES = (".vcf.gz", ".vcf.bgz", ".vcf", ".bcf")
PLINK_SUFFIXES = (".bed", ".bim", ".fam")
#: Options naming a cohort: a file, or a PLINK prefix standing for its .bed/.bim/.fam.
_COHORT_OPTIONS = ("bfile", "vcf", "hapt", "real", "holdout", "synthetic", "public_reference",
                   "ld_bfile", "ld_vcf")
#: Options naming one file each (repeatable ones hold lists, possibly of NAME=PATH).
_FILE_OPTIONS = ("legend", "samples", "synthetic_samples", "keep", "remove", "extract", "exclude", "config", "model")


def strip_suffix(path: str, suffixes) -> str | None:
    """``path`` without the first of ``suffixes`` it ends with (case-insensitive), or None."""
    low = path.lower()
    for suf in suffixes:
        if low.endswith(suf):
            return path[: -len(suf)]
    return None


def cohort_files(path: str) -> list[str]:
    """The files behind an input path (a PLINK prefix is three files; a .hapt has its legend)."""
    stem = strip_suffix(path, PLINK_SUFFIXES)
    if stem is not None or (not os.path.exists(path) and os.path.exists(path + ".bed")):
        stem = stem if stem is not None else path
        return [f"{stem}{ext}" for ext in PLINK_SUFFIXES]
    files = [path]
    if strip_suffix(path, HAPT_SUFFIXES) is not None and os.path.exists(strip_suffix(path, HAPT_SUFFIXES) + ".legend"):
        files.append(strip_suffix(path, HAPT_SUFFIXES) + ".legend")
    return files


def input_files(args: argparse.Namespace) -> list[tuple[str, str]]:
    """``(option, file)`` for every existing file the command's options read."""
    found = []
    for key in _COHORT_OPTIONS + _FILE_OPTIONS:
        values = getattr(args, key, None)
        for value in values if isinstance(values, list) else [values]:
            if not isinstance(value, str) or not value:
                continue
            paths = {value, value.partition("=")[2]} - {""}  # NAME=PATH of --synthetic
            for path in paths:
                for file in cohort_files(path) if key in _COHORT_OPTIONS else [path]:
                    if os.path.isfile(file):
                        found.append((f"--{key.replace('_', '-')}", file))
    return found


def output_files(args: argparse.Namespace, prefix: str) -> list[str]:
    """``PREFIX.log`` and every file the command may write under ``--out``."""
    outputs = [f"{prefix}.log"]
    out = getattr(args, "out", None)
    if out:
        for suffix in COMMAND_OUTPUTS.get(args.command, ()):
            fmt = getattr(args, "format", None)
            suffixes = FORMAT_SUFFIXES.get(fmt, (f".{fmt}",)) if suffix == "format" else (suffix,)
            outputs += [f"{out}{s}" for s in suffixes]
    return outputs


def _same_file(a: str, b: str) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    with contextlib.suppress(OSError):
        return os.path.samefile(a, b)  # hard links
    return False


def check_outputs(args: argparse.Namespace, prefix: str | None) -> None:
    """Refuse, before anything is written, an ``--out`` that cannot be written or would replace an input.

    ``prefix`` is where ``PREFIX.log`` goes. Every input file of the command (symbolic links and
    relative paths resolved) is compared with every file the command may write, ``PREFIX.log``
    included, so no input is ever truncated or replaced.
    """
    if not prefix:
        return
    out = getattr(args, "out", None) or prefix
    if out == prefix and out.endswith(("/", os.sep)):
        raise InputError(f"--out {out} ends with a folder separator; give a file prefix such as "
                         f"{os.path.join(out, 'result')}")
    folder = os.path.dirname(os.path.abspath(f"{prefix}.log"))
    while not os.path.lexists(folder):
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        raise InputError(f"--out {out}: {folder} is a file, not a folder; give a prefix in a folder, e.g. --out "
                         f"{os.path.join(os.path.dirname(folder), 'result')}")
    inputs = input_files(args)
    for output in output_files(args, prefix):
        if os.path.isdir(output):
            raise InputError(f"--out {out}: {output} is a folder; choose another --out prefix")
        for flag, path in inputs:
            if _same_file(output, path):
                raise InputError(f"--out {out} would overwrite the input {path} ({flag}) with {output}; "
                                 "choose another --out prefix")
