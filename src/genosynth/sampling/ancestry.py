"""Each synthetic person's own ancestry, drawn from a DP model's released within-label spread (post-processing)."""

from __future__ import annotations

import torch


def draw_person_frequencies(spread: dict, labels: torch.Tensor, *, rng: torch.Generator) -> torch.Tensor:
    """Each person's own ALT frequencies ``q_l + D a``, ``a ~ N(0, C_l)``: labels (P,) -> float64 (P, V)."""
    basis = torch.as_tensor(spread["basis"], dtype=torch.float64)  # (V, k)
    q = torch.as_tensor(spread["freq"], dtype=torch.float64)  # (L, V)
    cov = torch.as_tensor(spread["cov"], dtype=torch.float64)  # (L, k, k)
    w, u = torch.linalg.eigh(cov)  # (L, k), (L, k, k)
    root = u * w.clamp_min(0.0).sqrt()[:, None, :]  # (L, k, k): root @ root.T = cov
    eps = torch.randn(labels.shape[0], basis.shape[1], generator=rng, dtype=torch.float64)  # (P, k)
    a = (root[labels] @ eps[:, :, None])[:, :, 0]  # (P, k)
    return (q[labels] + a @ basis.T).clamp(1e-3, 1 - 1e-3)  # (P, V)


def person_logit_shift(spread: dict, labels: torch.Tensor, *, rows_per_person: int, n_classes: int,
                       rng: torch.Generator) -> torch.Tensor:
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
    p = draw_person_frequencies(spread, person_labels, rng=rng)  # (P, V)
    q = torch.as_tensor(spread["freq"], dtype=torch.float64)[person_labels]  # (P, V)
    shift = binomial_logit_shift(p, q, n_classes=n_classes).transpose(1, 2)  # (P, K, V)
    return shift.repeat_interleave(rows_per_person, dim=0).float()  # (B, K, V)


def binomial_logit_shift(p: torch.Tensor, q: torch.Tensor, *, n_classes: int) -> torch.Tensor:
    """Logit offsets of ALT-count classes that move ALT frequencies ``q`` to ``p``: class ``m`` (of
    ``K = n_classes``) gets ``m log(p / q) + (K - 1 - m) log((1 - p) / (1 - q))``, the binomial
    likelihood ratio (per-person ancestry here, per-population corrections in
    :func:`genosynth.training.calibration.fine_label_corrections`).

    p, q : float64, shape (..., V), in (0, 1) -> float64, shape (..., V, K)
    """
    m = torch.arange(n_classes, dtype=torch.float64)  # (K,)
    up, down = (p / q).log()[..., None], ((1 - p) / (1 - q)).log()[..., None]  # (..., V, 1)
    return m * up + (n_classes - 1 - m) * down  # (..., V, K)
