"""A plain DP-SGD step for any torch module (Abadi et al. 2016), with Poisson sampling.

Per-sample gradients come from ``torch.func`` (``vmap(grad(functional_call(...)))``), so any
module whose forward treats batch rows independently works (no BatchNorm: use LayerNorm or
GroupNorm). One step:

1. per-sample gradients ``g_i`` of the loss of each sample of a Poisson-sampled batch,
2. clipping ``g_i ← g_i · min(1, C / (‖g_i‖₂ (1 + 16 eps) + 1e-6))`` over all parameters jointly
   (``eps`` of the gradient dtype: rounding can never lift a clipped norm above ``C``),
3. ``G = Σ_i g_i + N(0, (z C)² I)``,
4. ``G / B`` with ``B = q n`` the *expected* batch size (a data-independent divisor),
5. an ordinary ``optimizer.step()`` with ``.grad = G / B``.

With ``noise_multiplier = 0`` and ``max_grad_norm = inf`` (and ``B`` the actual batch size) this
is exactly ordinary training on the mean loss; the tests check it.

References
----------
.. [1] M. Abadi et al., "Deep Learning with Differential Privacy", CCS 2016.
.. [2] A. Yousefpour et al., "Opacus: User-Friendly Differential Privacy Library in PyTorch",
   2021 (clipping factor ``C / (‖g‖ + 1e-6)``, division by the expected batch size).
.. [3] I. Mironov, K. Talwar, L. Zhang, "Rényi Differential Privacy of the Sampled Gaussian
   Mechanism", 2019 (accounting assumes Poisson sampling, as :func:`poisson_batches` does).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from genosynth.errors import PrivacyError

if TYPE_CHECKING:  # pragma: no cover
    from genosynth.privacy.accountant import PrivacyAccountant

__all__ = ["DPSGD", "poisson_batches", "per_sample_grads", "clip_and_sum"]

#: ``loss_fn(forward, *batch) -> scalar``: mean loss of a batch, calling the model as ``forward``.
LossFn = Callable[..., torch.Tensor]


def poisson_batches(
    n: int, sample_rate: float, steps: int, *, rng: torch.Generator
) -> Iterator[torch.Tensor]:
    """Poisson-sampled batches: each person joins each batch independently with probability ``q``.

    The privacy accounting of DP-SGD assumes exactly this sampling; shuffled fixed-size batches
    are *not* covered.

    Parameters
    ----------
    n : int
        Number of people.
    sample_rate : float
        ``q`` in (0, 1].
    steps : int
        Number of batches.
    rng : torch.Generator
        Source of the sampling randomness (CPU generator).

    Yields
    ------
    torch.Tensor, int64, shape (b,)
        Sorted indices of one batch; ``b ~ Binomial(n, q)`` and may be 0 (the step must still be
        taken: it adds noise only).
    """
    if not (0.0 < sample_rate <= 1.0):
        raise PrivacyError(f"sample_rate={sample_rate} must lie in (0, 1]; it is batch_size / n")
    for _ in range(int(steps)):
        mask = torch.rand(n, generator=rng) < sample_rate  # (n,)
        yield torch.nonzero(mask, as_tuple=False).flatten()


def per_sample_grads(
    model: nn.Module, loss_fn: LossFn, batch: Sequence[torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Gradient of ``loss_fn`` for each sample separately.

    Parameters
    ----------
    model : torch.nn.Module
    loss_fn : callable
        ``loss_fn(forward, *batch) -> scalar`` where ``forward(*args, **kwargs)`` calls the model.
        It is called on a batch of one sample (every tensor keeps a leading batch dimension of
        size 1). Draw per-sample randomness (diffusion timesteps, noise) outside and pass it in
        ``batch``.
    batch : sequence of torch.Tensor
        Tensors with the same leading size ``B``.

    Returns
    -------
    dict of str to torch.Tensor
        Parameter name -> per-sample gradients of shape (B, *param.shape), for trainable
        parameters.
    """
    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    frozen = {k: v.detach() for k, v in model.named_parameters() if not v.requires_grad}
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def sample_loss(p, *sample):
        one = tuple(x.unsqueeze(0) for x in sample)  # each (1, ...)

        def forward(*args, **kwargs):
            return functional_call(model, (p, frozen, buffers), args, kwargs)

        return loss_fn(forward, *one)

    in_dims = (None,) + (0,) * len(batch)
    return vmap(grad(sample_loss), in_dims=in_dims, randomness="different")(params, *batch)


