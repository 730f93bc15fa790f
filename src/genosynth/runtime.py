"""Where and how computation runs: device choice, deterministic kernels, progress bars."""

from __future__ import annotations

import contextlib
import torch
from genosynth.errors import InputError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``cpu``, ``cuda`` or ``auto`` (CUDA when present)."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu or auto")
    if device not in ("cpu", "cuda"):
        raise InputError(f"--device must be cpu, cuda or auto, got {device!r}")
    return torch.device(device)


@contextlib.contextmanager
def deterministic():
    """Deterministic torch algorithms inside the block (restored after)."""
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def progress_bar(total: int | None, desc: str, enabled: bool, initial: int = 0, *, unit: str = "epoch",
                 delay: float = 0.0):
    """A tqdm bar of ``total`` ``unit`` (None when ``enabled`` is False); shown after ``delay`` seconds."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, leave=True, delay=delay)
