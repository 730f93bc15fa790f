"""Correlation-guided decoding: the real cohort's LD as an explicit constraint on decoded alleles.

Drawing every SNP independently from the decoder's per-person probabilities ``p_ij`` keeps only
the LD that the latent carries (the part explained by how ``p`` varies across people) and loses
the rest. This module makes the LD of the training cohort an explicit target at the last step,
when latents become alleles:

* :class:`~genosynth.models.ld_prior.CorrelationPrior` - the banded SNP correlation (pairs
  within ``window`` SNPs), one band per ancestry label (pooled correlation is inflated by
  population structure), from :func:`genosynth.training.ld_fit.fit_prior`. Without a privacy
  budget it is the plain correlation (:func:`genosynth.stats.ld.correlation_band`); with a budget
  it is released by the Gaussian mechanism
  (:func:`genosynth.privacy.releases.dp_correlation_prior`) and recorded in
  the accountant once (labels split people into disjoint groups, so the per-label sums together
  have the sensitivity of one release).
* :func:`copula_sample` - **conditional sampling along the sequence** (``method="copula"``). Each
  row draws a latent Gaussian vector ``u`` whose correlation is banded-Markov (every SNP is
  regressed on the ``window`` SNPs before it, a sparse Cholesky factor) and sets
  ``x_ij = #{s : u_ij > Phi^-1(P(x_ij < s))}``, so the marginals ``p_ij`` are exactly the decoder's.
  The residual Gaussian correlations are solved per SNP pair so that, within each label, the
  expected correlation of the drawn alleles equals the prior: the part already explained by the
  variation of ``p`` across people is subtracted first, the rest is inverted through the
  bivariate normal CDF (Plackett's identity, Gauss-Legendre in the ``asin`` parametrisation).
  A confident decoder (``p_ij`` near 0 or 1 in most rows) leaves the residual no room: its rows fix
  the alleles, and the prior is out of reach whatever ``R``. For copula-only decoding
  (``method="copula"``, ``CorrGuideConfig.reach``) such SNPs' marginals are first mixed towards the
  label's mean just enough to bring the prior within reach (:func:`reach_weights`; the label's
  frequencies are kept), fully mixed SNPs of a pair beyond its Frechet bounds move their frequencies
  towards each other by at most ``reach_af`` (:func:`frequency_shift`, the trade latent guidance makes
  through its frequency anchor), and the PD guards relax to ``reach_floor`` so that r near 1 is
  reachable (a Gaussian copula's allele r tends to 1 only as ``R`` does).
* :func:`latent_guidance` - gradient steps on the latents that pull the batch's expected
  correlation (independent decoding) towards the prior, with an anchor on allele frequencies
  (``method="latent"``; ``"latent+copula"`` runs both). Its band (``latent_window``, 768 SNPs,
  still limited to ``max_bp``) is much wider than the copula's (``window``, 64): the latent is
  what carries LD between SNPs far apart, the copula only adds the short-range residual.

Everything is banded (``O(V w)`` memory, ``O(V w^2)`` setup per label), vectorised over people and
deterministic given a ``torch.Generator``. The functions take decoder probabilities, so they are
testable without a trained model; :func:`guided_decode` wires them to a
:class:`~genosynth.models.vae.GenotypeVAE`.

References
----------
.. [1] R. L. Plackett, "A reduction formula for normal multivariate integrals", Biometrika 41,
   1954 (d Phi_2 / d rho = phi_2).
.. [2] A. Genz, "Numerical computation of rectangular bivariate and trivariate normal and t
   probabilities", Statistics and Computing 14, 2004 (the ``asin`` substitution).
.. [3] A. Sklar, "Fonctions de repartition a n dimensions et leurs marges", 1959; P. Embrechts et
   al., "Correlation and dependence in risk management", 2002 (Gaussian copulas of discrete
   margins).
.. [4] N. Li, M. Stephens, "Modeling linkage disequilibrium and identifying recombination hotspots
   using single-nucleotide polymorphism data", Genetics 165, 2003 (sampling haplotypes SNP by SNP
   conditionally on the preceding ones).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING
import numpy as np
import torch
from genosynth.errors import InputError
from genosynth.models.ld_prior import CorrGuideConfig
from genosynth.models.ld_prior import CorrelationPrior
from genosynth.models.ld_prior import constrained_partners, dense_panel, previous_counts, usable_pairs
if TYPE_CHECKING:  # pragma: no cover
    pass


_EPS_P = 1e-6  # probabilities are clamped to [eps, 1 - eps] before Phi^-1


_THETA_MAX = math.asin(0.995)  # residual Gaussian correlations stay in [-0.995, 0.995]


#: float64 values in one temporary of :func:`_copula_cov` (2 MB: cache-sized; measured fastest of 2^15-2^21)
COPULA_CHUNK_CELLS = 2 ** 18


def _gauss_legendre(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, w = np.polynomial.legendre.leggauss(int(n))
    return torch.from_numpy(x), torch.from_numpy(w)


def _class_thresholds(probs: torch.Tensor) -> torch.Tensor:
    """``a_s = Phi^-1(P(x >= s))`` for s = 1..K-1.

    probs : float, shape (n, K, V) -> float64, shape (n, K-1, V)
    """
    tail = probs.double().flip(1).cumsum(1).flip(1)[:, 1:]  # (n, K-1, V) P(x >= s)
    tail = tail.clamp(_EPS_P, 1 - _EPS_P)
    return math.sqrt(2.0) * torch.special.erfinv(2.0 * tail - 1.0)


def _copula_cov(a: torch.Tensor, b: torch.Tensor, theta: torch.Tensor, nodes, weights, *,
                cells: int = COPULA_CHUNK_CELLS) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over rows of the copula-induced covariance and its theta-derivative.

    ``g(theta) = mean_i sum_{s,t} [Phi2(a_is, b_it; sin theta) - Phi(a_is) Phi(b_it)]
    = mean_i sum_{s,t} (1/2pi) int_0^theta exp(-(a^2 - 2ab sin f + b^2) / (2 cos^2 f)) df``,
    and ``dg/dtheta`` is the integrand at ``f = theta``.

    The exponent is ``(a^2 + b^2) alpha(f) + ab beta(f)`` with ``alpha = -1 / (2 cos^2 f)`` and
    ``beta = sin f / cos^2 f``: a multiply and a fused multiply-add per (node, row, class pair, SNP
    pair), pairs innermost, over chunks of pairs whose temporary holds about ``cells`` float64 values
    (2 MB: it stays in cache; 3x faster than one batched (rows, 2) x (2, nodes) matmul per 64 pairs,
    equal to rounding). ``nodes=None`` gives ``dg/dtheta`` alone (``g`` = 0).

    a, b : float64, shape (n, S, P); theta : float64, shape (P,)
    Returns g, dg/dtheta : float64, shape (P,) each.
    """
    n, p = a.shape[0], a.shape[-1]
    f = theta[None] if nodes is None else torch.cat([0.5 * theta[None] * (nodes[:, None] + 1.0), theta[None]])  # (Q+1, P)
    cf2 = torch.cos(f) ** 2  # (Q+1, P) the last row is f = theta
    alpha, beta = -0.5 / cf2, torch.sin(f) / cf2  # (Q+1, P) each
    m = n * a.shape[1] * b.shape[1]  # rows x class pairs
    chunk = max(1, cells // (m * f.shape[0]))  # pairs per temporary
    sums = torch.empty(f.shape[0], p, dtype=torch.float64)  # (Q+1, P) sums over rows and classes
    for s in range(0, p, chunk):
        ac, bc = a[..., s:s + chunk], b[..., s:s + chunk]  # (n, S, c)
        sq = (ac[:, :, None] ** 2 + bc[:, None] ** 2).reshape(m, -1)  # (m, c) a^2 + b^2
        ab = (ac[:, :, None] * bc[:, None]).reshape(m, -1)  # (m, c)
        e = sq * alpha[:, None, s:s + chunk]  # (Q+1, m, c)
        e.addcmul_(ab, beta[:, None, s:s + chunk])
        sums[:, s:s + chunk] = e.exp_().sum(1)  # (Q+1, c)
    sums /= n * 2 * math.pi
    dg = sums[-1]  # (P,)
    if nodes is None:
        return torch.zeros_like(dg), dg
    return 0.5 * theta * (weights @ sums[:-1]), dg  # (P,) each


def solve_residual_band(
    probs: torch.Tensor,
    band: np.ndarray,
    kprev: np.ndarray,
    *,
    quad_nodes: int = 8,
    newton_iters: int = 6,
    small: float = 0.05,
    r_max: float = 0.995,
    report: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Residual Gaussian correlations that make the drawn alleles match the prior within a label.

    ``report(lag, w)``, when given, is called after each lag is solved (progress of a long setup).

    For each SNP pair ``(j, j+l)`` with ``l <= k_{j+l}`` (constrained), with row means
    ``m_ij = E[x_ij]``, the target covariance of the drawn alleles is
    ``prior_jl * sd_j * sd_{j+l}`` (``sd`` of the mixture over rows). Independent draws already
    give ``cov_i(m_ij, m_i,j+l)``; the residual ``R = sin(theta)`` solves
    ``g(theta) = target - cov_i(m_j, m_{j+l})`` with ``g`` the mean copula covariance
    (:func:`_copula_cov`, increasing in ``theta``) by a bracketed Newton iteration; a target beyond
    reach is clamped to ``|R| <= r_max``.

    Parameters
    ----------
    probs : float, shape (n, K, V)
        Decoder class probabilities of the calibration rows (one label).
    band : float, shape (V, w)
        Prior correlations of that label.
    kprev : int, shape (V,)
        From :func:`previous_counts`.

    Returns
    -------
    float64, shape (V, w): ``R[j, l-1]`` residual correlation of ``u_j, u_{j+l}`` (0 where unconstrained).
    """
    p = probs.double()
    v = p.shape[2]
    w = band.shape[1]
    a, mc, sd = _row_moments(p)  # (n, S, V), (n, V), (V,)
    nodes, weights = _gauss_legendre(quad_nodes)
    prior = torch.from_numpy(np.asarray(band, dtype=np.float64))
    kp = torch.from_numpy(np.asarray(kprev))
    out = torch.zeros(v, w, dtype=torch.float64)
    for lag in range(1, min(w, v - 1) + 1):
        j = torch.arange(v - lag)
        ok = (kp[j + lag] >= lag) & (sd[j] > 1e-6) & (sd[j + lag] > 1e-6)  # (P,)
        j = j[ok]
        if not len(j):
            continue
        target = prior[j, lag - 1] * sd[j] * sd[j + lag] - (mc[:, j] * mc[:, j + lag]).mean(0)  # (P,)
        aj, bj = a[:, :, j], a[:, :, j + lag]  # (n, S, P)
        theta = _solve_theta(aj, bj, target, nodes, weights, newton_iters=newton_iters, small=small,
                             theta_max=math.asin(r_max))
        out[j, lag - 1] = torch.sin(theta)
        if report is not None:
            report(lag, w)
    return out.numpy()


def _row_moments(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Class thresholds (n, S, V), centred row means ``E[x | row] - mean`` (n, V) and the sd of the
    rows' mixture (V,) of class probabilities ``p`` (float64, shape (n, K, V))."""
    m, e2 = dosage_moments(p)  # (n, V) each
    mbar = m.mean(0)  # (V,)
    return _class_thresholds(p), m - mbar, (e2.mean(0) - mbar ** 2).clamp_min(0).sqrt()


def _solve_theta(aj: torch.Tensor, bj: torch.Tensor, target: torch.Tensor, nodes: torch.Tensor,
                 weights: torch.Tensor, *, newton_iters: int, small: float,
                 theta_max: float = _THETA_MAX) -> torch.Tensor:
    """``theta`` with ``_copula_cov(aj, bj, theta) = target`` per pair, shape (P,).

    One Newton step from 0 for every pair, then bracketed Newton iterations only for the pairs
    whose first step exceeds ``small`` and whose target is within reach: a pair with
    ``|g(+-theta_max)| < |target|`` (on dense panels most pairs: the decoder's marginals are sharper
    than the prior's LD allows) takes ``+-theta_max`` at once.
    ``aj, bj`` : float64, shape (n, S, P); ``target`` : (P,).
    """
    zero = torch.zeros(aj.shape[-1], dtype=torch.float64)
    _, d0 = _copula_cov(aj, bj, zero, None, None)  # g(0) = 0: the slope alone
    theta = (target / d0.clamp_min(1e-12)).clamp(-theta_max, theta_max)  # (P,)
    idx = torch.nonzero(theta.abs() > small).flatten()
    if len(idx):
        edge = torch.sign(target[idx]) * theta_max  # (P',) the bound on the target's side
        g_edge, _ = _copula_cov(aj[:, :, idx], bj[:, :, idx], edge, nodes, weights)
        beyond = g_edge.abs() < target[idx].abs()  # even |R| = r_max falls short: clamp
        theta[idx[beyond]] = edge[beyond]
        idx = idx[~beyond]
    if len(idx):
        ab_, bb_, tg = aj[:, :, idx], bj[:, :, idx], target[idx]
        th = theta[idx]
        lo = torch.full_like(th, -theta_max)
        hi = torch.full_like(th, theta_max)
        for _ in range(newton_iters):
            g, dg = _copula_cov(ab_, bb_, th, nodes, weights)
            r = g - tg
            done = r.abs() <= _CONVERGED  # solved to rounding: keep theta, leave the active set
            if done.any():
                theta[idx[done]] = th[done]
                keep = ~done
                idx, ab_, bb_, tg, th, lo, hi, r, dg = (idx[keep], ab_[:, :, keep], bb_[:, :, keep], tg[keep],
                                                        th[keep], lo[keep], hi[keep], r[keep], dg[keep])
                if not len(idx):
                    break
            lo = torch.where(r < 0, torch.maximum(lo, th), lo)
            hi = torch.where(r > 0, torch.minimum(hi, th), hi)
            step = th - r / dg.clamp_min(1e-12)
            inside = (step > lo) & (step < hi)
            th = torch.where(inside, step, 0.5 * (lo + hi))
        theta[idx] = th
    return theta


def reach_weights(
    probs: torch.Tensor,
    band: np.ndarray,
    kprev: np.ndarray,
    *,
    r_cap: float = 0.95,
    step: float = 0.125,
    max_partners: int | None = None,
    quad_nodes: int = 8,
) -> np.ndarray:
    """Least per-SNP weights towards the label's mean that bring every prior correlation within reach.

    A copula keeps each row's marginals, so a pair whose rows are nearly certain (``p_ij`` near 0
    or 1 in most rows) can only get the correlation that the variation of ``p`` across rows already
    carries: the residual ``R`` has no room (Frechet bounds of sharp per-row marginals). Mixing each
    row's class probabilities with the label's mean, ``q_ij = (1 - lam_j) p_ij + lam_j pbar_j``,
    keeps the label's allele frequencies exactly and gives the copula that room back. ``lam`` starts
    at 0 and is raised by ``step`` for both SNPs of every constrained pair whose prior is out of reach
    of a residual ``|R| <= r_cap`` (:func:`_copula_cov` at ``R = +-r_cap``), and pairs touching a raised
    SNP are checked again, until none is out of reach or their ``lam`` is 1 (where only the Frechet
    bounds of the two label frequencies limit the pair).

    Only pairs of two SNPs with at most ``max_partners`` constrained partners each (None: any) are
    considered: that is where pairs stand alone (a sparse panel, e.g. ancestry-informative SNPs Mb
    apart). In a dense band every SNP has many partners, mixing would spread over the whole region
    and take away what the rows carry of each person (measured: AATS 0.67 -> 0.95 on a dense
    simulated region), so there the latent has to carry the LD.

    Parameters
    ----------
    probs : float, shape (n, K, V)
        Decoder class probabilities of the calibration rows (one label).
    band : float, shape (V, w)
        Prior correlations of that label.
    kprev : int, shape (V,)
        From :func:`previous_counts`.

    Returns
    -------
    float64, shape (V,): ``lam_j`` in [0, 1], multiples of ``step`` (0 where every pair is reachable).
    """
    p = probs.double()
    v = p.shape[2]
    w = min(band.shape[1], v - 1)
    center = p.mean(0, keepdim=True)  # (1, K, V)
    nodes, weights = _gauss_legendre(quad_nodes)
    prior = torch.from_numpy(np.asarray(band, dtype=np.float64))
    kp = torch.from_numpy(np.asarray(kprev))
    lam = torch.zeros(v, dtype=torch.float64)
    theta_cap = math.asin(float(r_cap))
    active = torch.ones(v, dtype=torch.bool)  # SNPs whose pairs are (re)checked
    if max_partners is not None:
        partners = constrained_partners(kprev, band.shape[1])  # (V,)
        active = torch.from_numpy(partners <= max_partners)  # the others never mix
    eligible = active.clone()
    for _ in range(math.ceil(1.0 / step) + 1):
        q = (1 - lam) * p + lam * center  # (n, K, V)
        a, mc, sd = _row_moments(q)  # (n, S, V), (n, V), (V,)
        raise_ = torch.zeros(v, dtype=torch.bool)
        for lag in range(1, w + 1):
            j = torch.arange(v - lag)
            ok = (kp[j + lag] >= lag) & (active[j] | active[j + lag]) & eligible[j] & eligible[j + lag]
            ok &= (sd[j] > 1e-6) & (sd[j + lag] > 1e-6)
            ok &= (lam[j] < 1) | (lam[j + lag] < 1)
            j = j[ok]
            if not len(j):
                continue
            target = prior[j, lag - 1] * sd[j] * sd[j + lag] - (mc[:, j] * mc[:, j + lag]).mean(0)  # (P,)
            theta = torch.where(target >= 0, theta_cap, -theta_cap).to(torch.float64)  # (P,)
            g, _ = _copula_cov(a[:, :, j], a[:, :, j + lag], theta, nodes, weights)  # (P,) reach of |R| = r_cap
            out = target.abs() > g.abs() + 1e-9
            raise_[j[out]] = True
            raise_[j[out] + lag] = True
        raise_ &= lam < 1
        if not raise_.any():
            break
        lam = torch.where(raise_, (lam + step).clamp_max(1.0), lam)
        active = raise_
    return lam.numpy()


def mix_marginals(probs: torch.Tensor, lam: np.ndarray | None, shift: np.ndarray | None = None) -> torch.Tensor:
    """``(1 - lam_j) p_ij + lam_j pbar_j`` with ``pbar`` the rows' mean (:func:`reach_weights`), its ALT
    probability moved by ``shift_j`` (two classes only; :func:`frequency_shift`).

    probs : float, shape (n, K, V); lam, shift : float, shape (V,) or None (unchanged) -> float, shape (n, K, V)
    """
    if lam is None or not np.any(lam):
        return probs
    lt = torch.from_numpy(np.asarray(lam, dtype=np.float64)).to(probs.dtype)  # (V,)
    center = probs.mean(0, keepdim=True)  # (1, K, V)
    if shift is not None and np.any(shift) and probs.shape[1] == 2:
        alt = (center[:, 1] + torch.from_numpy(np.asarray(shift, dtype=np.float64)).to(probs.dtype)).clamp(0, 1)  # (1, V)
        center = torch.stack([1 - alt, alt], dim=1)  # (1, 2, V)
    return (1 - lt) * probs + lt * center  # (n, K, V)


def frequency_shift(alt: np.ndarray, band: np.ndarray, kprev: np.ndarray, lam: np.ndarray, *,
                    cap: float, grid: int = 64) -> np.ndarray:
    """Least moves of the ALT frequencies of fully mixed SNPs that put their prior pairs within the Frechet bounds.

    Two binary alleles of frequencies ``a <= b`` correlate at most ``sqrt(a (1 - b) / (b (1 - a)))``
    (and at least minus the same with one allele flipped), whatever the copula: a decoder whose
    frequencies of two tightly linked SNPs differ a little cannot give them the prior's r near 1.
    For every constrained pair of two SNPs with ``lam = 1`` (:func:`reach_weights`; their rows all
    share the label's mean) whose bound is below ``|prior|``, both frequencies move towards each other
    (``a + d, b - d``; for a negative prior, towards ``a + b = 1``) by the least ``d <= cap`` (on a
    grid of ``grid`` steps) that reaches it; a SNP in several such pairs takes its largest move.
    Latent guidance makes the same trade through its frequency anchor.

    alt : float, shape (V,) label ALT frequencies; band : shape (V, w); kprev : shape (V,);
    lam : shape (V,) -> float64, shape (V,) the move of each SNP's ALT frequency (0 for most)
    """
    v, w = band.shape
    alt = np.asarray(alt, dtype=np.float64)
    shift = np.zeros(v)
    d = cap * np.arange(grid + 1) / grid  # (G,)
    for lag in range(1, min(w, v - 1) + 1):
        j = np.arange(v - lag)
        t = band[j, lag - 1]
        ok = (kprev[j + lag] >= lag) & (lam[j] >= 1) & (lam[j + lag] >= 1) & (t != 0)
        j, t = j[ok], t[ok]
        if not len(j):
            continue
        p1, p2 = alt[j], alt[j + lag]
        q2 = np.where(t > 0, p2, 1 - p2)  # a negative prior: the bound of p1 with the flipped allele
        lo, hi = np.minimum(p1, q2), np.maximum(p1, q2)  # (P,)
        dd = np.minimum(d[None], (hi - lo)[:, None] / 2)  # (P, G) moves, never past each other
        a, b = lo[:, None] + dd, hi[:, None] - dd
        with np.errstate(divide="ignore", invalid="ignore"):
            bound = np.sqrt(a * (1 - b) / (b * (1 - a)))  # (P, G)
        reach = np.nan_to_num(bound, nan=0.0) >= np.abs(t)[:, None]
        need = ~reach[:, 0]  # (P,) out of the bound at the decoder's frequencies
        k = np.where(reach.any(1), reach.argmax(1), grid)  # least move that reaches, else the cap
        move = dd[np.arange(len(j)), k] * need  # (P,)
        up1 = p1 < q2  # p1 is the lower one: it moves up
        m1 = np.where(up1, move, -move)
        m2 = np.where(up1, -move, move) * np.where(t > 0, 1.0, -1.0)  # back to p2's own allele
        for idx, m in ((j, m1), (j + lag, m2)):
            bigger = np.abs(m) > np.abs(shift[idx])
            shift[idx[bigger]] = m[bigger]
    return shift


_CONVERGED = 1e-12  # |copula covariance - target| at which a pair's Newton iteration stops (covariances are O(0.01-0.25))


def _ridge_for(ev: np.ndarray, c: np.ndarray, ridge: float, q_max: float) -> float:
    """Least ridge ``d >= ridge`` with ``q(d) = sum ev c^2 / (ev + d)^2 <= q_max``.

    Newton's method on ``phi(d) = q(d)^(-1/2) - q_max^(-1/2)``, increasing and concave in ``d``
    (the secular equation of trust-region methods; Mor\u00e9 & Sorensen 1983), started from ``ridge``
    where ``phi < 0``: the iterates rise monotonically to the root, so the last one is kept only
    once ``q <= q_max`` (nudged up by rounding if needed).
    """
    wt = ev * c * c  # (k,)

    def q(d: float) -> float:
        return float(np.sum(wt / (ev + d) ** 2))

    if q(ridge) <= q_max:
        return ridge
    d, target = ridge, q_max ** -0.5
    for _ in range(100):
        qd = q(d)
        if qd <= q_max:
            return d
        dq = -2.0 * float(np.sum(wt / (ev + d) ** 3))  # q'(d) < 0
        phi, dphi = qd ** -0.5 - target, -0.5 * qd ** -1.5 * dq  # phi < 0, phi' > 0
        step = -phi / dphi
        d = d + step if step > 1e-12 * (d + 1e-300) else d * (1.0 + 1e-9)
    return d


def banded_factor(resid: np.ndarray, kprev: np.ndarray, *, var_floor: float = 1e-2,
                  ridge: float = 1e-3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A sparse (banded) Cholesky factor whose process matches the residual band where it can.

    SNP by SNP, ``u_j = beta_j . u_{j-k..j-1} + s_j eps_j`` with ``beta_j = (S + d I)^-1 r_j``,
    ``S`` the *realised* correlation of the window (positive definite by construction) and ``r_j``
    the target correlations of ``u_j`` with it. ``d = ridge`` unless the explained variance
    ``beta_j S beta_j`` would exceed ``1 - var_floor`` (the band is not positive definite there, or
    SNPs are nearly collinear); then ``d`` is raised until it does not (a ridge regression of
    ``u_j`` on its window, which keeps the strongest correlations and drops inconsistent ones). The realised correlations ``S beta_j``
    are tracked exactly, so every ``u_j`` has unit variance whatever the target.

    Parameters
    ----------
    resid : float64, shape (V, w)
        ``resid[i, l-1]`` target correlation of ``u_i, u_{i+l}``.
    kprev : int, shape (V,)
    var_floor : float
        Least conditional variance of ``u_j`` (caps any correlation at ``sqrt(1 - var_floor)``).
    ridge : float
        Added to the window's diagonal when solving for ``beta_j``.

    Returns
    -------
    beta : float64, shape (V, w)
        ``beta[j, a-1]`` weight of ``u_{j-a}``.
    s : float64, shape (V,)
        Conditional standard deviations.
    realised : float64, shape (V, w)
        Correlations of the constructed process within the window.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):  # k x k problems: threads only add overhead
        return _banded_factor(resid, kprev, var_floor=var_floor, ridge=ridge)


def _banded_factor(resid: np.ndarray, kprev: np.ndarray, *, var_floor: float,
                   ridge: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    v, w = resid.shape
    beta = np.zeros((v, w))
    s = np.ones(v)
    real = np.zeros((v, w))
    last = None  # the previous SNP's ridge: a first guess for the next
    for j in range(v):
        k = int(kprev[j])
        if k == 0:
            continue
        idx = np.arange(j - k, j)  # (k,) ascending window
        lags = j - idx  # (k,) k..1
        r = resid[idx, lags - 1]  # (k,) target corr(u_idx, u_j)
        d = idx[None, :] - idx[:, None]  # (k, k) signed index difference
        lo = np.minimum(idx[:, None], idx[None, :])
        S = np.where(d == 0, 1.0, real[lo, np.abs(d) - 1])  # (k, k) realised window correlation
        b, last = _ridge_solve(S, r, ridge=ridge, q_max=1.0 - var_floor, start=last)  # (k,) = (S + d I)^-1 r
        sb = S @ b  # (k,) exact realised corr(u_window, u_j) for these weights
        q = float(b @ sb)  # variance explained by the window
        if q > 1.0 - var_floor:  # rounding only
            lam = math.sqrt((1.0 - var_floor) / q)
            b, sb, q = lam * b, lam * sb, 1.0 - var_floor
        beta[j, lags - 1] = b
        s[j] = math.sqrt(1.0 - q)
        real[idx, lags - 1] = sb
    return beta, s, real


def _ridge_solve(S: np.ndarray, r: np.ndarray, *, ridge: float, q_max: float,
                 start: float | None = None) -> tuple[np.ndarray, float]:
    """``(S + d I)^-1 r`` with the least ``d >= ridge`` that explains at most ``q_max`` of the variance, and ``d``.

    The common case (``d = ridge`` suffices) is one Cholesky solve. Otherwise Newton's method on the
    secular equation of :func:`_ridge_for`, with ``q(d) = b'Sb`` and ``q'(d) = -2 (Sb)'(S + d I)^-1 b``
    from Cholesky solves (a 64 x 64 factorisation is 15x cheaper than the eigendecomposition, and 7-9
    steps from ``ridge`` become 2-4 from ``start``). ``start`` (the previous SNP's ridge: neighbouring
    windows need similar ones) is a first guess: since the equation is concave, one Newton step from it
    lands at or below the root, and from there the iterates rise monotonically to it, so the least ``d``
    is found as from ``ridge``. The eigendecomposition of ``S`` (:func:`_ridge_for`) takes over if a
    factorisation fails. S : (k, k) PSD; r : (k,) -> (k,), float.
    """
    from scipy.linalg import lapack

    eye = np.eye(len(r))
    target = q_max ** -0.5

    def at(d: float) -> tuple | None:  # Cholesky factor, b, Sb, q at ridge d
        c, b, info = lapack.dposv(S + d * eye, r)
        if info:
            return None
        sb = S @ b
        return c, b, sb, float(b @ sb)

    def newton(d: float, got: tuple) -> float:  # one step on phi(d) = q^-1/2 - q_max^-1/2
        c, b, sb, q = got
        u, _ = lapack.dpotrs(c, b)  # (S + d I)^-1 b
        dphi = q ** -1.5 * float(sb @ u)  # -0.5 q^-1.5 q'(d)
        return d - (q ** -0.5 - target) / dphi if dphi > 0 else math.inf

    first = at(ridge)
    if first is not None and first[3] <= q_max:
        return first[1], ridge
    d, got = ridge, first
    if start is not None and start > ridge and first is not None:
        guess = at(start)
        if guess is not None:
            d = max(ridge, newton(start, guess))  # at or below the root
            got = first if d == ridge else at(d)
    for _ in range(100):
        if got is None or not math.isfinite(d):
            break
        if got[3] <= q_max:
            return got[1], d
        step = newton(d, got) - d
        d = d + step if step > 1e-12 * (d + 1e-300) else d * (1.0 + 1e-9)
        got = at(d)
    ev, vec = np.linalg.eigh(S)  # S = Q diag(ev) Q'
    ev = np.maximum(ev, 0.0)
    c = vec.T @ r  # (k,)
    d = _ridge_for(ev, c, ridge, q_max)
    return vec @ (c / (ev + d)), d  # (k,)


def sample_markov_gaussian(beta: np.ndarray, s: np.ndarray, kprev: np.ndarray, n: int, *,
                           rng: torch.Generator | None = None) -> torch.Tensor:
    """Draw ``n`` rows of the banded Markov Gaussian of :func:`banded_factor`:
    ``u_j = sum_{a=1..kprev[j]} beta[j, a-1] u_{j-a} + s_j eps_j`` with ``eps ~ N(0, I)`` (``u_j = eps_j``
    where ``kprev[j] = 0``).

    The recursion is a lower-triangular banded solve ``(I - B) u = s eps``; it runs in blocks of
    ``max(2 w, 32)`` SNPs, each a matrix product with the previous ``w`` columns and a triangular
    solve of the block (BLAS-3 over all rows at once), not SNP by SNP (100,000 SNPs x 170 rows, one
    thread: 2.2 s -> 0.7 s, of which 0.4 s is drawing ``eps``). ``eps`` is drawn as before, so a seed
    gives the same Gaussian to rounding (1e-15) and the same alleles.

    Returns
    -------
    float64, shape (n, V)
    """
    v, w = beta.shape
    eps = torch.randn(n, v, generator=rng, dtype=torch.float64)  # (n, V)
    kprev = np.minimum(np.asarray(kprev, dtype=np.int64), w)  # (V,)
    scale = np.where(kprev > 0, np.asarray(s, dtype=np.float64), 1.0)  # (V,) an unconstrained SNP is eps_j itself
    u = eps * torch.from_numpy(scale)  # (n, V): the right-hand side s_j eps_j
    if w == 0 or not kprev.any():
        return u
    bt = torch.from_numpy(np.ascontiguousarray(beta, dtype=np.float64))  # (V, w)
    ut = u.T.contiguous()  # (V, n): a block of SNPs is contiguous
    m = max(2 * w, 32)  # SNPs per block
    lag = torch.arange(m)[:, None] + w - torch.arange(w + m)[None, :]  # (m, w+m): lag of column c for row i
    zero = torch.zeros((), dtype=torch.float64)
    for j0 in range(0, v, m):
        j1 = min(j0 + m, v)
        b, lo = j1 - j0, max(0, j0 - w)
        lg = lag[:b, w - (j0 - lo): w + b]  # (b, j0-lo+b): lags of the previous w columns and the block's
        k = torch.from_numpy(kprev[j0:j1])[:, None]  # (b, 1)
        coef = torch.where((lg >= 1) & (lg <= k), bt[j0:j1].gather(1, (lg - 1).clamp(0, w - 1)), zero)  # (b, j0-lo+b)
        rhs = ut[j0:j1] + coef[:, : j0 - lo] @ ut[lo:j0] if j0 > lo else ut[j0:j1]  # (b, n)
        tri = torch.eye(b, dtype=torch.float64) - coef[:, j0 - lo:]  # (b, b) unit lower triangular
        ut[j0:j1] = torch.linalg.solve_triangular(tri, rhs, upper=False, unitriangular=True)  # (b, n)
    return ut.T  # (n, V)


def threshold_alleles(u: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """Alleles from standard-normal ``u`` with class marginals ``probs``: ``x = #{s : u > -a_s}``.

    u : float, shape (n, V); probs : float, shape (n, K, V) -> int8, shape (n, V)
    """
    a = _class_thresholds(probs)  # (n, K-1, V)  P(x >= s) = Phi(a_s) = P(u > -a_s)
    return (u.double()[:, None, :] > -a).sum(1).to(torch.int8)


def _label_groups(labels: torch.Tensor | np.ndarray | None, b: int) -> list[tuple[int | None, np.ndarray]]:
    if labels is None:
        return [(None, np.arange(b))]
    lab = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels).astype(np.int64)
    return [(int(k), np.flatnonzero(lab == k)) for k in np.unique(lab)]


def _as_probs(probs: torch.Tensor) -> torch.Tensor:
    """(B, V) ALT probabilities -> (B, 2, V); (B, K, V) passes through."""
    if probs.ndim == 2:
        p = probs.double().clamp(0, 1)
        return torch.stack([1 - p, p], dim=1)
    if probs.ndim != 3:
        raise InputError(f"probabilities must have shape (B, V) or (B, K, V), got {tuple(probs.shape)}")
    return probs


def copula_sample(
    probs: torch.Tensor,
    prior: CorrelationPrior,
    labels: torch.Tensor | np.ndarray | None = None,
    *,
    rng: torch.Generator | None = None,
    config: CorrGuideConfig | None = None,
    chrom: Sequence | None = None,
    pos: Sequence | None = None,
    cache: dict | None = None,
    report: Callable[[str], None] | None = None,
) -> torch.Tensor:
    """Draw alleles SNP by SNP so that within-label LD matches the prior (marginals kept exactly).

    Parameters
    ----------
    probs : float, shape (B, V) or (B, K, V)
        ALT probabilities (haplotypes) or class probabilities (K=2 haplotypes, K=3 genotypes).
    prior : CorrelationPrior
    labels : int, shape (B,), optional
        Label index per row (``len(prior.labels)`` or ``None``: label-weighted mean band).
    rng : torch.Generator, optional
        The only randomness (the calibration rows are chosen deterministically).
    config : CorrGuideConfig, optional
    chrom, pos : array_like, shape (V,), optional
        Variant chromosomes and positions: pairs on different chromosomes or more than
        ``config.max_bp`` apart are left unconstrained.
    report : callable, optional
        Called with a line of progress while a label's factor is solved (minutes at 10^4+ SNPs).
    cache : dict, optional
        Label -> banded factor. When given, a label's factor is solved from its calibration rows
        in the first batch that has them and reused by later batches (the decoder's distribution
        per label does not change between batches), which makes streaming large cohorts cheap.

    Returns
    -------
    int8, shape (B, V)
    """
    cfg = config or CorrGuideConfig()
    p = _as_probs(probs).detach().cpu().double()  # (B, K, V)
    b, _, v = p.shape
    if v != prior.n_variants:
        raise InputError(f"the prior was fitted on {prior.n_variants} SNPs but the decoder gives {v}")
    w = min(cfg.window, prior.window)
    kprev = previous_counts(v, w, chrom=chrom, pos=pos, max_bp=cfg.max_bp if pos is not None else None)
    out = torch.empty(b, v, dtype=torch.int8)
    for lab, rows in _label_groups(labels, b):
        if not len(rows):
            continue
        pr = p[rows]  # (n, K, V)
        if cache is not None and lab in cache:
            beta, s, mix = cache[lab]  # the label's factor and its marginal mixing (None: none)
        else:
            beta, s, mix = _label_factor(pr, prior.band(lab)[:, :w], kprev, cfg,
                                         None if report is None else (lambda lag, width, lab=lab: report(
                                             f"LD factor of label {lab}: {lag}/{width} lags")))
            if cache is not None and len(rows) >= cfg.calib_rows:
                cache[lab] = (beta, s, mix)
        u = sample_markov_gaussian(beta, s, kprev, len(rows), rng=rng)  # (n, V)
        out[torch.from_numpy(rows)] = threshold_alleles(u, pr if mix is None else mix_marginals(pr, *mix))
    return out


def _label_factor(pr: torch.Tensor, band: np.ndarray, kprev: np.ndarray, cfg: CorrGuideConfig,
                  told: Callable[[int, int], None] | None) -> tuple[np.ndarray, np.ndarray, tuple | None]:
    """One label's copula: ``(beta, s, mix)`` from its evenly spaced calibration rows.

    ``mix = (lam, shift)`` (:func:`reach_weights`, :func:`frequency_shift`; None when ``cfg.reach``
    is off or every pair is within reach) mixes the marginals towards the label's mean where the prior
    is out of the copula's reach (:func:`mix_marginals`); the residuals are solved for the mixed
    marginals, with the PD guards relaxed to ``cfg.reach_floor`` when every SNP is in a sparse band
    (a panel that is dense in places keeps the default guards everywhere). pr : float, shape (n, K, V); band : shape (V, w).
    """
    calib = pr[np.unique(np.linspace(0, len(pr) - 1, min(cfg.calib_rows, len(pr))).round().astype(int))]
    mix, r_max, var_floor, ridge = None, 0.995, cfg.var_floor, 1e-3
    if _reach_on(cfg):  # near-perfect LD needs |R| close to 1 (the Gaussian copula's r -> 1 only as R -> 1)
        lam = reach_weights(calib, band, kprev, r_cap=cfg.reach_r, step=cfg.reach_step,
                            max_partners=cfg.reach_partners, quad_nodes=cfg.quad_nodes)
        if lam.any():
            shift = None
            if cfg.reach_af > 0 and pr.shape[1] == 2:
                shift = frequency_shift(pr[:, 1].mean(0).numpy(), band, kprev, lam, cap=cfg.reach_af)
            mix = (lam, shift)
            calib = mix_marginals(calib, *mix)
            partners = constrained_partners(kprev, band.shape[1])  # (V,)
            if (partners <= cfg.reach_partners).all():  # relaxed guards only where no dense band shares the factor
                r_max, var_floor, ridge = math.sqrt(1.0 - cfg.reach_floor), cfg.reach_floor, min(ridge, cfg.reach_floor)
    resid = solve_residual_band(calib, band, kprev, quad_nodes=cfg.quad_nodes, newton_iters=cfg.newton_iters,
                                small=cfg.small, r_max=r_max, report=told)  # (V, w)
    beta, s, _ = banded_factor(resid, kprev, var_floor=var_floor, ridge=ridge)
    return beta, s, mix


def _reach_on(cfg: CorrGuideConfig) -> bool:
    """Whether marginal mixing (:func:`reach_weights`) is on for this decoding (``cfg.reach``)."""
    return cfg.reach == "always" or (cfg.reach == "copula" and cfg.method == "copula")


def dosage_moments(probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Expected dosage and expected squared dosage of each row and SNP.

    probs : float, shape (n, K, V) -> (m, e2) : float, shape (n, V) each
    """
    vals = torch.arange(probs.shape[1], dtype=probs.dtype, device=probs.device)
    return (probs * vals[None, :, None]).sum(1), (probs * (vals ** 2)[None, :, None]).sum(1)


def batch_band_correlation(probs: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Expected correlations of independently drawn alleles in a batch (differentiable).

    probs : float, shape (n, K, V) -> (corr : shape (V, window), mean dosage : shape (V,));
    see :func:`band_correlation_from_moments`.
    """
    return band_correlation_from_moments(*dosage_moments(probs), window)


def band_correlation_from_moments(m: torch.Tensor, e2: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Band correlations of a batch from its rows' dosage moments (differentiable).

    ``corr[j, l-1]`` is the correlation of SNPs ``j`` and ``j+l`` over rows and allele draws: the
    covariance of the rows' expected dosages over the product of the mixture sds (0 where
    ``j+l >= V``). Computed block by block as matrix products of ``window`` SNPs against the next
    ``2 window``: ``O(n V window)`` time, ``O(V window)`` memory.

    m, e2 : float, shape (n, V) (:func:`dosage_moments`) -> (corr : shape (V, window), mean dosage : shape (V,))
    """
    mbar = m.mean(0)
    var = (e2.mean(0) - mbar ** 2).clamp_min(1e-8)  # (V,)
    mc = m - mbar  # (n, V)
    n, v = m.shape
    w = int(window)
    if w <= _LAG_LOOP_MAX:
        return _band_by_lag(mc, var, w), mbar
    padded = torch.nn.functional.pad(mc, (0, 2 * w))  # (n, V + 2w)
    var_padded = torch.nn.functional.pad(var, (0, 2 * w), value=1.0)  # (V + 2w,)
    blocks = []
    for start in range(0, v, w):
        left = mc[:, start:start + w]  # (n, b)
        b = left.shape[1]
        cov = left.T @ padded[:, start:start + 2 * w] / n  # (b, 2w), contiguous: SNP start+a with SNP start+c
        # views, not gathers (whose backward is a scatter-add that is not deterministic on CPU threads):
        band = cov.as_strided((b, w), (2 * w + 1, 1), 1)  # (b, w): band[a, l-1] = cov[a, a+l]
        sd2 = var[start:start + b, None] * var_padded[start + 1:start + b + w].unfold(0, w, 1)  # (b, w)
        blocks.append(band / sd2.sqrt())
    lags = torch.arange(1, w + 1, device=m.device)  # (w,)
    inside = (torch.arange(v, device=m.device)[:, None] + lags[None]) < v  # (V, w)
    return torch.cat(blocks) * inside, mbar


def _band_by_lag(mc: torch.Tensor, var: torch.Tensor, w: int) -> torch.Tensor:
    """:func:`band_correlation_from_moments` for narrow bands: one elementwise pass per lag.

    For a few lags this avoids the ``V / w`` tiny matrix products of the block form (thousands of
    Python-level operations per call at ``w = 4``); the values are the same. Slices are views, so
    the backward pass is deterministic.

    mc : float, shape (n, V) centred dosages; var : float, shape (V,) -> float, shape (V, w)
    """
    n, v = mc.shape
    cols = []
    for lag in range(1, w + 1):
        if lag >= v:
            cols.append(mc.new_zeros(v))
            continue
        cov = (mc[:, : v - lag] * mc[:, lag:]).sum(0) / n  # (V - lag,)
        corr = cov / (var[: v - lag] * var[lag:]).sqrt()  # (V - lag,)
        cols.append(torch.nn.functional.pad(corr, (0, lag)))  # (V,) 0 where j + lag >= V
    return torch.stack(cols, dim=1)  # (V, w)


_LAG_LOOP_MAX = 16  # bands up to this many lags: elementwise per lag; wider: blocks of matrix products


def latent_guidance(
    decode: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor],
    z: torch.Tensor,
    labels: torch.Tensor | None,
    prior: CorrelationPrior,
    *,
    config: CorrGuideConfig | None = None,
    chrom: Sequence | None = None,
    pos: Sequence | None = None,
) -> torch.Tensor:
    """Gradient steps on latents that pull the batch's expected LD towards the prior.

    The loss, per label present in the batch, is the mean squared difference between the expected
    band correlation of independent draws (:func:`batch_band_correlation`) and the prior over pairs
    within ``latent_window`` positions and ``max_bp``, plus
    ``latent_af_weight`` times the squared change of the label's mean dosage and
    ``latent_z_weight`` times the mean squared change of the latents. Adam, ``latent_steps`` steps.

    The loss depends on the decoder only through each row's dosage moments, so a batch larger
    than ``latent_chunk_cells`` rows x SNPs takes the loss's gradient with respect to the moments
    first and back-propagates it through the decoder chunk by chunk: memory stays at one chunk's
    decoder graph (one extra decoder pass per step), and the result equals the one-graph step.

    Parameters
    ----------
    decode : callable(z, labels) -> logits, float shape (B, K, V)
    z : float, shape (B, C, T)
    labels : int, shape (B,), optional

    Returns
    -------
    float, shape (B, C, T): the guided latents (detached).
    """
    cfg = config or CorrGuideConfig()
    if cfg.latent_steps <= 0:
        return z
    w = min(cfg.latent_window, prior.window)
    groups = [(lab, torch.from_numpy(rows)) for lab, rows in _label_groups(labels, z.shape[0]) if len(rows) > 1]
    if not groups:  # no label with two rows: nothing to correlate, the latents stay as drawn
        return z.detach()
    v = prior.n_variants
    per_chunk = max(1, cfg.latent_chunk_cells // max(v, 1))  # rows per decoder graph
    chunks = [slice(s, s + per_chunk) for s in range(0, z.shape[0], per_chunk)]

    def moments(latents: torch.Tensor, part: slice) -> tuple[torch.Tensor, torch.Tensor]:  # -> (rows, V) each
        y = None if labels is None else labels[part]
        return dosage_moments(torch.softmax(decode(latents[part], y).float(), dim=1))

    with torch.no_grad():
        m0 = torch.cat([moments(z, c)[0] for c in chunks])  # (B, V) expected dosages of the drawn latents
    if m0.shape[1] != v:
        raise InputError(f"the prior was fitted on {v} SNPs but the decoder gives {m0.shape[1]}")
    anchors = {lab: m0[rows].mean(0) for lab, rows in groups}  # (V,) each: the allele frequencies to keep
    kprev = previous_counts(v, w, chrom=chrom, pos=pos, max_bp=cfg.max_bp if pos is not None else None)
    w = max(1, min(w, int(kprev.max(initial=0))))  # lags past the widest constrained one carry no loss
    mask = torch.from_numpy(usable_pairs(kprev, w).astype(np.float32))  # (V, w) pairs (j, j+l) at row j
    targets = {lab: torch.from_numpy(prior.band(lab)[:, :w]).float() for lab, _ in groups}
    denominator = mask.sum().clamp_min(1)

    def band_loss(m: torch.Tensor, e2: torch.Tensor) -> torch.Tensor:  # (B, V) moments -> scalar
        loss = m.new_zeros(())
        for lab, rows in groups:
            corr, mbar = band_correlation_from_moments(m[rows], e2[rows], w)
            loss = loss + ((corr - targets[lab]).pow(2) * mask).sum() / denominator
            loss = loss + cfg.latent_af_weight * (mbar - anchors[lab]).pow(2).mean()
        return loss

    z0 = z.detach()
    zz = z0.clone().requires_grad_(True)
    opt = torch.optim.Adam([zz], lr=cfg.latent_lr)
    for _ in range(cfg.latent_steps):
        opt.zero_grad()
        with torch.enable_grad():
            _accumulate_gradient(zz, z0, chunks, moments, band_loss, z_weight=cfg.latent_z_weight)
        opt.step()
    return zz.detach()


def _accumulate_gradient(zz: torch.Tensor, z0: torch.Tensor, chunks: list[slice], moments: Callable,
                         band_loss: Callable, *, z_weight: float) -> None:
    """Add the gradient of ``band_loss + z_weight * mean((zz - z0)^2)`` to ``zz.grad``.

    With several chunks the loss sees the decoder only through each row's moments: take its
    gradient with respect to them, then back-propagate chunk by chunk (vector-Jacobian products),
    so memory is one chunk's decoder graph whatever the batch size.
    """
    if len(chunks) == 1:  # the whole batch in one graph
        (band_loss(*moments(zz, chunks[0])) + z_weight * (zz - z0).pow(2).mean()).backward()
        return
    with torch.no_grad():
        parts = [moments(zz, c) for c in chunks]
    m = torch.cat([p[0] for p in parts]).requires_grad_(True)  # (B, V)
    e2 = torch.cat([p[1] for p in parts]).requires_grad_(True)  # (B, V)
    g_m, g_e2 = torch.autograd.grad(band_loss(m, e2), (m, e2))
    for c in chunks:
        mc, e2c = moments(zz, c)
        ((mc * g_m[c]).sum() + (e2c * g_e2[c]).sum()).backward()
    (z_weight * (zz - z0).pow(2).mean()).backward()


def auto_method(prior: CorrelationPrior, config: CorrGuideConfig, *, chrom: Sequence | None = None,
                pos: Sequence | None = None) -> str:
    """The decoding ``"auto"`` means for this prior: ``"copula"`` on a sparse panel, else ``"latent+copula"``.

    Sparse: every SNP has at most ``config.reach_partners`` constrained partners in the copula band
    (SNPs far apart, e.g. ancestry-informative panels). There the copula with marginal mixing
    (:func:`reach_weights`) reaches the prior's LD as latent guidance does, at a fraction of the cost
    (benchmarks/RESULTS.md, "Copula-only decoding"); in a dense band it does not, and the latent
    has to carry the LD.
    """
    v = prior.n_variants
    dense = dense_panel(["1"] * v if chrom is None else chrom, np.arange(v) if pos is None else pos,
                        window=min(config.window, prior.window), max_bp=config.max_bp if pos is not None else None,
                        max_partners=config.reach_partners)
    return "latent+copula" if dense else "copula"


def guided_decode(
    decode: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor],
    z: torch.Tensor,
    labels: torch.Tensor | None,
    prior: CorrelationPrior | None,
    *,
    rng: torch.Generator | None = None,
    config: CorrGuideConfig | None = None,
    chrom: Sequence | None = None,
    pos: Sequence | None = None,
    temperature: float = 1.0,
    cache: dict | None = None,
    report: Callable[[str], None] | None = None,
) -> torch.Tensor:
    """Latents -> alleles with correlation guidance (``config.method``); ``none`` is plain decoding.

    ``report`` receives progress lines of the slow stages (latent guidance, the copula's setup).

    Parameters
    ----------
    decode : callable(z, labels) -> logits, float shape (B, K, V)
        e.g. ``vae.decode`` (latents already divided by the latent scale).
    z : float, shape (B, C, T)
    labels : int, shape (B,), optional
    prior : CorrelationPrior or None
        Required unless ``method == "none"``.
    rng : torch.Generator, optional
        Randomness of the draw (and nothing else), so vanilla and guided draws are reproducible.
    cache : dict, optional
        Passed to :func:`copula_sample` (reuse per-label factors across batches).

    Returns
    -------
    int8, shape (B, V) on the CPU
    """
    from genosynth.models.vae import sample_alleles

    cfg = config or CorrGuideConfig()
    if cfg.method != "none" and prior is None:
        raise InputError(
            f"--corr-guidance {cfg.method} needs a correlation prior in the checkpoint; retrain, or use --corr-guidance none"
        )
    if cfg.method in ("latent", "latent+copula"):
        if report is not None:
            report(f"latent guidance: {cfg.latent_steps} steps")
        z = latent_guidance(decode, z, labels, prior, config=cfg, chrom=chrom, pos=pos)
    with torch.no_grad():
        logits = decode(z, labels).float().cpu() / temperature  # (B, K, V)
    if cfg.method in ("none", "latent"):
        return sample_alleles(logits, rng=rng)
    probs = torch.softmax(logits.double(), dim=1)  # (B, K, V)
    return copula_sample(probs, prior, labels, rng=rng, config=cfg, chrom=chrom, pos=pos, cache=cache, report=report)
