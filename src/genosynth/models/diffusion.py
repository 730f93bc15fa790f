"""Gaussian diffusion over latents: noise schedule, training loss, DDPM and DDIM samplers.

The diffusion process owns no network. Every method that needs one takes it as its first
argument and calls it as ``model(x_t, t, **cond)``, where ``x_t`` has shape (B, ...), ``t`` is an
int64 tensor of shape (B,) holding the *original* timesteps in ``[0, T)`` (also when sampling
with fewer, respaced steps), and ``cond`` is a dict such as ``{"y": y, "pheno": pheno}``. With
``guidance != 1`` the samplers call ``model.forward_with_cfg(x_t, t, **cond, scale=guidance)``
instead (see :class:`genosynth.models.dit.DiT1D`). DP-SGD wrappers, EMA copies and toy networks
therefore all plug in unchanged.

Each sampler is one step function, :meth:`GaussianDiffusion.p_sample` (DDPM) or
:meth:`GaussianDiffusion.ddim_step` (DDIM), run by one loop, :meth:`GaussianDiffusion.sample_loop`.

Conventions: ``alphas_cumprod[t]`` is :math:`\\bar\\alpha_t` for ``t = 0..T-1`` and
:math:`x_t = \\sqrt{\\bar\\alpha_t}\\,x_0 + \\sqrt{1-\\bar\\alpha_t}\\,\\varepsilon`.

References
----------
.. [1] J. Ho, A. Jain and P. Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020.
   https://arxiv.org/abs/2006.11239
.. [2] J. Song, C. Meng and S. Ermon, "Denoising Diffusion Implicit Models", ICLR 2021.
   https://arxiv.org/abs/2010.02502
.. [3] A. Nichol and P. Dhariwal, "Improved Denoising Diffusion Probabilistic Models",
   ICML 2021 (cosine schedule, respacing). https://arxiv.org/abs/2102.09672
.. [4] J. Ho and T. Salimans, "Classifier-Free Diffusion Guidance", 2022.
   https://arxiv.org/abs/2207.12598
.. [5] T. Salimans and J. Ho, "Progressive Distillation for Fast Sampling of Diffusion
   Models", ICLR 2022 (v-prediction). https://arxiv.org/abs/2202.00512
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass
from typing import Callable, Mapping

import numpy as np
import torch
from torch import nn

from genosynth.models.ema import unwrap_model

__all__ = ["DiffusionConfig", "GaussianDiffusion", "make_betas"]


# ----------------------------------------------------------------------------------------------
# Config and schedules
# ----------------------------------------------------------------------------------------------


@dataclass
class DiffusionConfig:
    """Options of :class:`GaussianDiffusion`. Saved in checkpoints via :meth:`to_dict`."""

    timesteps: int = 1000  # T, number of forward noising steps
    schedule: str = "linear"  # "linear" (Ho et al. 2020) or "cosine" (Nichol & Dhariwal 2021)
    prediction: str = "v"  # network target: "v" (default, stable at low SNR), "eps" (noise) or "x0"
    beta_start: float = 1e-4  # linear schedule: first beta at T=1000 (scaled by 1000/T)
    beta_end: float = 0.02  # linear schedule: last beta at T=1000 (scaled by 1000/T)
    variance: str = "fixed_small"  # DDPM reverse variance: "fixed_small" (posterior) or "fixed_large" (beta)

    def __post_init__(self) -> None:
        if self.timesteps < 2:
            raise ValueError(f"timesteps={self.timesteps} must be >= 2")
        if self.schedule not in ("linear", "cosine"):
            raise ValueError(f"schedule={self.schedule!r}: use 'linear' or 'cosine'")
        if self.prediction not in ("eps", "x0", "v"):
            raise ValueError(f"prediction={self.prediction!r}: use 'eps', 'x0' or 'v'")
        if self.variance not in ("fixed_small", "fixed_large"):
            raise ValueError(f"variance={self.variance!r}: use 'fixed_small' or 'fixed_large'")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DiffusionConfig":
        return cls(**d)


def make_betas(schedule: str, timesteps: int, *, beta_start: float = 1e-4,
               beta_end: float = 0.02) -> np.ndarray:
    """Noise schedule.

    Parameters
    ----------
    schedule : {"linear", "cosine"}
        "linear": betas evenly spaced from ``beta_start`` to ``beta_end``, both scaled by
        ``1000 / timesteps`` so that other T keep the same overall noise ([1]_, [3]_), capped
        at 0.999 (reached only for T < 50).
        "cosine": :math:`\\bar\\alpha_t = f(t)/f(0)`, ``f(t) = cos²((t/T + s)/(1 + s) π/2)``,
        ``s = 0.008``, betas capped at 0.999 [3]_.
    timesteps : int
        T.

    Returns
    -------
    numpy.ndarray, float64, shape (timesteps,)
    """
    if schedule == "linear":
        scale = 1000.0 / timesteps
        betas = np.linspace(scale * beta_start, scale * beta_end, timesteps, dtype=np.float64)
        return np.minimum(betas, 0.999)  # T < 50 would otherwise reach beta >= 1 (abar_T = 0)
    if schedule == "cosine":
        s = 0.008
        f = lambda u: math.cos((u + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
        return np.array([min(1 - f((i + 1) / timesteps) / f(i / timesteps), 0.999)
                         for i in range(timesteps)], dtype=np.float64)
    raise ValueError(f"unknown schedule {schedule!r}: use 'linear' or 'cosine'")


# ----------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------


def _randn(shape, *, rng: torch.Generator | None, device, dtype=torch.float32) -> torch.Tensor:
    """Standard normal noise drawn on the generator's device, then moved (reproducible anywhere)."""
    gdev = rng.device if rng is not None else torch.device(device)
    return torch.randn(shape, generator=rng, device=gdev, dtype=dtype).to(device)


