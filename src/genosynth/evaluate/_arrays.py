"""Array helpers shared by the evaluation sections: chunked distances and the PCA solver choice.

Dosages, allele frequencies and LD come from :mod:`genosynth.stats.frequency` and
:mod:`genosynth.stats.ld`.

Nothing here builds a dense (n_variants x n_variants) or (n_people x n_people) matrix larger than
one block of ``chunk`` rows.
"""

from __future__ import annotations

import numpy as np


def nearest_distances(query: np.ndarray, ref: np.ndarray, *, exclude_self: bool = False,
                      chunk: int = 1024) -> np.ndarray:
    """Euclidean distance from each query row to its closest reference row, in blocks.

    Parameters
    ----------
    query : float32, shape (n_query, n_variants)
    ref : float32, shape (n_ref, n_variants)
    exclude_self : bool
        ``query`` and ``ref`` are the same set; row ``i`` is not compared with itself (by index,
        so exact duplicates of other people still count as distance 0).
    chunk : int
        Query rows per block; memory is ``chunk * n_ref`` floats.

    Returns
    -------
    float64, shape (n_query,)
    """
    q = np.ascontiguousarray(query, dtype=np.float32)
    r = np.ascontiguousarray(ref, dtype=np.float32)
    if exclude_self and q.shape[0] != r.shape[0]:
        raise ValueError("exclude_self needs query and ref to be the same set")
    rn = np.einsum("ij,ij->i", r, r)  # (R,)
    out = np.empty(q.shape[0], dtype=np.float64)
    for start in range(0, q.shape[0], chunk):
        block = q[start:start + chunk]  # (C, V)
        d2 = np.einsum("ij,ij->i", block, block)[:, None] + rn[None, :] - 2.0 * (block @ r.T)  # (C, R)
        if exclude_self:
            idx = np.arange(block.shape[0])
            d2[idx, start + idx] = np.inf
        out[start:start + block.shape[0]] = d2.min(axis=1)
    return np.sqrt(np.maximum(out, 0.0))


def distance_matrix(a: np.ndarray, b: np.ndarray, *, chunk: int = 1024) -> np.ndarray:
    """All Euclidean distances between rows of ``a`` and ``b``, computed in row blocks.

    Only for sets whose ``n_a * n_b`` matrix fits comfortably in memory (callers check).

    Returns
    -------
    float32, shape (n_a, n_b)
    """
    a = np.ascontiguousarray(a, dtype=np.float32)
    b = np.ascontiguousarray(b, dtype=np.float32)
    bn = np.einsum("ij,ij->i", b, b)
    out = np.empty((a.shape[0], b.shape[0]), dtype=np.float32)
    for s in range(0, a.shape[0], chunk):
        blk = a[s:s + chunk]
        d2 = np.einsum("ij,ij->i", blk, blk)[:, None] + bn[None, :] - 2.0 * (blk @ b.T)
        out[s:s + chunk] = np.sqrt(np.maximum(d2, 0.0))
    return out


def pairwise_distance_sample(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """All Euclidean distances within ``a`` (upper triangle) or between ``a`` and ``b``.

    Callers subsample first (a few hundred rows); returns float64, shape (n_pairs,).
    """
    a = np.asarray(a, dtype=np.float32)
    an = np.einsum("ij,ij->i", a, a)
    if b is None:
        d2 = an[:, None] + an[None, :] - 2.0 * (a @ a.T)
        iu = np.triu_indices(a.shape[0], k=1)
        d2 = d2[iu]
    else:
        b = np.asarray(b, dtype=np.float32)
        d2 = (an[:, None] + np.einsum("ij,ij->i", b, b)[None, :] - 2.0 * (a @ b.T)).ravel()
    return np.sqrt(np.maximum(d2, 0.0)).astype(np.float64)


def pca_solver(n_rows: int, n_variants: int) -> str:
    """sklearn PCA solver: the covariance eigendecomposition while the variant x variant covariance
    is small, randomized SVD beyond (no dense variant x variant matrix for large panels)."""
    if n_variants <= 2048:
        return "covariance_eigh"
    return "randomized"
