"""Write-then-rename, so an interrupted run never leaves a half-written output.

>>> import os, tempfile
>>> d = tempfile.mkdtemp()
>>> with atomic_outputs([os.path.join(d, "a.txt")]) as (tmp,):
...     _ = open(tmp, "w").write("hello")
>>> open(os.path.join(d, "a.txt")).read()
'hello'
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator, Sequence

from genosynth.errors import InputError


@contextlib.contextmanager
def atomic_outputs(paths: Sequence[str | os.PathLike]) -> Iterator[list[str]]:
    """Yield temporary paths beside ``paths``; rename them all into place on success.

    On any exception every temporary file is removed and no final path is touched. Files that
    the body did not create are skipped at rename time (a writer may produce optional files).
    A final path that is a folder, or a folder that cannot be made, is an :class:`InputError`
    before anything is written.
    """
    finals = [os.fspath(p) for p in paths]
    tag = uuid.uuid4().hex[:8]
    temps = []
    for final in finals:
        folder, name = os.path.split(final)
        if os.path.isdir(final):
            raise InputError(f"{final} is a folder, so it cannot be written; move it away or choose another --out")
        if folder and not os.path.isdir(folder):
            try:
                os.makedirs(folder, exist_ok=True)
            except OSError as exc:
                raise InputError(f"cannot make the folder {folder} for {final} ({exc.strerror}); give --out a "
                                 "prefix in a folder you can write to") from None
        temps.append(os.path.join(folder, f".{name}.tmp-{tag}"))
    try:
        yield temps
        for tmp, final in zip(temps, finals):
            if os.path.exists(tmp):
                os.replace(tmp, final)
    except BaseException:
        for tmp in temps:
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)
        raise
