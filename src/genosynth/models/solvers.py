"""Few-step ODE samplers for :class:`genosynth.models.diffusion.GaussianDiffusion`.

DPM-Solver++ [1]_ solves the diffusion probability-flow ODE in the data-prediction form. With
:math:`\\alpha_t = \\sqrt{\\bar\\alpha_t}`, :math:`\\sigma_t = \\sqrt{1 - \\bar\\alpha_t}`,
:math:`\\lambda_t = \\log(\\alpha_t / \\sigma_t)` and :math:`h = \\lambda_t - \\lambda_s`, one step
from ``s`` to ``t`` is

.. math:: x_t = \\frac{\\sigma_t}{\\sigma_s} x_s - \\alpha_t (e^{-h} - 1)\\, D

where :math:`D` is the network's x0 prediction at ``s`` (first order: exactly DDIM with
``eta = 0``) or, in the second-order multistep variant (2M), its linear extrapolation from the
previous step's prediction, :math:`D = (1 + \\tfrac{1}{2r}) \\hat x_0(s) - \\tfrac{1}{2r}
\\hat x_0(s')` with :math:`r = h_{prev} / h`. Each step costs one network call, as DDIM's does;
the second order buys accuracy at few steps. The last step (to :math:`\\sigma = 0`) is first
order (``lower_order_final`` of [1]_): it returns the x0 prediction.

Like the diffusion process, the solver owns no network: it takes the diffusion process and the
network as arguments and visits the same timesteps as
:meth:`~genosynth.models.diffusion.GaussianDiffusion.ddim_sample` (``timestep_sequence``).

References
----------
.. [1] C. Lu, Y. Zhou, F. Bao, J. Chen, C. Li and J. Zhu, "DPM-Solver++: Fast Solver for Guided
   Sampling of Diffusion Probabilistic Models", 2022. https://arxiv.org/abs/2211.01095
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np
import torch

from genosynth.models.diffusion import GaussianDiffusion, _eval_mode, _progress

__all__ = ["SAMPLERS", "dpmpp_2m_sample", "logsnr_sequence", "sample_latents"]

#: samplers :func:`sample_latents` runs (``SamplingConfig.sampler``)
SAMPLERS = ("ddim", "dpm++2m")

#: half log-SNR where ``"dpm++2m"``'s evenly spaced grid starts (signal fraction ~3e-4 of x_T;
#: below it the network only predicts the mean)
LAM_MIN = -4.0


def _coefficients(diffusion: GaussianDiffusion, t: int | None) -> tuple[float, float, float]:
    """(alpha, sigma, lambda) at timestep ``t``; ``None`` is the clean end (sigma 0, lambda inf)."""
    if t is None:
        return 1.0, 0.0, math.inf
    ab = float(diffusion.alphas_cumprod[t])
    alpha, sigma = math.sqrt(ab), math.sqrt(1.0 - ab)
    return alpha, sigma, math.log(alpha) - math.log(sigma)


def logsnr_sequence(diffusion: GaussianDiffusion, steps: int, *, lam_min: float | None = None) -> np.ndarray:
    """Decreasing timesteps with :math:`\\lambda_t` (half log-SNR) evenly spaced, the spacing of
    DPM-Solver's ``skip_type="logSNR"`` [1]_ on the discrete schedule.

    The grid starts at ``T - 1`` (pure noise) and ends at 0. With ``lam_min`` above
    :math:`\\lambda_{T-1}` the evenly spaced part starts there, after the first step: schedules whose last timesteps
    carry no signal (cosine: :math:`\\bar\\alpha_{T-1} \\approx 10^{-9}`) would otherwise spend
    steps where the network only predicts the mean. Timesteps that round to the same integer are
    merged, so fewer than ``steps`` may be returned.

    Returns
    -------
    numpy.ndarray, int64, shape (<= steps,)
    """
    if steps < 1:
        raise ValueError(f"steps={steps} must be >= 1")
    if steps == 1:
        return np.array([diffusion.T - 1], dtype=np.int64)  # one call: the x0 prediction from pure noise
    ab = diffusion.alphas_cumprod.numpy()
    lam = 0.5 * (np.log(ab) - np.log1p(-ab))  # (T,) decreasing in t
    if lam_min is None or lam_min <= lam[-1]:
        targets = np.linspace(lam[-1], lam[0], steps)  # (steps,)
    else:
        targets = np.linspace(float(lam_min), lam[0], steps - 1)  # (steps - 1,) after T - 1
    idx = np.abs(lam[None, :] - targets[:, None]).argmin(axis=1)  # nearest timestep of each
    seq = np.unique(np.concatenate([[diffusion.T - 1], idx, [0]]))[::-1]
    return seq.astype(np.int64).copy()


@torch.no_grad()
def dpmpp_2m_sample(diffusion: GaussianDiffusion, model: Callable, shape, *,
                    cond: Mapping | None = None, steps: int = 10, guidance: float = 1.0,
                    noise: torch.Tensor | None = None, rng: torch.Generator | None = None,
                    order: int = 2, spacing: str = "uniform", lam_min: float | None = None,
                    device=None, progress: bool = False,
                    model_kwargs: Mapping | None = None) -> torch.Tensor:
    """DPM-Solver++(2M) [1]_ on ``steps`` respaced timesteps (one network call each).

    Parameters
    ----------
    diffusion : GaussianDiffusion
        Its schedule and parametrisation (eps, x0 or v) turn network outputs into x0.
    model : callable
        ``model(x_t, t, **cond)`` as for the diffusion samplers; eval mode during sampling.
    shape : tuple of int
        (B, C, L) of the samples.
    steps : int
        Network calls (at most; ``spacing`` picks the timesteps).
    order : int
        2 (multistep second order, the default) or 1 (equal to DDIM with ``eta = 0``).
    spacing : str
        ``"uniform"`` (the timesteps of DDIM) or ``"logsnr"`` (:func:`logsnr_sequence` with ``lam_min``).
    noise : torch.Tensor, shape ``shape``, optional
        Starting point :math:`x_T` (else drawn from ``rng``).
    Others as in :meth:`GaussianDiffusion.ddim_sample`.

    Returns
    -------
    torch.Tensor, float32, shape ``shape``
    """
    if order not in (1, 2):
        raise ValueError(f"order={order}: use 1 or 2")
    x, device = diffusion._start(model, shape, noise, rng, device)  # (B, C, L)
    diffusion._check_cond(cond, x.shape[0])
    if spacing == "uniform":
        grid = diffusion.timestep_sequence(steps)
    elif spacing == "logsnr":
        grid = logsnr_sequence(diffusion, steps, lam_min=lam_min)
    else:
        raise ValueError(f"spacing={spacing!r}: use 'uniform' or 'logsnr'")
    seq = [int(t) for t in grid]
    x0_prev, h_prev = None, None
    with _eval_mode(model):
        for i in _progress(range(len(seq)), enabled=progress, desc="DPM-Solver++"):
            s, t = seq[i], (seq[i + 1] if i + 1 < len(seq) else None)
            _, x0 = diffusion._predict_at(model, x, s, cond=cond, guidance=guidance, clip_x0=None,
                                          model_kwargs=model_kwargs)  # (B, C, L)
            _, sigma_s, lam_s = _coefficients(diffusion, s)
            alpha_t, sigma_t, lam_t = _coefficients(diffusion, t)
            if t is None:  # last step, first order: sigma_t = 0 leaves the x0 prediction
                x = x0
                break
            h = lam_t - lam_s
            d = x0
            if order == 2 and x0_prev is not None:
                r = h_prev / h
                d = (1.0 + 0.5 / r) * x0 - (0.5 / r) * x0_prev  # (B, C, L)
            x = (sigma_t / sigma_s) * x - (alpha_t * math.expm1(-h)) * d  # (B, C, L)
            x0_prev, h_prev = x0, h
    return x


def sample_latents(diffusion: GaussianDiffusion, model: Callable, shape, *, sampler: str,
                   steps: int, eta: float = 0.0, **kw) -> torch.Tensor:
    """Run the named sampler: ``"ddim"`` (with ``eta``; DDIM's evenly spaced timesteps) or
    ``"dpm++2m"`` (deterministic, ``eta`` must be 0; log-SNR spacing from :data:`LAM_MIN`).
    Keywords as in :meth:`GaussianDiffusion.ddim_sample`. Returns shape ``shape``."""
    if sampler == "ddim":
        return diffusion.ddim_sample(model, shape, steps=steps, eta=eta, **kw)
    if sampler == "dpm++2m":
        if eta != 0:
            raise ValueError(f"eta={eta}: the dpm++2m sampler is deterministic; use eta=0 or "
                             f"sampler='ddim'")
        return dpmpp_2m_sample(diffusion, model, shape, steps=steps, spacing="logsnr", lam_min=LAM_MIN, **kw)
    raise ValueError(f"sampler={sampler!r}: use one of {', '.join(SAMPLERS)}")
