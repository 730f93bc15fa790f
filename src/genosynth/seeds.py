"""The one seed policy of genosynth (as msprime resolves ``random_seed=None`` inside the library).

* :func:`resolve_seed` - a seed for non-private randomness: ``None`` draws one from the OS; the
  caller records the value it returns (log, checkpoint, provenance JSON), so the run can be
  repeated.
* :func:`noise_seed` - the seed of differential-privacy noise: always drawn from the OS and
  never recorded, whatever the caller passes (whoever knows the seed of a DP mechanism can redraw
  and subtract its noise). Only ``deterministic=True``, which tests use to compare runs, makes it
  take the given seed.

>>> resolve_seed(7)
7
>>> noise_seed(7) == noise_seed(7)  # secret draws: different every call
False
>>> noise_seed(7, deterministic=True)
7
"""

from __future__ import annotations

import secrets

from genosynth.errors import InputError

#: Seeds are drawn below this bound (they fit every RNG the pipeline seeds: torch, numpy, msprime).
SEED_BOUND = 2**31 - 1


def resolve_seed(seed: int | None) -> int:
    """``seed`` checked, or a fresh one drawn from the OS when ``None``; record what it returns."""
    if seed is None:
        return secrets.randbelow(SEED_BOUND)
    if int(seed) != seed or seed < 0:
        raise InputError(f"a seed must be an integer >= 0, got {seed!r}; pass --seed N (or none to draw one)")
    return int(seed)


def noise_seed(seed: int | None = None, *, deterministic: bool = False) -> int:
    """The seed of DP noise: secret (63 bits from the OS) unless ``deterministic`` asks for ``seed``.

    ``deterministic=True`` is for tests that compare two runs; a release made that way has no
    privacy guarantee against anyone who knows ``seed``.
    """
    if deterministic:
        if seed is None:
            raise InputError("deterministic DP noise needs an explicit seed; pass seed=N (tests only)")
        return resolve_seed(seed)
    return secrets.randbits(63)
