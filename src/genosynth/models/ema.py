"""Exponential moving average (EMA) of model weights, as used to sample from diffusion models.

The EMA keeps its own float copy of every parameter and buffer, keyed by the parameter name of
the *unwrapped* model, so the same EMA follows a model whether or not it is wrapped by opacus'
``GradSampleModule`` (``_module``), ``torch.compile`` (``_orig_mod``) or DDP (``module``).

References
----------
.. [1] B. T. Polyak and A. B. Juditsky, "Acceleration of Stochastic Approximation by
   Averaging", SIAM J. Control Optim. 30(4), 1992.
.. [2] J. Ho, A. Jain and P. Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020
   (EMA decay 0.9999 for sampling).
"""

from __future__ import annotations

import contextlib
import copy

import torch
from torch import nn

__all__ = ["EMA", "unwrap_model"]


def unwrap_model(model: nn.Module) -> nn.Module:
    """Strip opacus / torch.compile / DDP wrappers: returns the module that holds the weights."""
    while True:
        for attr in ("_module", "_orig_mod", "module"):
            inner = getattr(model, attr, None)
            if isinstance(inner, nn.Module):
                model = inner
                break
        else:
            return model


class EMA:
    """Exponential moving average of a model's parameters (buffers are copied).

    ``shadow = decay * shadow + (1 - decay) * param`` after each :meth:`update`. With
    ``warmup=True`` the effective decay is ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates,
    so early averages are not dominated by the random initialisation.

    Parameters
    ----------
    model : torch.nn.Module
        Model to track (wrappers are unwrapped).
    decay : float
        Decay in [0, 1); 0 copies the weights at every update.
    warmup : bool
        Use the warm-up decay schedule above.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Linear(2, 1)
    >>> ema = EMA(net, decay=0.9)
    >>> ema.update(net)                     # after each optimiser step
    >>> with ema.average_parameters(net):   # sample / evaluate with averaged weights
    ...     _ = net(torch.zeros(1, 2))
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, *, warmup: bool = False):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay={decay} must lie in [0, 1)")
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.num_updates = 0
        m = unwrap_model(model)
        self.shadow: dict[str, torch.Tensor] = {
            k: v.detach().clone().float() if v.is_floating_point() else v.detach().clone()
            for k, v in m.state_dict().items()
        }
        self._param_names = {k for k, p in m.named_parameters() if p.requires_grad}

    def current_decay(self) -> float:
        """The decay that the next :meth:`update` will use."""
        if self.warmup:
            n = self.num_updates
            return min(self.decay, (1.0 + n) / (10.0 + n))
        return self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the current weights of ``model`` into the average."""
        d = self.current_decay()
        state = unwrap_model(model).state_dict()
        for k, v in state.items():
            s = self.shadow[k]
            if k in self._param_names:
                s.mul_(d).add_(v.detach().to(s.device, s.dtype), alpha=1.0 - d)
            else:  # buffers (and frozen parameters) are copied
                s.copy_(v.detach())
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite the weights of ``model`` with the averaged ones."""
        m = unwrap_model(model)
        current = m.state_dict()
        m.load_state_dict({k: v.to(dtype=current[k].dtype) for k, v in self.shadow.items()})

    @contextlib.contextmanager
    def average_parameters(self, model: nn.Module):
        """Temporarily swap the averaged weights into ``model`` (restored on exit)."""
        m = unwrap_model(model)
        backup = copy.deepcopy(m.state_dict())
        self.copy_to(m)
        try:
            yield m
        finally:
            m.load_state_dict(backup)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "warmup": self.warmup, "num_updates": self.num_updates,
                "shadow": {k: v.clone() for k, v in self.shadow.items()}}

    def load_state_dict(self, state: dict) -> None:
        missing = set(self.shadow) ^ set(state["shadow"])
        if missing:
            raise ValueError(f"EMA state does not match the model (keys differ: {sorted(missing)[:5]})"
                             f"; build the EMA from the same architecture as the checkpoint")
        self.decay = float(state["decay"])
        self.warmup = bool(state["warmup"])
        self.num_updates = int(state["num_updates"])
        for k, v in state["shadow"].items():
            self.shadow[k].copy_(v)
