"""Within-label ancestry spread: one DP release, and the per-person frequency shift it drives.

Under ``--epsilon`` the synthetic people follow their label's released allele frequencies, so every
synthetic person of a label sits at the label's mean ancestry. Real labels are not points: people
of an admixed population (e.g. 1000 Genomes AMR) differ widely in their ancestry proportions, and
a classifier trained on synthetic people who all sit at the mean puts its boundaries too close to
it (RESULTS.md, "Differential privacy").

The spread lives in a few directions, and those directions are public once the per-label
frequencies ``q`` (``L x V``) are released: the top ``k`` right singular vectors ``D`` (``V x k``,
orthonormal) of ``q`` centred on its label mean. Person ``i`` of label ``l`` has the coordinates
``a_i = Dᵀ (g_i / ploidy - q_l)`` (``k`` numbers). This module releases, per label, the sum of
``a_i a_iᵀ`` over the label's people, each ``a_i`` first clipped to norm ``c``: one Gaussian
mechanism of L2 sensitivity ``c²`` (``‖a aᵀ‖_F = ‖a‖²``; only the upper triangle is released).
Dividing by the released label count and subtracting the part that genotype sampling alone
explains, ``Dᵀ diag(q_l (1 - q_l) / ploidy) D``, leaves the label's ancestry covariance ``C_l``
(post-processing; eigenvalues below the noise edge ``2 sqrt(k) z c² / n_l`` are set to 0, which also
makes it positive semi-definite).

At sampling time each synthetic person draws ``a ~ N(0, C_l)`` and uses the frequencies
``q_l + D a`` instead of ``q_l`` (:func:`person_logit_shift`): the label's mean stays the released
one, and its people spread along the ancestry directions as the real ones do.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from genosynth.errors import PrivacyError
from genosynth.privacy.mechanisms import clip_rows, gaussian_mechanism

__all__ = ["ancestry_basis", "spread_clip", "release_ancestry_spread", "draw_person_frequencies",
           "person_logit_shift"]


def ancestry_basis(freq: np.ndarray, dims: int) -> np.ndarray:
    """The top ``min(dims, L - 1)`` right singular vectors of the label frequencies centred on their mean.

    freq : float, shape (L, V) (released, so public) -> float64, shape (V, k), orthonormal columns.
    """
    q = np.asarray(freq, dtype=np.float64)
    k = int(min(dims, q.shape[0] - 1, q.shape[1]))
    if k < 1:
        return np.zeros((q.shape[1], 0))
    _, _, vt = np.linalg.svd(q - q.mean(axis=0), full_matrices=False)  # (L, V)
    return vt[:k].T.copy()  # (V, k)


def spread_clip(dims: int, *, clip: float, ploidy: int = 2) -> float:
    """Per-person norm bound of the ancestry coordinates: ``clip`` times the largest sampling-noise norm.

    Along a unit direction the allele fraction ``g / ploidy`` of one person varies by genotype
    sampling alone with variance at most ``1 / (4 ploidy)`` (at frequency 1/2), so ``k``
    coordinates have a noise norm of at most about ``sqrt(k / (4 ploidy))``. The bound depends on
    public quantities only.
    """
    return float(clip) * math.sqrt(dims / (4.0 * ploidy))


def release_ancestry_spread(dosages: np.ndarray, labels: np.ndarray, *, freq: np.ndarray, counts: np.ndarray,
                            dims: int, clip: float, noise_multiplier: float, generator: np.random.Generator,
                            accountant=None, name: str = "ancestry_spread", ploidy: int = 2) -> dict[str, np.ndarray]:
    """Per-label ancestry covariance along the public directions of ``freq``, in one Gaussian release.

    Parameters
    ----------
    dosages : float, shape (N, V)
        Private ALT dosages in ``[0, ploidy]`` (no missing).
    labels : int, shape (N,)
        Label index per person in ``[0, L)``.
    freq : float, shape (L, V)
        The already released per-label frequencies (defines the directions and the centres).
    counts : float, shape (L,)
        The already released label counts.
    dims : int
        ``k``, directions kept (at most ``L - 1``).
    clip : float
        Multiple of the sampling-noise norm at which each person's coordinates are clipped
        (:func:`spread_clip`).
    noise_multiplier : float
        ``z``; the noise std is ``z c²``.
    accountant : PrivacyAccountant, optional
        Records one ``gaussian`` event ``name``.

    Returns
    -------
    dict with ``basis`` float64 (V, k), ``freq`` float64 (L, V) (the centres, as given), ``cov``
    float64 (L, k, k) (positive semi-definite), ``clip`` float (the norm bound ``c``).
    """
    q = np.asarray(freq, dtype=np.float64)
    n_labels, v = q.shape
    y = np.asarray(labels, dtype=np.int64)
    basis = ancestry_basis(q, dims)  # (V, k), public
    k = basis.shape[1]
    if k < 1:
        raise PrivacyError(f"an ancestry spread needs at least 2 labels and dims >= 1 (got {n_labels} labels, "
                           f"dims={dims}); set PrivacyConfig.ancestry_dims=0 to skip it")
    c = spread_clip(k, clip=clip, ploidy=ploidy)
    coords = (np.asarray(dosages, dtype=np.float64) / ploidy - q[y]) @ basis  # (N, k), private
    coords = clip_rows(coords, c)
    iu = np.triu_indices(k)
    sums = np.stack([(coords[y == j].T @ coords[y == j])[iu] for j in range(n_labels)])  # (L, k(k+1)/2)
    del coords
    noisy = gaussian_mechanism(sums, sensitivity=c * c, noise_multiplier=noise_multiplier,
                               generator=generator, accountant=accountant, name=name)  # (L, k(k+1)/2)
    # ------------------------------------------------ everything below is post-processing of `noisy`
    cov = np.zeros((n_labels, k, k))
    for j in range(n_labels):
        n_j = max(float(counts[j]), 1.0)
        m = np.zeros((k, k))
        m[iu] = noisy[j] / n_j
        m = m + np.triu(m, 1).T  # (k, k) second moment
        sampling = basis.T @ (basis * (q[j] * (1.0 - q[j]) / ploidy)[:, None])  # (k, k) what genotype draws explain
        w, u = np.linalg.eigh(m - sampling)
        # the release adds a symmetric noise matrix of known entry sd z c² / n_j, whose eigenvalues reach
        # about 2 sqrt(k) times that: directions below this edge are indistinguishable from noise, dropped
        edge = 2.0 * math.sqrt(k) * noise_multiplier * c * c / n_j
        cov[j] = (u * np.where(w > edge, w, 0.0)) @ u.T
    return {"basis": basis, "freq": q, "cov": cov, "clip": c}


def draw_person_frequencies(spread: dict, labels: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
    """Each person's own ALT frequencies ``q_l + D a``, ``a ~ N(0, C_l)``: labels (P,) -> float64 (P, V)."""
    basis = torch.as_tensor(spread["basis"], dtype=torch.float64)  # (V, k)
    q = torch.as_tensor(spread["freq"], dtype=torch.float64)  # (L, V)
    cov = torch.as_tensor(spread["cov"], dtype=torch.float64)  # (L, k, k)
    w, u = torch.linalg.eigh(cov)  # (L, k), (L, k, k)
    root = u * w.clamp_min(0.0).sqrt()[:, None, :]  # (L, k, k): root @ root.T = cov
    eps = torch.randn(labels.shape[0], basis.shape[1], generator=generator, dtype=torch.float64)  # (P, k)
    a = (root[labels] @ eps[:, :, None])[:, :, 0]  # (P, k)
    return (q[labels] + a @ basis.T).clamp(1e-3, 1 - 1e-3)  # (P, V)


