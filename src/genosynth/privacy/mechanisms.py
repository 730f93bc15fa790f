"""Privacy mechanisms on private genotypes and latents.

Every function here that sees private data returns only a noised statistic, never an un-noised
per-person value or aggregate (the non-private twins, used when no budget is set, are named as
such). Each mechanism takes an optional :class:`~genosynth.privacy.accountant.PrivacyAccountant`
and records itself there, so a release is never left out of the total.

Neighbouring relation: zero-out (one person's record replaced by a null record that contributes
nothing: zero clipped contribution, zero latent). ``n`` is public. See ``docs/privacy.md``.

References
----------
.. [1] C. Dwork, A. Roth, "The Algorithmic Foundations of Differential Privacy", 2014 (Gaussian
   mechanism, exponential mechanism).
.. [2] D. Durfee, R. Rogers, "Practical Differentially Private Top-k Selection with
   Pay-what-you-get Composition", NeurIPS 2019 (one-shot Gumbel top-k = peeling exponential
   mechanism).
.. [3] M. Cesar, R. Rogers, "Bounding, Concentrating, and Truncating: Unifying Privacy Loss
   Composition for Data Analytics", ALT 2021 (exponential mechanism is ε²/8-zCDP).
.. [4] H. Wang et al., "dp-promise: Differentially Private Diffusion Probabilistic Models for
   Image Synthesis", USENIX Security 2024 (forward-process noise as a Gaussian mechanism).
.. [5] G. Daras, A. Dimakis, C. Daskalakis, "Consistent Diffusion Meets Tweedie: Training Exact
   Ambient Diffusion Models with Noisy Data", ICML 2024 (denoising from noisy data at higher
   noise levels).
.. [6] M. Gavish, D. L. Donoho, "Optimal Shrinkage of Singular Values", IEEE Transactions on
   Information Theory 63(4), 2297-2312, 2017 (low-rank denoising of a Gaussian release with a
   known noise level).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING
import numpy as np
import torch
from genosynth.errors import InputError, PrivacyError
from genosynth.stats.frequency import as_genotypes
if TYPE_CHECKING:  # pragma: no cover
    from genosynth.privacy.accountant import PrivacyAccountant


__all__ = [
    "clip_rows",
    "gaussian_mechanism",
    "release_stage1_latents",
    "stage1_training_pair",
    "stage1_eps_to_standard_eps",
    "denoise_low_rank",
    "clipped_association_scores",
    "noisy_top_k",
]


def _check_positive(value: float, what: str, fix: str) -> float:
    value = float(value)
    if not (value > 0 and math.isfinite(value)):
        raise PrivacyError(f"{what}={value} must be positive and finite; {fix}")
    return value




def _numpy_normal(rng: np.random.Generator | None, scale: float, size) -> np.ndarray:
    if rng is None:
        raise PrivacyError(
            "a private release needs an explicit random generator; pass rng=np.random.default_rng(seed) "
            "(seed recorded in provenance, never derived from the data)"
        )
    return rng.normal(0.0, scale, size=size)


def clip_rows(x, max_norm: float):
    """Scale each row (person) to L2 norm at most ``max_norm``.

    Parameters
    ----------
    x : numpy.ndarray or torch.Tensor, float, shape (N, ...)
        One row per person; all trailing dimensions form that person's vector (e.g. a latent of
        shape (N, C, L) is clipped on its flattened C*L entries).
    max_norm : float
        ``C > 0``; ``inf`` leaves rows unchanged.

    Returns
    -------
    same type as ``x``, shape (N, ...)
        ``x_i · min(1, C / ‖x_i‖₂)``. Rows already inside the ball are returned bit-identical.
    """
    if not (max_norm > 0):
        raise PrivacyError(f"max_norm={max_norm} must be > 0 (use inf to disable clipping)")
    if isinstance(x, torch.Tensor):
        flat = x.reshape(x.shape[0], -1)  # (N, D)
        norms = torch.linalg.vector_norm(flat, dim=1)  # (N,)
        scale = torch.clamp(max_norm / torch.clamp(norms, min=torch.finfo(flat.dtype).tiny), max=1.0)
        return x * scale.reshape((-1,) + (1,) * (x.ndim - 1)).to(x.dtype)
    arr = np.asarray(x, dtype=np.float64)
    flat = arr.reshape(arr.shape[0], -1)  # (N, D)
    norms = np.linalg.norm(flat, axis=1)  # (N,)
    with np.errstate(divide="ignore"):
        scale = np.minimum(1.0, max_norm / np.maximum(norms, np.finfo(np.float64).tiny))
    return arr * scale.reshape((-1,) + (1,) * (arr.ndim - 1))


def gaussian_mechanism(
    value,
    *,
    sensitivity: float,
    noise_multiplier: float,
    rng,
    accountant: "PrivacyAccountant | None" = None,
    name: str | None = None,
):
    """Release ``value + N(0, (z Δ)²)`` elementwise.

    Parameters
    ----------
    value : numpy.ndarray or torch.Tensor, float
        A statistic whose L2 sensitivity (change when one person is replaced by the null record)
        is at most ``sensitivity``.
    sensitivity : float
        ``Δ``, L2 sensitivity.
    noise_multiplier : float
        ``z = σ / Δ``.
    rng : numpy.random.Generator or torch.Generator
        Randomness (matching the type of ``value``).
    accountant : PrivacyAccountant, optional
        Where to record the release (as a ``gaussian`` event called ``name``).
    name : str, optional
        Event name; required with ``accountant``.

    Returns
    -------
    same type as ``value``
        The noised value.
    """
    delta_ = _check_positive(sensitivity, "sensitivity", "bound each person's contribution by clipping")
    z = _check_positive(noise_multiplier, "noise_multiplier", "calibrate it with plan_for_training()/calibrate_noise()")
    sigma = z * delta_
    if isinstance(value, torch.Tensor):
        if not isinstance(rng, torch.Generator):
            raise PrivacyError("pass a torch.Generator for a torch value (seed recorded in provenance)")
        noise = torch.randn(value.shape, generator=rng, dtype=value.dtype, device=rng.device)
        out = value + sigma * noise.to(value.device)
    else:
        arr = np.asarray(value, dtype=np.float64)
        out = arr + _numpy_normal(rng, sigma, arr.shape)
    if accountant is not None:
        if not name:
            raise ValueError("name the release (e.g. 'correlation_prior') when passing an accountant")
        accountant.add_gaussian(name, noise_multiplier=z)
    return out


def release_stage1_latents(
    latents: torch.Tensor,
    *,
    latent_clip: float,
    alpha_bar: float,
    rng: torch.Generator,
    accountant: "PrivacyAccountant | None" = None,
    name: str = "diffusion/stage1",
    sample_rate: float = 1.0,
) -> torch.Tensor:
    """Release noisy latents ``y = sqrt(ᾱ) clip_C(z) + sqrt(1-ᾱ) ε`` for stage 1.

    This is the only place stage 1 touches private latents. Each row is one Gaussian mechanism
    with noise multiplier ``sqrt(1-ᾱ)/(sqrt(ᾱ) C)`` against the null latent ``0``
    (:func:`~genosynth.privacy.accountant.stage1_noise_multiplier`). Every stage-1 training pair
    must then be computed from ``y`` alone, with :func:`stage1_training_pair`; that makes all of
    stage 1 post-processing of this release, however many epochs it runs.

    Parameters
    ----------
    latents : torch.Tensor, float, shape (N, C, L)
        Per-person latents from an encoder that is public or already DP (its release accounted).
        With ``sample_rate < 1`` pass only the Poisson-sampled rows.
    latent_clip : float
        ``C``: every latent is clipped to L2 norm ``C`` before noising (enforced here).
    alpha_bar : float
        ``ᾱ`` of the release level, ``alphas_cumprod[S - 1]`` for a stage split ``S``.
    rng : torch.Generator
        Noise source.
    accountant : PrivacyAccountant, optional
        Records one ``stage1`` release named ``name``.
    sample_rate : float
        Poisson rate with which ``latents`` were sampled (1 = everyone).

    Returns
    -------
    torch.Tensor, float, shape (N, C, L)
        The released noisy latents.
    """
    if not (0.0 < alpha_bar < 1.0):
        raise PrivacyError(f"alpha_bar={alpha_bar} must lie in (0, 1); pass alphas_cumprod[S-1]")
    _check_positive(latent_clip, "latent_clip", "pass --latent-clip (e.g. the median latent norm)")
    clipped = clip_rows(latents, latent_clip)  # (N, C, L)
    noise = torch.randn(latents.shape, generator=rng, dtype=latents.dtype, device=rng.device)
    y = math.sqrt(alpha_bar) * clipped + math.sqrt(1.0 - alpha_bar) * noise.to(latents.device)  # (N, C, L)
    if accountant is not None:
        accountant.add_stage1(name, latent_clip=latent_clip, alpha_bar=alpha_bar, sample_rate=sample_rate)
    return y


def _gather(a: torch.Tensor, t: torch.Tensor, ndim: int) -> torch.Tensor:
    return a.to(torch.float64)[t].reshape((-1,) + (1,) * (ndim - 1))


def stage1_training_pair(
    released: torch.Tensor,
    t: torch.Tensor,
    *,
    alphas_cumprod: torch.Tensor,
    release_step: int,
    rng: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise a released latent further to timestep ``t > release_step`` (ambient training pair).

    With ``r = ᾱ_t / ᾱ_s`` (``s = release_step``), ``x_t = sqrt(r) y + sqrt(1-r) ε'`` has exactly
    the forward-process marginal at ``t``; the denoiser is trained to predict ``ε'`` from
    ``(x_t, t)``. Both are functions of the released ``y`` and fresh noise, so training on them is
    post-processing. Convert the prediction to the usual ε-prediction with
    :func:`stage1_eps_to_standard_eps` (Daras et al. 2024 [5]_).

    Parameters
    ----------
    released : torch.Tensor, float, shape (B, C, L)
        Rows of :func:`release_stage1_latents`.
    t : torch.Tensor, int64, shape (B,)
        Timesteps, each ``> release_step``.
    alphas_cumprod : torch.Tensor, float, shape (T,)
    release_step : int
        ``S - 1``, the index whose ``ᾱ`` was used for the release.

    Returns
    -------
    x_t : torch.Tensor, shape (B, C, L)
    eps_target : torch.Tensor, shape (B, C, L)
        ``ε'``, the regression target.
    """
    if (t <= release_step).any():
        raise PrivacyError(
            f"stage-1 timesteps must exceed the release step {release_step}; sample t in "
            f"[{release_step + 1}, T) (smaller t belong to stage 2, trained with DP-SGD)"
        )
    ab = torch.as_tensor(alphas_cumprod)
    r = (_gather(ab, t, released.ndim) / float(ab[release_step])).to(released.dtype)  # (B, 1, 1)
    eps = torch.randn(released.shape, generator=rng, dtype=released.dtype,
                      device=rng.device if rng is not None else released.device).to(released.device)
    x_t = torch.sqrt(r) * released + torch.sqrt(1.0 - r) * eps  # (B, C, L)
    return x_t, eps