def _model_device(model) -> torch.device:
    if isinstance(model, nn.Module):
        for p in model.parameters():
            return p.device
        for b in model.buffers():
            return b.device
    return torch.device("cpu")


@contextlib.contextmanager
def _eval_mode(model):
    """Put an ``nn.Module`` in eval mode (no label dropout) for sampling, then restore it."""
    was = model.training if isinstance(model, nn.Module) else None
    if was:
        model.eval()
    try:
        yield
    finally:
        if was:
            model.train(True)


def _progress(it, *, enabled: bool, desc: str):
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, desc=desc, total=len(it))


# ----------------------------------------------------------------------------------------------
# The diffusion process
# ----------------------------------------------------------------------------------------------


class GaussianDiffusion:
    """Forward noising process, denoising loss and samplers; holds no network.

    Parameters
    ----------
    config : DiffusionConfig, optional
        Defaults to ``DiffusionConfig()`` (T=1000, linear schedule, v prediction).

    Notes
    -----
    The default target is v [5]_ rather than eps [1]_: with eps, x0 is recovered as
    ``(x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)``, which multiplies any network error by
    ``1 / sqrt(abar_t)`` (up to ~2e4 at the last cosine step), and the first sampler steps then
    throw samples far off; v stays well conditioned at every SNR. Set ``prediction="eps"`` for the
    classic DDPM parametrisation (``clip_x0`` then helps if the latents have a known range).

    Attributes
    ----------
    betas, alphas_cumprod, alphas_cumprod_prev : torch.Tensor, float64, shape (T,)
        Schedule on the CPU. ``alphas_cumprod_prev[0] = 1``.
    sqrt_alphas_cumprod, sqrt_one_minus_alphas_cumprod : torch.Tensor, float64, shape (T,)
        Signal and noise scales of :math:`x_t` (needed by dp-promise accounting).

    Examples
    --------
    >>> import torch
    >>> from genosynth.models.diffusion import GaussianDiffusion, DiffusionConfig
    >>> diff = GaussianDiffusion(DiffusionConfig(timesteps=100))
    >>> net = lambda x, t, y=None, pheno=None: torch.zeros_like(x)
    >>> x0 = torch.randn(4, 2, 8)
    >>> diff.training_loss(net, x0, cond={"y": torch.zeros(4, dtype=torch.long)}).shape
    torch.Size([])
    >>> diff.ddim_sample(net, (3, 2, 8), cond={}, steps=10).shape
    torch.Size([3, 2, 8])
    """

    def __init__(self, config: DiffusionConfig | None = None):
        self.config = cfg = config if config is not None else DiffusionConfig()
        self.T = cfg.timesteps
        betas = make_betas(cfg.schedule, cfg.timesteps, beta_start=cfg.beta_start,
                           beta_end=cfg.beta_end)
        ab = np.cumprod(1.0 - betas)
        t64 = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))  # noqa: E731
        self.betas = t64(betas)  # (T,)
        self.alphas_cumprod = t64(ab)  # (T,)
        self.alphas_cumprod_prev = t64(np.append(1.0, ab[:-1]))  # (T,)
        self.sqrt_alphas_cumprod = t64(np.sqrt(ab))  # (T,)
        self.sqrt_one_minus_alphas_cumprod = t64(np.sqrt(1.0 - ab))  # (T,)

    def __repr__(self) -> str:
        return f"GaussianDiffusion({self.config})"

    # -- coefficients ----------------------------------------------------------------------------

    @staticmethod
    def _bcast(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """(B,) float64 -> (B, 1, ..., 1) in x's dtype and device."""
        return values.to(device=x.device, dtype=x.dtype).reshape(-1, *([1] * (x.ndim - 1)))

    def _extract(self, arr: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self._bcast(arr[t.detach().long().cpu()], x)  # (B, 1, ..., 1)

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        """Signal-to-noise ratio :math:`\\bar\\alpha_t / (1 - \\bar\\alpha_t)`, float64, shape (B,)."""
        ab = self.alphas_cumprod[t.long().cpu()]
        return ab / (1.0 - ab)

    # -- forward process -------------------------------------------------------------------------

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None, *,
                 rng: torch.Generator | None = None) -> torch.Tensor:
        """Draw :math:`x_t \\sim q(x_t | x_0)`.

        Parameters
        ----------
        x0 : torch.Tensor, float, shape (B, ...)
        t : torch.Tensor, int64, shape (B,)
        noise : torch.Tensor, shape (B, ...), optional
            Drawn from ``generator`` when omitted.

        Returns
        -------
        torch.Tensor, shape (B, ...)
        """
        if noise is None:
            noise = _randn(x0.shape, rng=rng, device=x0.device, dtype=x0.dtype)
        return (self._extract(self.sqrt_alphas_cumprod, t, x0) * x0
                + self._extract(self.sqrt_one_minus_alphas_cumprod, t, x0) * noise)

    def sample_timesteps(self, n: int, *, t_range: tuple[int, int] | None = None,
                         rng: torch.Generator | None = None, device=None,
                         power: float = 0.0) -> torch.Tensor:
        """Timesteps in ``[lo, hi)`` (default ``[0, T)``), int64, shape (n,).

        ``power=0`` draws them uniformly. ``power=p > 0`` draws them with density proportional to
        ``(t - lo)^p``: ``t = lo + floor((hi - lo) * u^(1/(1+p)))`` for uniform ``u``, which puts
        more of the training on the high-noise steps (p=1: three quarters of the draws above the
        range's midpoint).
        """
        lo, hi = self._check_range(t_range)
        if power < 0:
            raise ValueError(f"power={power} must be >= 0 (0 = uniform timesteps)")
        gdev = rng.device if rng is not None else torch.device(device or "cpu")
        if power == 0:
            t = torch.randint(lo, hi, (n,), generator=rng, device=gdev)
        else:
            u = torch.rand((n,), generator=rng, device=gdev, dtype=torch.float64)
            t = (lo + torch.floor((hi - lo) * u.pow(1.0 / (1.0 + power)))).long().clamp(lo, hi - 1)
        return t.to(device) if device is not None else t

    def _check_range(self, t_range) -> tuple[int, int]:
        if t_range is None:
            return 0, self.T
        lo, hi = int(t_range[0]), int(t_range[1])
        if not 0 <= lo < hi <= self.T:
            raise ValueError(f"t_range={t_range} must satisfy 0 <= lo < hi <= T={self.T}")
        return lo, hi

    # -- model output conversions ----------------------------------------------------------------

    def _call_model(self, model: Callable, x: torch.Tensor, t: torch.Tensor,
                    cond: Mapping | None, guidance: float = 1.0,
                    model_kwargs: Mapping | None = None) -> torch.Tensor:
        cond = dict(cond or {})
        kw = dict(model_kwargs or {})
        if guidance != 1.0:
            if not hasattr(model, "forward_with_cfg") and isinstance(model, nn.Module):
                model = unwrap_model(model)  # e.g. opacus GradSampleModule around a DiT1D
            if not hasattr(model, "forward_with_cfg"):
                raise ValueError("guidance != 1 needs a model with forward_with_cfg(x, t, ..., "
                                 "scale=...) such as DiT1D; use guidance=1.0 otherwise")
            out = model.forward_with_cfg(x, t, **cond, scale=guidance, **kw)
        else:
            out = model(x, t, **cond, **kw)
        if out.shape != x.shape:
            raise ValueError(f"model output shape {tuple(out.shape)} != input shape "
                             f"{tuple(x.shape)}; GaussianDiffusion uses fixed variances, build the "
                             f"network with learn_sigma=False")
        return out

    def predict_eps_x0(self, out: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, *,
                       clip_x0: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Turn a raw network output into (eps, x0) predictions.

        Parameters
        ----------
        out : torch.Tensor, shape (B, ...)
            Network output in the configured parametrisation (eps, x0 or v).
        x_t : torch.Tensor, shape (B, ...)
        t : torch.Tensor, int64, shape (B,)
        clip_x0 : float, optional
            Clamp the x0 prediction to ``[-clip_x0, clip_x0]`` and recompute eps from it.

        Returns
        -------
        eps, x0 : torch.Tensor, shape (B, ...) each
        """
        sa = self._extract(self.sqrt_alphas_cumprod, t, x_t)  # (B, 1, 1)
        so = self._extract(self.sqrt_one_minus_alphas_cumprod, t, x_t)  # (B, 1, 1)
        pred = self.config.prediction
        if pred == "eps":
            eps, x0 = out, (x_t - so * out) / sa
        elif pred == "x0":
            eps, x0 = (x_t - sa * out) / so, out
        else:  # v = sqrt(ab) eps - sqrt(1 - ab) x0
            eps, x0 = so * x_t + sa * out, sa * x_t - so * out
        if clip_x0 is not None:
            x0 = x0.clamp(-clip_x0, clip_x0)
            eps = (x_t - sa * x0) / so
        return eps, x0

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Regression target of the network for the configured parametrisation, shape (B, ...)."""
        pred = self.config.prediction
        if pred == "eps":
            return noise
        if pred == "x0":
            return x0
        return (self._extract(self.sqrt_alphas_cumprod, t, x0) * noise
                - self._extract(self.sqrt_one_minus_alphas_cumprod, t, x0) * x0)

    # -- training --------------------------------------------------------------------------------

    def training_loss(self, model: Callable, x0: torch.Tensor, *, t: torch.Tensor | None = None,
                      cond: Mapping | None = None, t_range: tuple[int, int] | None = None,
                      noise: torch.Tensor | None = None, reduction: str = "mean",
                      rng: torch.Generator | None = None,
                      model_kwargs: Mapping | None = None, t_power: float = 0.0) -> torch.Tensor:
        """Simple denoising loss :math:`\\|f(x_t, t, c) - \\mathrm{target}\\|^2` of [1]_.

        Parameters
        ----------
        model : callable
            ``model(x_t, t, **cond, **model_kwargs)`` returning a tensor shaped like ``x0``.
        x0 : torch.Tensor, float, shape (B, ...)
            Clean latents.
        t : torch.Tensor, int64, shape (B,), optional
            Timesteps; drawn from ``t_range`` when omitted (uniformly, or weighted by ``t_power``).
        cond : dict, optional
            Conditioning keyword arguments, e.g. ``{"y": y, "pheno": pheno}``.
        t_range : (int, int), optional
            Draw t uniformly in ``[lo, hi)``. dp-promise trains ``(S, T)`` without and ``(0, S)``
            with DP-SGD.
        noise : torch.Tensor, shape (B, ...), optional
            Drawn from ``generator`` when omitted.
        reduction : {"mean", "sum", "none"}
            "none" returns per-sample losses of shape (B,) (mean over the non-batch dims), as
            DP-SGD needs; "mean" is their mean, "sum" their sum.
        rng : torch.Generator, optional
            Source of t and noise.
        model_kwargs : dict, optional
            Extra keyword arguments for the network (e.g. ``{"generator": g}`` for DiT1D's
            label dropout).
        t_power : float
            When ``t`` is drawn: density proportional to ``t^t_power`` over ``t_range``
            (:meth:`sample_timesteps`; 0 = uniform).

        Returns
        -------
        torch.Tensor
            Scalar, or shape (B,) for ``reduction="none"``.
        """
        B = x0.shape[0]
        if t is None:
            t = self.sample_timesteps(B, t_range=t_range, rng=rng, device=x0.device, power=t_power)
        else:
            lo, hi = self._check_range(t_range)
            if t.shape != (B,) or int(t.min()) < lo or int(t.max()) >= hi:
                raise ValueError(f"t must have shape ({B},) and values in [{lo}, {hi})")
        if noise is None:
            noise = _randn(x0.shape, rng=rng, device=x0.device, dtype=x0.dtype)
        x_t = self.q_sample(x0, t, noise)  # (B, ...)
        out = self._call_model(model, x_t, t, cond, model_kwargs=model_kwargs)  # (B, ...)
        per_sample = (out - self.target(x0, noise, t)).pow(2).flatten(1).mean(dim=1)  # (B,)
        if reduction == "none":
            return per_sample
        if reduction == "mean":
            return per_sample.mean()
        if reduction == "sum":
            return per_sample.sum()
        raise ValueError(f"reduction={reduction!r}: use 'mean', 'sum' or 'none'")

    # -- sampling --------------------------------------------------------------------------------

    def timestep_sequence(self, steps: int | None = None) -> np.ndarray:
        """Decreasing timesteps visited by a sampler with ``steps`` steps (all T when None).

        The sequence is ``round(linspace(0, T-1, steps))`` reversed, so it always starts at
        T-1 and ends at 0 ([2]_, [3]_ respacing).

        Returns
        -------
        numpy.ndarray, int64, shape (steps,)
        """
        if steps is None or steps >= self.T:
            return np.arange(self.T - 1, -1, -1, dtype=np.int64)
        if steps < 1:
            raise ValueError(f"steps={steps} must be >= 1")
        seq = np.unique(np.round(np.linspace(0, self.T - 1, steps)).astype(np.int64))
        return seq[::-1].copy()

    def _start(self, model, shape, noise, rng, device):
        device = torch.device(device) if device is not None else _model_device(model)
        if noise is not None:
            if tuple(noise.shape) != tuple(shape):
                raise ValueError(f"noise shape {tuple(noise.shape)} != shape {tuple(shape)}")
            return noise.to(device), device
        return _randn(tuple(shape), rng=rng, device=device), device

    @staticmethod
    def _check_cond(cond, B: int):
        for k, v in (cond or {}).items():
            if isinstance(v, torch.Tensor) and v.shape[:1] != (B,):
                raise ValueError(f"cond[{k!r}] has shape {tuple(v.shape)}; expected ({B},) - "
                                 f"one label per sample (batch the labels with the shape)")

    # -- one sampler step each ------------------------------------------------------------------

    def _abar_pair(self, t_now: int, t_next: int | None):
        """:math:`\\bar\\alpha` at ``t_now`` and at ``t_next`` (1 after the last step)."""
        ab = self.alphas_cumprod.numpy()
        return ab[t_now], (ab[t_next] if t_next is not None else 1.0)

    def _predict_at(self, model: Callable, x: torch.Tensor, t_now: int, *, cond, guidance,
                    clip_x0, model_kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        """Network call at timestep ``t_now`` for the whole batch; returns (eps, x0)."""
        t = torch.full((x.shape[0],), t_now, dtype=torch.long, device=x.device)  # (B,)
        out = self._call_model(model, x, t, cond, guidance, model_kwargs)  # (B, C, L)
        return self.predict_eps_x0(out, x, t, clip_x0=clip_x0)  # (B, C, L) each

    def p_sample(self, model: Callable, x: torch.Tensor, t_now: int, t_next: int | None, *,
                 cond: Mapping | None = None, guidance: float = 1.0,
                 rng: torch.Generator | None = None, clip_x0: float | None = None,
                 model_kwargs: Mapping | None = None) -> torch.Tensor:
        """One ancestral step :math:`x_{t} \\to x_{t'}` of [1]_ (respaced beta [3]_).

        Parameters
        ----------
        x : torch.Tensor, float32, shape (B, C, L)
            :math:`x_t` at ``t_now``.
        t_now, t_next : int
            Current and next (smaller) timestep; ``t_next=None`` is the last step, which
            returns the posterior mean and draws no noise.
        Others as in :meth:`ddpm_sample`.

        Returns
        -------
        torch.Tensor, float32, shape (B, C, L)
        """
        ab_t, ab_prev = self._abar_pair(t_now, t_next)
        beta = 1.0 - ab_t / ab_prev  # respaced beta_t
        _, x0 = self._predict_at(model, x, t_now, cond=cond, guidance=guidance, clip_x0=clip_x0,
                                 model_kwargs=model_kwargs)  # (B, C, L)
        coef_x0 = math.sqrt(ab_prev) * beta / (1.0 - ab_t)
        coef_xt = math.sqrt(1.0 - beta) * (1.0 - ab_prev) / (1.0 - ab_t)
        mean = coef_x0 * x0 + coef_xt * x  # (B, C, L) posterior mean
        if t_next is None:
            return mean
        if self.config.variance == "fixed_small":
            var = beta * (1.0 - ab_prev) / (1.0 - ab_t)
        else:
            var = beta
        z = _randn(x.shape, rng=rng, device=x.device, dtype=x.dtype)  # (B, C, L)
        return mean + math.sqrt(var) * z

    def ddim_step(self, model: Callable, x: torch.Tensor, t_now: int, t_next: int | None, *,
                  eta: float = 0.0, cond: Mapping | None = None, guidance: float = 1.0,
                  rng: torch.Generator | None = None, clip_x0: float | None = None,
                  model_kwargs: Mapping | None = None) -> torch.Tensor:
        """One DDIM step :math:`x_{t} \\to x_{t'}` of [2]_; noise is drawn only when ``eta > 0``
        and this is not the last step (``t_next=None``). Parameters as in :meth:`p_sample`.

        Returns
        -------
        torch.Tensor, float32, shape (B, C, L)
        """
        ab_t, ab_prev = self._abar_pair(t_now, t_next)
        eps, x0 = self._predict_at(model, x, t_now, cond=cond, guidance=guidance,
                                   clip_x0=clip_x0, model_kwargs=model_kwargs)  # (B, C, L) each
        sigma = eta * math.sqrt((1.0 - ab_prev) / (1.0 - ab_t) * (1.0 - ab_t / ab_prev))
        x = math.sqrt(ab_prev) * x0 + math.sqrt(max(1.0 - ab_prev - sigma ** 2, 0.0)) * eps
        if t_next is not None and eta > 0:
            z = _randn(x.shape, rng=rng, device=x.device, dtype=x.dtype)  # (B, C, L)
            x = x + sigma * z
        return x

    # -- the one loop ----------------------------------------------------------------------------

    def sample_loop(self, step: Callable, model: Callable, shape, *, steps: int | None,
                    cond: Mapping | None = None, rng: torch.Generator | None = None,
                    noise: torch.Tensor | None = None, device=None, progress: bool = False,
                    desc: str = "sample", **step_kw) -> torch.Tensor:
        """Run ``step`` (:meth:`p_sample` or :meth:`ddim_step`) from :math:`x_T` down to x_0.

        Parameters
        ----------
        step : callable
            ``step(model, x, t_now, t_next, cond=..., rng=..., **step_kw)`` returning the next x.
        steps : int or None
            Respaced steps (:meth:`timestep_sequence`; None = all T).
        desc : str
            Label of the tqdm bar.
        Others as in :meth:`ddpm_sample`.

        Returns
        -------
        torch.Tensor, float32, shape ``shape``
        """
        x, device = self._start(model, shape, noise, rng, device)  # (B, C, L)
        self._check_cond(cond, x.shape[0])
        seq = self.timestep_sequence(steps)
        with _eval_mode(model):
            for i in _progress(range(len(seq)), enabled=progress, desc=desc):
                t_next = int(seq[i + 1]) if i + 1 < len(seq) else None
                x = step(model, x, int(seq[i]), t_next, cond=cond, rng=rng, **step_kw)
        return x

    @torch.no_grad()
    def ddpm_sample(self, model: Callable, shape, *, cond: Mapping | None = None,
                    guidance: float = 1.0, steps: int | None = None,
                    rng: torch.Generator | None = None, noise: torch.Tensor | None = None,
                    clip_x0: float | None = None, device=None, progress: bool = False,
                    model_kwargs: Mapping | None = None) -> torch.Tensor:
        """Ancestral sampling :math:`p_\\theta(x_{t'} | x_t)` of [1]_.

        Parameters
        ----------
        model : callable
            Network (see module docstring); put in eval mode during sampling.
        shape : tuple of int
            (B, C, L) of the samples.
        cond : dict, optional
            ``{"y": int64 (B,), "pheno": int64 (B,) or None}``.
        guidance : float
            Classifier-free guidance scale w; 1 = plain conditional, 0 = unconditional.
        steps : int, optional
            Number of steps on a respaced schedule (default: all T). With respacing the
            per-step beta is :math:`1 - \\bar\\alpha_t / \\bar\\alpha_{t'}` [3]_.
        rng : torch.Generator, optional
            Source of all noise; same seed -> identical samples.
        noise : torch.Tensor, shape ``shape``, optional
            Starting point :math:`x_T` (drawn when omitted).
        clip_x0 : float, optional
            Clamp predicted x0 to ``[-clip_x0, clip_x0]`` at every step.
        device : torch.device or str, optional
            Defaults to the model's parameter device.
        progress : bool
            Show a tqdm bar.

        Returns
        -------
        torch.Tensor, float32, shape ``shape``
        """
        return self.sample_loop(self.p_sample, model, shape, steps=steps, cond=cond, rng=rng,
                                noise=noise, device=device, progress=progress, desc="DDPM",
                                guidance=guidance, clip_x0=clip_x0, model_kwargs=model_kwargs)

    @torch.no_grad()
    def ddim_sample(self, model: Callable, shape, *, cond: Mapping | None = None,
                    steps: int = 50, eta: float = 0.0, guidance: float = 1.0,
                    rng: torch.Generator | None = None, noise: torch.Tensor | None = None,
                    clip_x0: float | None = None, device=None, progress: bool = False,
                    model_kwargs: Mapping | None = None) -> torch.Tensor:
        """DDIM sampling [2]_ on ``steps`` respaced timesteps.

        ``eta = 0`` is deterministic given :math:`x_T`; ``eta = 1`` is ancestral sampling with
        the posterior variance (equal to :meth:`ddpm_sample` with ``variance="fixed_small"`` on
        the same steps and noise). Other parameters as in :meth:`ddpm_sample`.

        Returns
        -------
        torch.Tensor, float32, shape ``shape``
        """
        return self.sample_loop(self.ddim_step, model, shape, steps=steps, cond=cond, rng=rng,
                                noise=noise, device=device, progress=progress, desc="DDIM",
                                eta=eta, guidance=guidance, clip_x0=clip_x0,
                                model_kwargs=model_kwargs)

    def sample(self, model: Callable, shape, *, cond: Mapping | None = None,
               method: str = "ddim", steps: int | None = 50, eta: float = 0.0,
               guidance: float = 1.0, rng: torch.Generator | None = None,
               clip_x0: float | None = None, device=None, progress: bool = False) -> torch.Tensor:
        """Dispatch to :meth:`ddim_sample` (``method="ddim"``) or :meth:`ddpm_sample`
        (``method="ddpm"``, ``steps=None`` for all T). Returns shape ``shape``."""
        kw = dict(cond=cond, guidance=guidance, rng=rng, clip_x0=clip_x0,
                  device=device, progress=progress)
        if method == "ddim":
            return self.ddim_sample(model, shape, steps=steps or self.T, eta=eta, **kw)
        if method == "ddpm":
            return self.ddpm_sample(model, shape, steps=steps, **kw)
        raise ValueError(f"method={method!r}: use 'ddim' or 'ddpm'")
