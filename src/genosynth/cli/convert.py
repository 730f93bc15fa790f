"""``genosynth convert``: any input to PLINK bed, VCF.gz or .hapt, with sample and MAF filters.

Writes the genotype files, ``PREFIX.samples.tsv`` (the sample table) and ``PREFIX.log``. A bad
input stops before any output file is written (``PREFIX.log`` records the error).
"""

from __future__ import annotations

import time
import warnings

import numpy as np

from genosynth.cli.common import add_input_arguments, load_input, positive_int, read_id_list, reading
from genosynth.errors import InputError
from genosynth.io import FORMATS, write_cohort
from genosynth.io.order import is_genomic_order

HELP = "convert a cohort between PLINK bed, VCF.gz and .hapt, optionally filtering samples and MAF"


def add_arguments(parser) -> None:
    add_input_arguments(parser)
    parser.add_argument("--format", required=True, choices=FORMATS,
                        help="output format: bed (PREFIX.bed/.bim/.fam), vcf (PREFIX.vcf.gz), hapt (PREFIX.hapt/.legend)")
    parser.add_argument("--keep", metavar="FILE", help="keep only the sample ids listed (one per line, or FID IID)")
    parser.add_argument("--remove", metavar="FILE", help="drop the sample ids listed (one per line, or FID IID)")
    parser.add_argument("--extract", metavar="FILE",
                        help="keep only the variant ids listed (one per line, first column; plink --extract, "
                             "or a genosynth select PREFIX.snplist)")
    parser.add_argument("--exclude", metavar="FILE", help="drop the variant ids listed (plink --exclude)")
    parser.add_argument("--maf", type=float, default=None, metavar="FREQ",
                        help="keep variants with minor allele frequency >= FREQ (after sample filters)")
    parser.add_argument("--tag-column", metavar="COLUMN", default=None,
                        help="sample column written as the .fam FID (bed) or the tag (hapt), e.g. super_pop")
    parser.add_argument("--out", metavar="PREFIX", required=True, help="output prefix; PREFIX.log records the run")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="CPU threads for reading (default: all cores)")


def _listed_mask(ids: np.ndarray, *, include, exclude, flags: tuple[str, str],
                 what: str) -> tuple[np.ndarray, list[str]]:
    """Boolean mask of ``ids`` kept by an include list and an exclude list (either may be None),
    and a note per list naming how many of its ids are not in ``ids``."""
    mask = np.ones(len(ids), dtype=bool)
    notes = []
    for name, listed, want in ((flags[0], include, True), (flags[1], exclude, False)):
        if listed is None:
            continue
        hit = np.isin(ids, listed)
        absent = len(set(listed) - set(ids))
        if absent:
            notes.append(f"{name}: {absent} of {len(set(listed))} listed {what} are not in the input")
        mask &= hit if want else ~hit
    return mask, notes


def _subset_listed(cohort, axis: str, ids, *, include, exclude, flags: tuple[str, str], what: str,
                   none_left: str, log=None):
    """``cohort`` restricted along ``axis`` ("samples" or "variants") to the listed ``ids``.

    When nothing is left the notes on unknown ids go into the error (one line), else to the log.
    """
    mask, notes = _listed_mask(ids.astype(str).to_numpy(), include=include, exclude=exclude, flags=flags,
                               what=what)
    if not mask.any():
        raise InputError("; ".join([none_left, *notes]))
    for note in notes:
        if log:
            log.warn(note)
    return cohort if mask.all() else cohort.subset(**{axis: mask})


def filter_samples(cohort, *, keep: list[str] | None = None, remove: list[str] | None = None, log=None):
    """Restrict ``cohort`` to the ``keep`` ids and drop the ``remove`` ids (plink --keep/--remove)."""
    return _subset_listed(cohort, "samples", cohort.samples["sample"], include=keep, exclude=remove,
                          flags=("--keep", "--remove"), what="ids", log=log,
                          none_left="no samples left after --keep/--remove; check that the files list ids "
                                    "of this input (one IID per line, or FID IID)")


