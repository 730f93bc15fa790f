"""Provenance of every output: software versions, and the record written beside logs, checkpoints and files."""

from __future__ import annotations

import platform
import numpy as np
import torch
from genosynth import __version__


def versions() -> dict[str, str]:
    """Versions of the software that trained a model."""
    return {"genosynth": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}