def person_logit_shift(spread: dict, labels: torch.Tensor, *, rows_per_person: int, n_classes: int,
                       generator: torch.Generator) -> torch.Tensor:
    """Logit offsets that move each person from its label's frequencies to its own.

    ``labels`` are row labels, ``rows_per_person`` consecutive rows per person (2 haplotypes or one
    genotype row). Class ``m`` (ALT count of the row, ``0..K-1``) of SNP ``j`` gets
    ``m log(p_j / q_j) + (K - 1 - m) log((1 - p_j) / (1 - q_j))``, ``p`` the person's frequencies
    and ``q`` the label's: the binomial likelihood ratio, so a row whose decoded ALT frequency is
    ``q_j`` ends at ``p_j``.

    Returns
    -------
    float32, shape (B, K, V)
    """
    person_labels = labels[::rows_per_person]  # (P,)
    p = draw_person_frequencies(spread, person_labels, generator=generator)  # (P, V)
    q = torch.as_tensor(spread["freq"], dtype=torch.float64)[person_labels]  # (P, V)
    up, down = (p / q).log(), ((1 - p) / (1 - q)).log()  # (P, V)
    m = torch.arange(n_classes, dtype=torch.float64)[None, :, None]  # (1, K, 1)
    shift = m * up[:, None, :] + (n_classes - 1 - m) * down[:, None, :]  # (P, K, V)
    return shift.repeat_interleave(rows_per_person, dim=0).float()  # (B, K, V)