def filter_variants(cohort, *, extract: list[str] | None = None, exclude: list[str] | None = None, log=None):
    """Keep the ``extract`` variant ids and drop the ``exclude`` ids (plink --extract/--exclude).

    The cohort's variant order is kept, so two files restricted to the same list line up.
    """
    return _subset_listed(cohort, "variants", cohort.variants["id"], include=extract, exclude=exclude,
                          flags=("--extract", "--exclude"), what="variant ids", log=log,
                          none_left="no variants left after --extract/--exclude; check that the files list "
                                    "variant ids of this input (the .bim column 2 / VCF ID / legend id), one "
                                    "per line")


def read_variant_list(path: str) -> list[str]:
    """Variant ids from an --extract/--exclude file: first whitespace-separated column, '#' lines skipped."""
    import os

    if not os.path.exists(path):
        raise InputError(f"{path}: file not found; give a file with one variant id per line")
    with reading(path, "variant list"), open(path, encoding="utf-8") as fh:
        return [line.split()[0] for line in fh if line.strip() and not line.startswith("#")]


def filter_maf(cohort, maf: float):
    """Keep variants whose minor allele frequency (over called alleles) is >= ``maf``."""
    if not 0 <= maf <= 0.5:
        raise InputError(f"--maf must lie in [0, 0.5], got {maf}")
    af = cohort.allele_frequencies()  # (V,), NaN when nothing is called
    keep = np.nan_to_num(np.minimum(af, 1 - af), nan=-1.0) >= maf
    if not keep.any():
        raise InputError(f"no variants have MAF >= {maf}; lower --maf")
    return cohort if keep.all() else cohort.subset(variants=keep)


def run(args, log) -> int:
    from genosynth.io.samples import write_sample_table

    if args.threads is not None:
        log.record("threads", args.threads)
    keep = read_id_list(args.keep) if args.keep else None
    remove = read_id_list(args.remove) if args.remove else None
    extract = read_variant_list(args.extract) if args.extract else None
    exclude = read_variant_list(args.exclude) if args.exclude else None
    with warnings.catch_warnings():  # the missing-row warning goes to the log below instead
        warnings.simplefilter("ignore", UserWarning)
        cohort = load_input(args, log)
    if cohort.meta.get("samples_without_table_row"):
        log.warn(f"{cohort.meta['samples_without_table_row']} samples have no row in --samples; they keep empty labels")
    n_smp, n_var = cohort.n_samples, cohort.n_variants
    cohort = filter_samples(cohort, keep=keep, remove=remove, log=log)
    if cohort.n_samples != n_smp:
        log.info(f"--keep/--remove: {cohort.n_samples} of {n_smp} samples remain")
    if extract is not None or exclude is not None:
        cohort = filter_variants(cohort, extract=extract, exclude=exclude, log=log)
        log.info(f"--extract/--exclude: {cohort.n_variants} of {n_var} variants remain")
    if args.maf is not None:
        cohort = filter_maf(cohort, args.maf)
        log.info(f"--maf {args.maf}: {cohort.n_variants} of {n_var} variants remain")
    if args.format in ("bed", "vcf") and not is_genomic_order(cohort.variants):
        log.info("Variants are written in genomic order (chromosome, position), as plink2 and bcftools need")
    if args.format == "bed" and cohort.phased:
        log.info("A .bed holds genotypes: phase is dropped")
    if args.tag_column:
        cohort.labels(args.tag_column)  # fails early, naming the columns, when it does not exist
    t0 = time.perf_counter()
    paths = write_cohort(cohort, args.out, args.format, tag_column=args.tag_column)
    paths += write_sample_table(cohort, f"{args.out}.samples.tsv")
    log.info(f"Wrote {', '.join(paths)} ({cohort.n_samples} samples x {cohort.n_variants} variants) "
             f"in {time.perf_counter() - t0:.2f} s")
    return 0
