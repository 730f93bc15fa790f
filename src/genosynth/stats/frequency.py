"""Allele frequencies and dosages, with one rule for missing genotypes."""

from __future__ import annotations

from typing import Any

from typing import TYPE_CHECKING
import numpy as np
from genosynth.errors import InputError
if TYPE_CHECKING:  # pragma: no cover
    pass


def allele_frequencies(genotypes, *, ploidy: int = 2) -> np.ndarray:
    """Non-private ALT allele frequencies, shape (V,) (only when no privacy budget is set)."""
    g = as_genotypes(genotypes)
    return g.mean(axis=0) / ploidy


def allele_freq(g: np.ndarray) -> np.ndarray:
    """ALT allele frequency per variant of genotype counts.

    Parameters
    ----------
    g : int8, shape (n_people, n_variants); 0/1/2, -1 missing.

    Returns
    -------
    float64, shape (n_variants,); NaN where every call is missing.
    """
    ok = g >= 0
    n = ok.sum(axis=0, dtype=np.int64)
    s = np.where(ok, g, 0).sum(axis=0, dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, s / (2.0 * np.maximum(n, 1)), np.nan)


def dosage(g: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """Genotype counts as float32 with missing calls replaced by ``fill``.

    Parameters
    ----------
    g : int8, shape (n_people, n_variants)
    fill : float, shape (n_variants,), usually twice the real-train allele frequency.

    Returns
    -------
    float32, shape (n_people, n_variants)
    """
    x = g.astype(np.float32)
    miss = g < 0
    if miss.any():
        x[miss] = np.broadcast_to(fill.astype(np.float32), g.shape)[miss]
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
    g = np.asarray(genotypes, dtype=np.float64)
    if g.ndim != 2:
        raise InputError(f"genotypes must have shape (n_samples, n_variants), got {g.shape}")
    if np.isnan(g).any() or (g < 0).any():
        raise InputError(
            "genotypes contain missing values (NaN or negative codes); impute or drop them before "
            "private statistics (missingness patterns are private too)"
        )
    return g
