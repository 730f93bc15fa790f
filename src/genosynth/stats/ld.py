"""Linkage disequilibrium: banded SNP correlations, correlations of chosen SNP pairs, small r² matrices."""

from __future__ import annotations

import numpy as np
from genosynth.errors import InputError
from genosynth.stats.frequency import as_genotypes
from genosynth.stats.frequency import column_moments
from genosynth.stats.frequency import dosage


def band_products(gc: np.ndarray, window: int, weights: np.ndarray | None = None) -> np.ndarray:
    """Sum over people of ``w_i gc_ij gc_i,j+l`` for l = 0..window, shape (V, window + 1)."""
    n, v = gc.shape
    out = np.zeros((v, window + 1))
    wg = gc if weights is None else gc * weights[:, None]  # (N, V)
    for lag in range(window + 1):
        if lag < v:
            out[: v - lag, lag] = np.einsum("ij,ij->j", wg[:, : v - lag], gc[:, lag:])
    return out


def check_window(window: int, v: int) -> int:
    if int(window) != window or window < 1:
        raise InputError(f"window={window} must be a positive integer number of SNPs")
    return int(window)


def correlation_band(genotypes, *, window: int, var_floor: float = 1e-12) -> np.ndarray:
    """Non-private banded SNP correlation (used only when no privacy budget is set).

    Parameters
    ----------
    genotypes : array_like, float, shape (N, V)
        Dosages (e.g. ALT counts 0..2), no missing values.
    window : int
        Number of neighbouring SNPs on each side.

    Returns
    -------
    numpy.ndarray, float64, shape (V, window)
        ``band[j, l-1] = corr(SNP j, SNP j+l)`` for ``l = 1..window``; entries with ``j+l ≥ V`` and
        pairs involving a monomorphic SNP are 0. Same format as :func:`dp_correlation_prior`.
    """
    g = as_genotypes(genotypes)
    window = check_window(window, g.shape[1])
    gc = g - g.mean(axis=0)  # (N, V)
    m = band_products(gc, window) / g.shape[0]  # (V, window+1)
    band = moments_to_band(m, window, var_floor)
    band[np.repeat(m[:, :1] <= var_floor, window, axis=1)] = 0.0
    return band


def band_to_dense(band: np.ndarray) -> np.ndarray:
    """Expand a (V, window) band into a symmetric (V, V) matrix with unit diagonal."""
    band = np.asarray(band, dtype=np.float64)
    v, w = band.shape
    dense = np.eye(v)
    for lag in range(1, w + 1):
        if lag < v:
            idx = np.arange(v - lag)
            dense[idx, idx + lag] = band[: v - lag, lag - 1]
            dense[idx + lag, idx] = band[: v - lag, lag - 1]
    return dense


def pair_correlations(g: np.ndarray, i: np.ndarray, j: np.ndarray, *, fill: np.ndarray,
                      chunk: int = 4096, dense_max: int = 2048) -> np.ndarray:
    """Pearson r between variant columns ``i[k]`` and ``j[k]`` for a list of pairs.

    With at most ``dense_max`` variants the (small) variant x variant correlation matrix is formed
    once and indexed; beyond that the pairs are processed in blocks of ``chunk`` without any
    variant x variant matrix.

    Parameters
    ----------
    g : int8, shape (n_people, n_variants)
    i, j : int64, shape (n_pairs,)
    fill : float, shape (n_variants,); value for missing calls.

    Returns
    -------
    float64, shape (n_pairs,); NaN where either variant is monomorphic in ``g``.
    """
    n, v = g.shape
    if len(i) == 0:
        return np.zeros(0)
    if v <= dense_max:
        x = dosage(g, fill).astype(np.float64)
        x -= x.mean(axis=0)
        sd = np.sqrt((x * x).mean(axis=0))
        with np.errstate(invalid="ignore", divide="ignore"):
            x /= np.where(sd > 0, sd, np.nan)
        x = np.nan_to_num(x)
        c = (x.T @ x) / n  # (V, V), V <= dense_max
        out = c[i, j]
        out[(sd[i] == 0) | (sd[j] == 0)] = np.nan
        return np.clip(out, -1.0, 1.0)
    mean, std = column_moments(g, fill)
    gt = np.ascontiguousarray(g.T)  # (V, N) int8: gathering variants becomes gathering rows
    mean32 = mean.astype(np.float32)[:, None]
    out = np.empty(len(i), dtype=np.float64)
    for s in range(0, len(i), chunk):
        ii, jj = i[s:s + chunk], j[s:s + chunk]
        xi = dosage(gt[ii].T, fill[ii]).T - mean32[ii]  # (C, N)
        xj = dosage(gt[jj].T, fill[jj]).T - mean32[jj]  # (C, N)
        cov = np.einsum("cn,cn->c", xi, xj).astype(np.float64) / n
        with np.errstate(invalid="ignore", divide="ignore"):
            out[s:s + chunk] = cov / (std[ii] * std[jj])
    out[~np.isfinite(out)] = np.nan
    return np.clip(out, -1.0, 1.0)


def r2_matrix(g: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """Squared Pearson r of every pair of a few variants (a heatmap), 0 where undefined.

    Parameters
    ----------
    g : int8, shape (n_people, n_variants); a short window of variants.
    fill : float, shape (n_variants,); value for missing calls.

    Returns
    -------
    float64, shape (n_variants, n_variants); a monomorphic variant's row and column are 0.
    """
    return np.nan_to_num(np.corrcoef(dosage(g, fill), rowvar=False) ** 2)


def moments_to_band(m: np.ndarray, window: int, var_floor: float) -> np.ndarray:
    v = m.shape[0]
    var = np.maximum(m[:, 0], var_floor)  # (V,)
    band = np.zeros((v, window))
    for lag in range(1, window + 1):
        if lag < v:
            band[: v - lag, lag - 1] = m[: v - lag, lag] / np.sqrt(var[: v - lag] * var[lag:])
    return np.clip(band, -1.0, 1.0)
