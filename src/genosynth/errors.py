"""Project exceptions. Every message says what is wrong and how to fix it.

The CLI turns a :class:`GenosynthError` into one line on stderr and exit status 2, with no
traceback; anything else is a bug and keeps its traceback.
"""


class GenosynthError(Exception):
    """Base class: a problem the user can fix (bad input, impossible option)."""


class InputError(GenosynthError):
    """An input file or table is missing, malformed or inconsistent."""


class PrivacyError(GenosynthError):
    """A privacy budget that cannot be met, or an operation that would leak private data."""
