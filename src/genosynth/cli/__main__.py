"""``python -m genosynth.cli COMMAND ...``: the ``genosynth`` command, e.g. under ``torchrun -m genosynth.cli train``."""

from genosynth.cli import console

if __name__ == "__main__":
    console()