def stage1_eps_to_standard_eps(
    eps_prime: torch.Tensor,
    x_t: torch.Tensor,
    t: torch.Tensor,
    *,
    alphas_cumprod: torch.Tensor,
    release_step: int,
) -> torch.Tensor:
    """Turn a prediction of ``ε'`` (noise relative to the release level) into the usual ε.

    With ``s = release_step``, the optimal ``ε'`` predictor gives ``E[y | x_t]`` with
    ``y = x_s``, and for the forward process

    ``E[x_s | x_t] = a E[x_0 | x_t] + b x_t``,  ``b = (1-ᾱ_s) sqrt(ᾱ_t/ᾱ_s) / (1-ᾱ_t)``,
    ``a = (ᾱ_s - ᾱ_t) / (sqrt(ᾱ_s) (1-ᾱ_t))``,

    so ``E[x_0 | x_t]`` and ``E[ε | x_t] = (x_t - sqrt(ᾱ_t) E[x_0|x_t]) / sqrt(1-ᾱ_t)`` follow exactly.

    Parameters
    ----------
    eps_prime, x_t : torch.Tensor, float, shape (B, C, L)
    t : torch.Tensor, int64, shape (B,), each ``> release_step``

    Returns
    -------
    torch.Tensor, float, shape (B, C, L)
        The standard ε-prediction at ``t``.
    """
    ab = torch.as_tensor(alphas_cumprod, dtype=torch.float64)
    a_s = float(ab[release_step])
    a_t = _gather(ab, t, x_t.ndim)  # (B, 1, 1)
    r = a_t / a_s
    x = x_t.to(torch.float64)
    x_s_hat = (x - torch.sqrt(1 - r) * eps_prime.to(torch.float64)) / torch.sqrt(r)
    b = (1 - a_s) * torch.sqrt(r) / (1 - a_t)
    a = (a_s - a_t) / (math.sqrt(a_s) * (1 - a_t))
    x0_hat = (x_s_hat - b * x) / a
    return ((x - torch.sqrt(a_t) * x0_hat) / torch.sqrt(1 - a_t)).to(x_t.dtype)


