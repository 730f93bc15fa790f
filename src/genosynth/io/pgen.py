"""PLINK 2 binary filesets: ``PREFIX.pgen`` + ``PREFIX.pvar`` + ``PREFIX.psam``, written with pgenlib.

``.pgen`` holds hard calls, phased when the cohort is (``plink2 --pfile PREFIX --export vcf``
gives ``0|1``), written through pgenlib (the PLINK 2 team's Python binding of its C library).
``.pvar`` is ``#CHROM POS ID REF ALT`` after the ``##`` lines of
:func:`genosynth.io.vcf.provenance_lines` (model digest, seed, privacy status of a synthetic
cohort); ``.psam`` is ``#IID SEX PHENO1`` and the label column (e.g. ``super_pop``), so sample
ids are those of the VCF output.
Variants are written in genomic order, as plink2 requires.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from genosynth.cohort import Cohort
from genosynth.errors import InputError
from genosynth.io.atomic import atomic_outputs
from genosynth.io.order import in_genomic_order
from genosynth.io.plink import format_plink_phenotype
from genosynth.io.samples import phenotype_is_binary, sample_batches
from genosynth.io.tokens import check_tokens
from genosynth.io.vcf import provenance_lines

_FIELDS = "PLINK 2 text files separate fields by tabs"
PGEN_MISSING = -9  # pgenlib's missing allele / genotype code


def write_pgen(cohort: Cohort, prefix: str, *, fid_column: str | None = None) -> list[str]:
    """Write ``PREFIX.pgen/.pvar/.psam``; return the three paths (phased when ``cohort`` is).

    Parameters
    ----------
    cohort : diploid cohort.
    prefix : output path without extension.
    fid_column : sample-table column written as a ``.psam`` column (e.g. ``super_pop``).
    """
    if cohort.ploidy != 2:
        raise InputError(f"a .pgen written here holds diploid calls; this cohort has ploidy {cohort.ploidy}. "
                         "Choose --format vcf")
    cohort = in_genomic_order(cohort)
    step = 1024
    blocks = (cohort.alleles[:, s:s + step].T for s in range(0, cohort.n_variants, step))  # (v, rows)
    return write_pgen_blocks(prefix, blocks, variants=cohort.variants, samples=cohort.samples, meta=cohort.meta,
                             phased=cohort.phased, fid_column=fid_column)


def write_pgen_blocks(prefix: str, blocks, *, variants: pd.DataFrame, samples, meta: dict,
                      phased: bool, fid_column: str | None = None) -> list[str]:
    """:func:`write_pgen` from variant-major blocks, so a cohort larger than memory can be written.

    blocks : iterable of int8 arrays, shape (v, n_rows), the variants of ``variants`` in order
        (already in genomic order); rows are haplotypes (2 per person) when ``phased``, else
        ALT counts; -1 missing.
    samples : the sample table, or a :class:`genosynth.io.samples.SampleSpool` whose batches
        are written to the ``.psam`` one at a time.
    """
    import pgenlib

    for col in ("chrom", "id", "ref", "alt"):
        check_tokens(variants[col], f"variant {col}", fields=_FIELDS)
    n_smp = len(samples)
    binary = phenotype_is_binary(samples)
    paths = [f"{prefix}.pgen", f"{prefix}.pvar", f"{prefix}.psam"]
    with atomic_outputs(paths) as (tmp_pgen, tmp_pvar, tmp_psam):
        with open(tmp_psam, "w", encoding="utf-8") as fh:  # first: a bad id fails before the genotypes
            for k, part in enumerate(sample_batches(samples)):
                fh.writelines(_psam_lines(part, fid_column, binary=binary)[int(k > 0):])  # one header
        with pgenlib.PgenWriter(tmp_pgen.encode(), n_smp, len(variants), nonref_flags=False,
                                hardcall_phase_present=phased) as writer:
            for block in blocks:
                if phased:
                    codes = block.astype(np.int32)  # (v, 2N): haplotypes of person i at 2i, 2i+1
                    codes[codes < 0] = PGEN_MISSING
                    writer.append_alleles_batch(np.ascontiguousarray(codes), all_phased=True)
                else:
                    geno = block.astype(np.int8)  # (v, N) ALT counts
                    geno[geno < 0] = PGEN_MISSING
                    writer.append_biallelic_batch(np.ascontiguousarray(geno))
        with open(tmp_pvar, "w", encoding="utf-8") as fh:
            fh.writelines(_pvar_lines(variants, meta))
    return paths


def _pvar_lines(variants: pd.DataFrame, meta: dict) -> list[str]:
    lines = [f"##{line}\n" for line in ["source=genosynth"] + provenance_lines(meta)]
    lines += [f"##contig=<ID={c}>\n" for c in dict.fromkeys(variants["chrom"].astype(str))]
    lines.append("#CHROM\tPOS\tID\tREF\tALT\n")
    for chrom, pos, vid, ref, alt in zip(variants["chrom"], variants["pos"], variants["id"], variants["ref"],
                                         variants["alt"]):
        lines.append(f"{chrom}\t{int(pos)}\t{vid}\t{ref or '.'}\t{'.' if alt in ('', '0') else alt}\n")
    return lines


def _psam_lines(s: pd.DataFrame, label_column: str | None, *, binary: bool | None = None) -> list[str]:
    """``#IID SEX PHENO1`` (and the label column, which plink2 reads as a categorical covariate):
    the header line, then one line per row of ``s`` (``binary``: see :func:`format_plink_phenotype`)."""
    iid = s["sample"].astype(str).to_numpy()
    check_tokens(iid, "sample id", fields=_FIELDS)
    sex = s["sex"].to_numpy(dtype=np.int64)
    columns = [iid, np.where(sex == 1, "1", np.where(sex == 2, "2", "NA")),
               format_plink_phenotype(s["phenotype"].to_numpy(dtype=np.float64), binary=binary)]
    header = ["#IID", "SEX", "PHENO1"]
    if label_column and label_column in s.columns:
        labels = s[label_column].fillna("").astype(str).to_numpy()
        columns.append(np.where(labels == "", "NA", labels))
        header.append(label_column)
        check_tokens(columns[-1], f"{label_column} label", fields=_FIELDS)
    return ["\t".join(header) + "\n"] + ["\t".join(row) + "\n" for row in zip(*columns)]


__all__ = ["write_pgen", "write_pgen_blocks"]
