"""Reading and writing cohorts: PLINK 1 bed/bim/fam, VCF/VCF.gz/BCF, Yelmen .hapt + legend, and
writing PLINK 2 pgen/pvar/psam.

Use :func:`read_cohort` and :func:`write_cohort`; the per-format modules hold the details.
"""

from __future__ import annotations

from genosynth.cohort import Cohort
from genosynth.errors import InputError

FORMATS = ("bed", "vcf", "hapt", "pgen")


def read_cohort(*, bfile=None, vcf=None, hapt=None, legend=None, samples=None,
                allow_unknown_samples=False, threads=None, progress=False) -> Cohort:
    """Read one cohort from exactly one of ``bfile`` (PLINK prefix), ``vcf``, ``hapt`` + ``legend``.

    ``samples`` is an optional sample table (TSV) joined by sample id. ``threads`` limits the
    bed-reader / htslib threads (default: bed-reader uses all cores, htslib 2). ``progress``
    shows a bar of VCF records read when reading takes more than a few seconds.
    """
    given = [name for name, value in (("--bfile", bfile), ("--vcf", vcf), ("--hapt", hapt)) if value]
    if len(given) != 1:
        raise InputError(
            f"give exactly one input: --bfile PREFIX, --vcf FILE or --hapt FILE --legend FILE (got {given or 'none'})"
        )
    if bfile:
        from genosynth.io.plink import read_bed
        cohort = read_bed(bfile, threads=threads)
    elif vcf:
        from genosynth.io.vcf import read_vcf
        cohort = read_vcf(vcf, threads=threads, progress=progress)
    else:
        if not legend:
            raise InputError("--hapt needs --legend FILE (the id position a0 a1 table of its SNPs)")
        from genosynth.io.hapt import read_hapt
        cohort = read_hapt(hapt, legend)
    if samples:
        from genosynth.io.samples import attach_samples, read_sample_table
        cohort = attach_samples(cohort, read_sample_table(samples), allow_unknown=allow_unknown_samples)
    return cohort


def write_cohort(cohort: Cohort, prefix: str, fmt: str, *, tag_column: str | None = None) -> list[str]:
    """Write ``cohort`` under ``prefix`` in ``fmt`` (bed, vcf, hapt or pgen); return the paths written.

    Every writer writes to temporary names and renames, so an interrupted run leaves nothing.
    """
    if fmt == "bed":
        from genosynth.io.plink import write_bed
        return write_bed(cohort, prefix, fid_column=tag_column)
    if fmt == "vcf":
        from genosynth.io.vcf import write_vcf
        return write_vcf(cohort, f"{prefix}.vcf.gz")
    if fmt == "hapt":
        from genosynth.io.hapt import write_hapt
        return write_hapt(cohort, prefix, tag_column=tag_column)
    if fmt == "pgen":
        from genosynth.io.pgen import write_pgen
        return write_pgen(cohort, prefix, fid_column=tag_column)
    raise InputError(f"unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}")


__all__ = ["FORMATS", "read_cohort", "write_cohort"]