def denoise_low_rank(noisy, *, noise_sd: float) -> tuple[np.ndarray, int]:
    """Low-rank estimate of a matrix released with i.i.d. Gaussian noise of known scale.

    Pure post-processing: the result is a function of the noisy release and of the public noise
    scale ``noise_sd = z Δ`` only, so it costs no privacy budget (nothing here touches private
    data). Each singular value ``s`` of the ``m × n`` release (``m ≤ n`` after transposing,
    ``β = m / n``) is replaced by Gavish & Donoho's optimal shrinker for Frobenius loss with known
    noise level [6]_: with ``y = s / (σ sqrt(n))``,

        ``η(y) = sqrt((y² - β - 1)² - 4β) / y`` if ``y > 1 + sqrt(β)``, else 0,

    and the shrunk value is ``σ sqrt(n) η(y)``. Components below the noise edge
    ``σ (sqrt(m) + sqrt(n))`` are dropped and the ones above it are shrunk by the amount the noise
    inflated them; when the signal lives in a few directions (e.g. per-population allele
    frequencies, driven by a few ancestral components) this removes most of the noise, which a
    per-row shrinkage cannot do.

    Parameters
    ----------
    noisy : array_like, float, shape (m, n)
        The released matrix (signal + ``N(0, noise_sd²)`` in every entry, independently).
    noise_sd : float
        ``σ``, the standard deviation of the noise in each entry (public: ``z Δ``).

    Returns
    -------
    estimate : numpy.ndarray, float64, shape (m, n)
    rank : int
        Number of singular values kept.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> truth = rng.normal(size=(20, 2)) @ rng.normal(size=(2, 300)) * 3  # rank 2
    >>> est, rank = denoise_low_rank(truth + rng.normal(size=truth.shape), noise_sd=1.0)
    >>> rank, bool(np.abs(est - truth).mean() < 0.3)
    (2, True)
    """
    x = np.asarray(noisy, dtype=np.float64)
    if x.ndim != 2 or min(x.shape) < 1:
        raise InputError(f"denoise_low_rank needs a 2-d matrix, got shape {x.shape}")
    sigma = _check_positive(noise_sd, "noise_sd", "pass the release's noise standard deviation (z x sensitivity)")
    flip = x.shape[0] > x.shape[1]
    a = x.T if flip else x  # (m, n), m <= n
    m, n = a.shape
    beta = m / n
    u, s, vt = np.linalg.svd(a, full_matrices=False)  # (m, m), (m,), (m, n)
    y = s / (sigma * math.sqrt(n))
    eta = np.sqrt(np.maximum((y ** 2 - beta - 1.0) ** 2 - 4.0 * beta, 0.0)) / np.maximum(y, 1e-300)
    shrunk = np.where(y > 1.0 + math.sqrt(beta), eta * sigma * math.sqrt(n), 0.0)  # (m,)
    est = (u * shrunk) @ vt  # (m, n)
    return (est.T if flip else est), int((shrunk > 0).sum())


