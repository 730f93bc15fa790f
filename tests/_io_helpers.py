"""Helpers of the I/O tests: hypothesis strategies for small random cohorts and tiny text files."""

from __future__ import annotations

import os

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from genosynth.cohort import Cohort, make_samples, make_variants

BASE_PAIRS = [(r, a) for r in "ACGT" for a in "ACGT" if r != a]
CHROMS = ["1", "2", "10", "X", "chr3"]


@st.composite
def cohorts(draw, *, phased: bool = False, missing: bool = True, default_ids: bool = False,
            max_samples: int = 6, max_variants: int = 8) -> Cohort:
    """A random diploid cohort: unphased counts (or haplotypes when ``phased``), -1 when ``missing``.

    Variants may be out of genomic order (the writers sort them); ``default_ids`` gives ids
    ``CHROM:POS_REF_ALT`` (needed by .hapt, whose legend carries the chromosome only in the id).
    """
    n = draw(st.integers(1, max_samples))
    v = draw(st.integers(1, max_variants))
    chrom = draw(st.lists(st.sampled_from(CHROMS), min_size=v, max_size=v))
    pos = draw(st.lists(st.integers(1, 10**9), min_size=v, max_size=v, unique=True))
    pairs = draw(st.lists(st.sampled_from(BASE_PAIRS), min_size=v, max_size=v))
    ids = None if default_ids else [f"rs{k}_{p}" for k, p in enumerate(pos)]
    variants = make_variants(chrom=chrom, pos=pos, ref=[p[0] for p in pairs], alt=[p[1] for p in pairs], id=ids)
    rows, top = (2 * n, 1) if phased else (n, 2)
    lo = -1 if missing else 0
    alleles = draw(arrays(np.int8, (rows, v), elements=st.integers(lo, top)))
    sex = draw(st.lists(st.sampled_from([0, 1, 2]), min_size=n, max_size=n))
    pheno = draw(st.lists(st.sampled_from([0.0, 1.0, float("nan")]), min_size=n, max_size=n))
    names = draw(st.lists(st.text("abcXYZ019_-", min_size=1, max_size=6), min_size=n, max_size=n, unique=True))
    samples = make_samples([f"S{x}" for x in names], sex=sex, phenotype=pheno)
    return Cohort(alleles=alleles, variants=variants, samples=samples, phased=phased, ploidy=2)


def write_text(path, text: str) -> str:
    """Write ``text`` to ``path``; return the path as str."""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return os.fspath(path)


def tiny_vcf(path, records: list[str], *, samples=("a", "b", "c"), gt_header: bool = True) -> str:
    """A small plain-text VCF with the given tab-separated record lines (fields joined by spaces ok)."""
    head = ["##fileformat=VCFv4.2", "##contig=<ID=1>"]
    if gt_header:
        head.append('##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">')
    head.append('##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Depth">')
    cols = ["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO"] + (["FORMAT", *samples] if samples else [])
    body = ["\t".join(r.split()) for r in records]
    return write_text(path, "\n".join(head + ["\t".join(cols)] + body) + "\n")


def data_files(folder) -> list[str]:
    """Files in ``folder`` other than ``*.log`` (temporary ``.name.tmp-*`` files included)."""
    return sorted(f for f in os.listdir(folder) if not f.endswith(".log"))
