"""Genomic order of a variant table, as written by the bed and VCF writers.

plink2 and ``bcftools index`` need each chromosome's records contiguous and sorted by position;
published panels (e.g. the Seldin AISNP VCF) often are not. The writers therefore emit variants in
genomic order: chromosomes ``1..22`` (with or without a ``chr`` prefix) by number, then ``X``,
``Y``, ``XY``, ``MT``/``M``, then any other name in order of first appearance; positions
ascending within a chromosome, ties keeping their input order.

>>> import pandas as pd
>>> genomic_order(pd.DataFrame({"chrom": ["2", "10", "1", "X", "1"], "pos": [5, 1, 9, 3, 2]})).tolist()
[4, 2, 0, 1, 3]
"""

from __future__ import annotations

import numpy as np
import pandas as pd

_SPECIAL = {"X": 23, "Y": 24, "XY": 25, "MT": 26, "M": 26}


def chromosome_rank(name: str) -> int:
    """Sort key of a chromosome name: 1..22, X=23, Y=24, XY=25, MT=26, others 1000."""
    bare = str(name)
    if bare.lower().startswith("chr"):
        bare = bare[3:]
    if bare.isdigit():
        return int(bare)
    return _SPECIAL.get(bare.upper(), 1000)


def genomic_order(variants: pd.DataFrame) -> np.ndarray:
    """Indices that put ``variants`` in genomic order, int64 shape (n_variants,)."""
    chrom = variants["chrom"].astype(str).to_numpy()
    first_seen = {c: k for k, c in enumerate(dict.fromkeys(chrom))}
    rank = np.array([chromosome_rank(c) for c in chrom], dtype=np.int64)
    appearance = np.array([first_seen[c] for c in chrom], dtype=np.int64)
    pos = np.asarray(variants["pos"], dtype=np.int64)
    return np.lexsort((np.arange(len(chrom)), pos, appearance, rank)).astype(np.int64)


def is_genomic_order(variants: pd.DataFrame) -> bool:
    """True when ``variants`` is already in the order :func:`genomic_order` gives."""
    order = genomic_order(variants)
    return bool(np.array_equal(order, np.arange(len(order))))


def in_genomic_order(cohort):
    """``cohort`` itself when already in genomic order, else a reordered copy."""
    order = genomic_order(cohort.variants)
    if np.array_equal(order, np.arange(len(order))):
        return cohort
    return cohort.subset(variants=order)


__all__ = ["chromosome_rank", "genomic_order", "is_genomic_order", "in_genomic_order"]