def clipped_association_scores(
    genotypes,
    phenotype,
    *,
    genotype_center,
    phenotype_center: float,
    clip: float,
) -> tuple[np.ndarray, float]:
    """Association scores with bounded per-person influence, for private SNP selection.

    ``score_j = |Σ_i clip_[-c, c]((g_ij - m_j)(y_i - ȳ))|`` with public centring values ``m`` (e.g.
    ``2 p`` from a reference panel or DP frequencies) and ``ȳ`` (e.g. 0.5 for a case/control trait,
    or a DP mean). Replacing one person by the null record (contribution 0) moves every score by
    at most ``c``: the ℓ∞ sensitivity, which is what the exponential mechanism needs. The score is
    the (unnormalised) covariance numerator of the allelic trend test.

    Parameters
    ----------
    genotypes : array_like, float, shape (N, V)
    phenotype : array_like, float, shape (N,)
        No missing values (drop those people first; which people have a phenotype is public only
        if the study design makes it so).
    genotype_center : array_like, shape (V,) or scalar
    phenotype_center : float
    clip : float
        ``c``, bound on each person's contribution to each score.

    Returns
    -------
    scores : numpy.ndarray, float64, shape (V,)
        Private; pass them only to :func:`noisy_top_k`, never log or store them.
    sensitivity : float
        ``c``.
    """
    g = as_genotypes(genotypes)
    y = np.asarray(phenotype, dtype=np.float64)
    if y.shape != (g.shape[0],) or np.isnan(y).any():
        raise InputError("phenotype must have one non-missing value per person; drop people without one")
    c = _check_positive(clip, "clip", "pass the per-person contribution bound, e.g. 1.0")
    contrib = (g - np.broadcast_to(np.asarray(genotype_center, dtype=np.float64), (g.shape[1],))) * (
        y - float(phenotype_center)
    )[:, None]  # (N, V)
    return np.abs(np.clip(contrib, -c, c).sum(axis=0)), c


