"""Provenance of every output: software versions, and the record written beside logs, checkpoints and files.

One place says what produced an output: :func:`versions` (stored in checkpoints),
:func:`command_line` (the ``Command:`` line of ``PREFIX.log``), :func:`sha256_file` (input
checksums) and :func:`provenance`, the record that the JSON files beside outputs carry
(as msprime's ``provenance.py``).

>>> rec = provenance(command=["info", "--vcf", "a.vcf"], seed=3)
>>> rec["command"], rec["seed"], sorted(rec["versions"])
('genosynth info --vcf a.vcf', 3, ['genosynth', 'numpy', 'python', 'torch'])
>>> sorted(versions(libraries=False))
['genosynth', 'python']
"""

from __future__ import annotations

import argparse
import hashlib
import platform
from collections.abc import Mapping, Sequence

from genosynth import __version__


def versions(*, libraries: bool = True) -> dict[str, str]:
    """Versions of the software behind an output (``versions()`` is what a checkpoint stores).

    Parameters
    ----------
    libraries : bool
        Include torch and numpy. ``False`` gives genosynth and Python only, without importing
        torch (log and file headers of commands that need no torch).

    Returns
    -------
    dict
        ``{"genosynth", "torch", "numpy", "python"}`` (in that order) -> version string.
    """
    found = {"genosynth": __version__}
    if libraries:
        import numpy as np
        import torch

        found.update(torch=torch.__version__, numpy=np.__version__)
    found["python"] = platform.python_version()
    return found


def command_line(command: Sequence[str] | str) -> str:
    """``"genosynth ARG ..."`` for the arguments after ``genosynth`` (a string is kept as it is)."""
    if isinstance(command, str):
        return command
    return f"genosynth {' '.join(command)}"


def sha256_file(path: str) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def provenance(*, command: Sequence[str] | str | None = None, seed: int | None = None,
               options: argparse.Namespace | Mapping | None = None, inputs: Mapping | None = None,
               timings: Mapping | None = None) -> dict:
    """The provenance record of one run, for the JSON beside its outputs.

    Parameters
    ----------
    command : list of str or str, optional
        The arguments after ``genosynth`` (see :func:`command_line`), or the whole line.
    seed : int, optional
        The seed actually used (after a ``None`` seed was drawn).
    options : argparse.Namespace or dict, optional
        Resolved options; a namespace gives its attributes not starting with ``_``.
    inputs : dict, optional
        Input name -> path, or -> ``{file: sha256}`` (:func:`sha256_file`), as given.
    timings : dict, optional
        Stage -> seconds, as given.

    Returns
    -------
    dict
        ``"versions"`` (:func:`versions`) and, in this order, each of ``"command"``, ``"seed"``,
        ``"options"``, ``"inputs"``, ``"timings"`` that was given.
    """
    if isinstance(options, argparse.Namespace):
        options = {k: v for k, v in vars(options).items() if not k.startswith("_")}
    given = {"command": None if command is None else command_line(command), "seed": seed,
             "options": options, "inputs": inputs, "timings": timings}
    return {"versions": versions(), **{k: v for k, v in given.items() if v is not None}}


__all__ = ["command_line", "provenance", "sha256_file", "versions"]
