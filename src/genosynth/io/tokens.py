"""Checks of single text tokens shared by the readers and writers.

>>> is_number("1e-3"), is_number("NA")
(True, False)
>>> check_tokens(["a", "b"], "sample id", fields="VCF fields are tab-separated")
"""

from __future__ import annotations

from collections.abc import Iterable

from genosynth.errors import InputError


def is_number(token: str) -> bool:
    """Whether ``float(token)`` parses (``"nan"`` and ``"inf"`` included)."""
    try:
        float(token)
    except ValueError:
        return False
    return True


def check_tokens(values: Iterable, what: str, *, fields: str) -> None:
    """Raise :class:`InputError` when a value is empty or contains whitespace.

    Parameters
    ----------
    values : iterable
        Ids or names about to be written as one field each.
    what : str
        Their name in the message, singular (``"sample id"``).
    fields : str
        How the target format separates fields, the reason given in the message.
    """
    bad = [str(v) for v in values if not str(v) or any(ch.isspace() for ch in str(v))]
    if bad:
        raise InputError(
            f"{len(bad)} {what}s are empty or contain whitespace (first: {bad[0]!r}); {fields}, so "
            "rename them (e.g. replace spaces by '_')"
        )
