"""Allele frequencies and dosages: one implementation each, with the missing-value rule spelled out.

Genotype codes are ALT allele counts ``0..ploidy`` per row (or 0/1 per haplotype row), ``-1``
missing. Two rules for missing calls exist, chosen by the caller:

* ``missing="skip"`` (:func:`allele_frequencies`): statistics over the called genotypes only;
  used by the cohort model, the evaluation and the PRS code.
* ``missing="raise"`` (:func:`allele_frequencies`, :func:`as_genotypes`): any missing value is an
  error; used by the private releases, where the missingness pattern is itself private.

Dosages (:func:`dosage`) replace each missing call with an explicit per-variant ``fill`` (e.g.
twice the real-train allele frequency, or :func:`called_mean`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from genosynth.errors import InputError

MISSING_RULES = ("raise", "skip")


def allele_frequencies(genotypes, *, ploidy: int = 2, missing: str = "raise") -> np.ndarray:
    """ALT allele frequency per variant, float64 shape (n_variants,).

    Parameters
    ----------
    genotypes : array_like, shape (n_rows, n_variants)
        ALT counts ``0..ploidy`` per row (``ploidy=1`` for haplotype rows).
    ploidy : int
        Alleles per row.
    missing : {"raise", "skip"}
        ``"raise"``: dosages (floats allowed), no missing value (NaN or negative raises
        :class:`InputError`); frequency = column mean / ploidy. The non-private statistic beside the
        private releases (only used when no privacy budget is set).
        ``"skip"``: integer codes with ``-1`` missing; frequency = ALT count / (ploidy x called rows),
        NaN where no row is called.
    """
    if missing == "raise":
        g = as_genotypes(genotypes)
        return g.mean(axis=0) / ploidy
    if missing != "skip":
        raise InputError(f"missing must be one of {MISSING_RULES}, got {missing!r}")
    total, called = _called_totals(np.asarray(genotypes))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(called > 0, total / np.maximum(called * ploidy, 1), np.nan)


def allele_freq(g: np.ndarray) -> np.ndarray:
    """:func:`allele_frequencies` of diploid genotype counts over called genotypes (``missing="skip"``).

    Parameters
    ----------
    g : int8, shape (n_people, n_variants); 0/1/2, -1 missing.

    Returns
    -------
    float64, shape (n_variants,); NaN where every call is missing.
    """
    return allele_frequencies(g, ploidy=2, missing="skip")


def called_mean(g: np.ndarray) -> np.ndarray:
    """Mean dosage per variant over called genotypes, float64 shape (n_variants,); 0 where none is called.

    The "fill with the column mean" rule: pass it as ``fill`` to :func:`dosage`.

    Parameters
    ----------
    g : int8, shape (n_people, n_variants); -1 missing.
    """
    total, called = _called_totals(np.asarray(g))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(called > 0, total / np.maximum(called, 1), 0.0)


def _called_totals(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ALT count sum and number of called rows per variant, int64 shape (n_variants,) each."""
    ok = g >= 0
    return np.where(ok, g, 0).sum(axis=0, dtype=np.int64), ok.sum(axis=0, dtype=np.int64)


def dosage(g: np.ndarray, fill: np.ndarray, *, dtype=np.float32) -> np.ndarray:
    """Genotype counts as floats with missing calls replaced by ``fill``.

    Parameters
    ----------
    g : int8, shape (n_people, n_variants); -1 missing.
    fill : float, shape (n_variants,)
        Value for the missing calls of each variant: usually twice the real-train allele frequency,
        or :func:`called_mean` of the training genotypes.
    dtype : numpy dtype
        float32 (default; the evaluation's distance and PCA inputs) or float64.

    Returns
    -------
    ``dtype``, shape (n_people, n_variants)
    """
    x = g.astype(dtype)
    miss = g < 0
    if miss.any():
        x[miss] = np.broadcast_to(fill.astype(dtype), g.shape)[miss]
    return x


def column_moments(x_int8: np.ndarray, fill: np.ndarray, *, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Per-variant mean and standard deviation of dosages (missing filled), float64 (n_variants,) each."""
    n, v = x_int8.shape
    mean = np.empty(v)
    std = np.empty(v)
    for s in range(0, v, chunk):
        x = dosage(x_int8[:, s:s + chunk], fill[s:s + chunk]).astype(np.float64)
        mean[s:s + chunk] = x.mean(axis=0)
        std[s:s + chunk] = x.std(axis=0)
    return mean, std


def as_genotypes(genotypes: Any) -> np.ndarray:
    """Complete dosages as float64, shape (n_samples, n_variants) (the ``missing="raise"`` rule).

    Raises :class:`InputError` on a wrong shape or any missing value (NaN or negative code).
    """
    g = np.asarray(genotypes, dtype=np.float64)
    if g.ndim != 2:
        raise InputError(f"genotypes must have shape (n_samples, n_variants), got {g.shape}")
    if np.isnan(g).any() or (g < 0).any():
        raise InputError(
            "genotypes contain missing values (NaN or negative codes); impute or drop them before "
            "private statistics (missingness patterns are private too)"
        )
    return g