def clip_and_sum(
    grads: dict[str, torch.Tensor], max_grad_norm: float
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Clip per-sample gradients jointly over all parameters to ``C`` and sum over samples.

    Parameters
    ----------
    grads : dict of str to torch.Tensor, each (B, ...)
    max_grad_norm : float
        ``C``; ``inf`` disables clipping (factor exactly 1).

    Returns
    -------
    sums : dict of str to torch.Tensor, each (...)
    norms : torch.Tensor, shape (B,)
        Per-sample norms before clipping (private: do not log under a privacy budget).
    """
    first = next(iter(grads.values()))
    b = first.shape[0]
    sq = torch.zeros(b, dtype=torch.float64, device=first.device)
    for g in grads.values():
        # accumulated in float64 without a float64 copy of the gradients (that copy and ``pow``
        # took over half of a default-size DP VAE step)
        sq = sq + torch.linalg.vector_norm(g.reshape(b, -1), dim=1, dtype=torch.float64).square()  # (B,)
    norms = sq.sqrt()  # (B,)
    if math.isinf(max_grad_norm):
        factor = torch.ones_like(norms)
    else:
        # 1e-6 as in opacus, plus a relative margin so that rounding the scaled gradients to
        # their dtype can never push a clipped norm above C (the sensitivity bound)
        margin = 1.0 + 16 * max(torch.finfo(g.dtype).eps for g in grads.values())
        factor = torch.clamp(max_grad_norm / (norms * margin + 1e-6), max=1.0)  # (B,)
    # the weighted sum over samples as one matrix-vector product: (B,) @ (B, numel) -> (numel,)
    sums = {k: (factor.to(g.dtype) @ g.reshape(b, -1)).reshape(g.shape[1:]) for k, g in grads.items()}
    return sums, norms


class DPSGD:
    """DP-SGD around an ordinary torch optimizer.

    Parameters
    ----------
    model : torch.nn.Module
    optimizer : torch.optim.Optimizer
        Any optimizer over ``model``'s parameters (SGD, Adam, ...); it sees only noised gradients.
    noise_multiplier : float
        ``z``: noise std is ``z C`` on the summed clipped gradients.
    max_grad_norm : float
        ``C``; must be finite when ``z > 0``.
    expected_batch_size : float
        ``B = q n``; the summed gradient is divided by it (never by the actual batch size,
        which is private).
    rng : torch.Generator, optional
        Noise source; required when ``z > 0``.
    accountant : PrivacyAccountant, optional
        Records one ``subsampled_gaussian`` event per step under ``name`` (needs ``sample_rate``).
    sample_rate : float, optional
        Poisson rate ``q`` used to draw the batches (for the accountant).
    name : str
        Event name, e.g. ``"vae/dpsgd"`` or ``"diffusion/stage2"``.
    n_samples : int, optional
        Number of people; with ``sample_rate`` it lets :meth:`batches` draw the Poisson batches.
        Required with an ``accountant``: then every :meth:`step` must consume a batch drawn by
        :meth:`batches`, so the Poisson sampling the accounting assumes is enforced.
    max_physical_batch_size : int, optional
        Compute per-sample gradients in chunks of this many samples (memory bound).

    Examples
    --------
    >>> model = torch.nn.Linear(3, 1)
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> dp = DPSGD(model, opt, noise_multiplier=1.0, max_grad_norm=1.0, expected_batch_size=4.0,
    ...            rng=torch.Generator().manual_seed(0))
    >>> loss = lambda forward, x, y: ((forward(x) - y) ** 2).mean()
    >>> dp.step(loss, (torch.randn(5, 3), torch.randn(5, 1)))
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        noise_multiplier: float,
        max_grad_norm: float,
        expected_batch_size: float,
        rng: torch.Generator | None = None,
        accountant: "PrivacyAccountant | None" = None,
        sample_rate: float | None = None,
        name: str = "dpsgd",
        n_samples: int | None = None,
        max_physical_batch_size: int | None = None,
    ):
        if not (noise_multiplier >= 0):
            raise PrivacyError(f"noise_multiplier={noise_multiplier} must be >= 0")
        if not (max_grad_norm > 0):
            raise PrivacyError(f"max_grad_norm={max_grad_norm} must be > 0 (inf disables clipping)")
        if noise_multiplier > 0 and math.isinf(max_grad_norm):
            raise PrivacyError(
                "noise_multiplier > 0 with max_grad_norm=inf gives no privacy (unbounded sensitivity); "
                "set --max-grad-norm to a finite value, e.g. 1.0"
            )
        if noise_multiplier > 0 and rng is None:
            raise PrivacyError("DP-SGD noise needs an explicit torch.Generator, seeded secretly (never release its seed)")
        if not (expected_batch_size > 0):
            raise PrivacyError(f"expected_batch_size={expected_batch_size} must be > 0; it is q * n")
        if accountant is not None and sample_rate is None:
            raise PrivacyError("pass sample_rate=q (the Poisson rate of poisson_batches) to account the steps")
        if accountant is not None and n_samples is None:
            raise PrivacyError(
                "pass n_samples with an accountant: batches must be Poisson-sampled by DPSGD.batches() "
                "for the accounting to hold"
            )
        if accountant is not None and noise_multiplier == 0:
            raise PrivacyError(
                f"{name}: steps without noise cannot be accounted; use the calibrated noise multiplier "
                "or run without --epsilon (and without an accountant)"
            )
        self.model = model
        self.optimizer = optimizer
        self.noise_multiplier = float(noise_multiplier)
        self.max_grad_norm = float(max_grad_norm)
        self.expected_batch_size = float(expected_batch_size)
        self.generator = rng
        self.accountant = accountant
        self.sample_rate = sample_rate
        self.name = name
        self.n_samples = n_samples
        self.max_physical_batch_size = max_physical_batch_size
        self.steps = 0
        self._drawn: list[int] = []  # sizes of Poisson batches drawn and not yet stepped on

    def batches(self, steps: int, *, rng: torch.Generator | None = None) -> Iterator[torch.Tensor]:
        """Draw ``steps`` Poisson batches of indices (see :func:`poisson_batches`).

        Uses ``generator`` or, if None, the noise generator. With an accountant each
        :meth:`step` must follow a batch drawn here.
        """
        if self.sample_rate is None or self.n_samples is None:
            raise PrivacyError("DPSGD.batches needs sample_rate and n_samples; pass them to DPSGD(...)")
        gen = rng if rng is not None else self.generator
        if gen is None:
            raise PrivacyError("Poisson sampling needs a torch.Generator, seeded secretly (never release its seed)")
        for idx in poisson_batches(self.n_samples, self.sample_rate, steps, rng=gen):
            self._drawn.append(int(idx.numel()))
            yield idx

    def _trainable(self) -> dict[str, nn.Parameter]:
        return {k: p for k, p in self.model.named_parameters() if p.requires_grad}

    def private_grads(self, loss_fn: LossFn, batch: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Noised, clipped, averaged gradient ``(Σ clip(g_i) + N(0, (zC)²)) / B`` per parameter.

        ``batch`` may be empty (leading size 0): the result is then noise only.
        """
        params = self._trainable()
        b = batch[0].shape[0] if len(batch) else 0
        sums = {k: torch.zeros_like(p) for k, p in params.items()}
        chunk = self.max_physical_batch_size or max(b, 1)
        for start in range(0, b, chunk):
            part = [x[start : start + chunk] for x in batch]
            grads = per_sample_grads(self.model, loss_fn, part)
            chunk_sums, _ = clip_and_sum(grads, self.max_grad_norm)
            for k in sums:
                sums[k] = sums[k] + chunk_sums[k]
        out = {}
        for k, p in params.items():
            g = sums[k]
            if self.noise_multiplier > 0:
                noise = torch.randn(g.shape, generator=self.generator, dtype=g.dtype,
                                    device=self.generator.device).to(g.device)  # fmt: skip
                g = g + (self.noise_multiplier * self.max_grad_norm) * noise
            out[k] = g / self.expected_batch_size
        return out

    def step(self, loss_fn: LossFn, batch: Sequence[torch.Tensor]) -> None:
        """One DP-SGD step on a (Poisson-sampled) batch; records it in the accountant.

        Nothing is returned: the loss of a private batch is an un-noised private statistic and
        must not be logged under a privacy budget.
        """
        if self.accountant is not None:
            b = batch[0].shape[0] if len(batch) else 0
            if not self._drawn or self._drawn[0] != b:
                raise PrivacyError(
                    f"{self.name}: this batch was not drawn by DPSGD.batches() (Poisson sampling), which the "
                    "privacy accounting assumes; iterate `for idx in dp.batches(steps)` and pass the data at idx"
                )
            self._drawn.pop(0)
        grads = self.private_grads(loss_fn, batch)
        for k, p in self._trainable().items():
            p.grad = grads[k].to(p.dtype)
        self.optimizer.step()
        self.steps += 1
        if self.accountant is not None:
            self.accountant.add_subsampled_gaussian(
                self.name, noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate, steps=1
            )

    def state_dict(self) -> dict[str, Any]:
        """Settings, step count and the noise generator state (for exact resume).

        The generator state lets anyone recompute the noise: keep this in a private resume file,
        never in a released checkpoint (:mod:`genosynth.training.private` does so).
        """
        return {
            "noise_multiplier": self.noise_multiplier,
            "max_grad_norm": self.max_grad_norm,
            "expected_batch_size": self.expected_batch_size,
            "sample_rate": self.sample_rate,
            "name": self.name,
            "n_samples": self.n_samples,
            "steps": self.steps,
            "generator_state": None if self.generator is None else self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; settings must match the ones this object was built with."""
        for key in ("noise_multiplier", "max_grad_norm", "expected_batch_size", "sample_rate", "name", "n_samples"):
            if state[key] != getattr(self, key):
                raise PrivacyError(
                    f"checkpoint has {key}={state[key]!r} but this run uses {getattr(self, key)!r}; resume "
                    "with the settings of the checkpoint (the privacy plan depends on them)"
                )
        self.steps = int(state["steps"])
        if state["generator_state"] is not None and self.generator is not None:
            self.generator.set_state(state["generator_state"])