def noisy_top_k(
    scores,
    k: int,
    *,
    sensitivity: float,
    noise_multiplier: float,
    rng: np.random.Generator,
    accountant: "PrivacyAccountant | None" = None,
    name: str = "snp_selection",
) -> np.ndarray:
    """Private top-``k`` indices by one-shot Gumbel noise (Durfee & Rogers 2019).

    Adds independent Gumbel noise of scale ``b = z Δ`` to every score and returns the indices of
    the ``k`` largest noisy scores, in order. This has the same output distribution as ``k``
    rounds of the exponential mechanism without replacement (peeling), each sampling
    ``∝ exp(u / b) = exp(ε₀ u / (2Δ))`` with ``ε₀ = 2/z``: each round is ``ε₀``-DP and, having
    bounded range ``ε₀``, ``ε₀²/8``-zCDP (Cesar & Rogers 2021), so the selection is
    ``k/(2 z²)``-zCDP (pure ``2k/z``-DP). Only the indices are released, never the noisy scores.

    Parameters
    ----------
    scores : array_like, float, shape (V,)
        Utility of each candidate; each entry changes by at most ``sensitivity`` when one person is
        replaced by the null record (see :func:`clipped_association_scores`).
    k : int
        Number of indices to select, ``1 ≤ k ≤ V``.
    sensitivity : float
        ``Δ``, ℓ∞ sensitivity of ``scores``.
    noise_multiplier : float
        ``z = b / Δ``.
    rng : numpy.random.Generator
    accountant : PrivacyAccountant, optional
        Records one ``top_k`` event named ``name``.

    Returns
    -------
    numpy.ndarray, int64, shape (k,)
        Selected indices, best noisy score first.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or not (1 <= k <= s.size) or int(k) != k:
        raise InputError(f"need 1 <= k <= {s.size} candidates and 1-D scores, got k={k}, shape {s.shape}")
    if not np.isfinite(s).all():
        raise InputError("scores must be finite")
    d = _check_positive(sensitivity, "sensitivity", "bound each person's contribution (clipped_association_scores)")
    z = _check_positive(noise_multiplier, "noise_multiplier", "calibrate it with plan_for_training()")
    if rng is None:
        raise PrivacyError("pass rng=np.random.default_rng(seed) for a private selection")
    noisy = s + rng.gumbel(0.0, z * d, size=s.shape)  # (V,)
    idx = np.argsort(-noisy, kind="stable")[: int(k)]
    if accountant is not None:
        accountant.add_top_k(name, noise_multiplier=z, k=int(k))
    return idx.astype(np.int64)
