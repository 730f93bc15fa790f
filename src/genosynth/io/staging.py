"""An on-disk int8 matrix filled by rows and read back by columns, without holding it in memory.

A synthetic cohort is generated person by person (rows) but VCF, ``.bed`` and PGEN are written
variant by variant (columns). :class:`StagingMatrix` keeps the matrix **column-major** in a plain
file (``PREFIX.staging.tmp``) and moves data with ``pwrite`` / ``preadv``: nothing is memory
mapped, so the process holds only the block it is working on, whatever the number of people
(the file's pages live in the kernel's page cache, not in the process's resident set).

>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "m.tmp")
>>> with StagingMatrix(path, n_rows=3, n_cols=2) as m:
...     m.write_rows(0, np.array([[1, 2], [3, 4]], dtype=np.int8))
...     m.write_rows(2, np.array([[5, 6]], dtype=np.int8))
...     m.read_columns(np.array([1, 0])).tolist(), m.read_rows(1, 3).tolist()
([[2, 4, 6], [1, 3, 5]], [[3, 4], [5, 6]])
"""

from __future__ import annotations

import contextlib
import os
import shutil

import numpy as np

from genosynth.errors import InputError

BLOCK_BYTES = 8 << 20  # bytes read back per block (bounds the writers' memory)


def check_staging_space(path: str, n_bytes: int, *, what: str) -> None:
    """Raise :class:`InputError` when ``path``'s folder cannot hold ``n_bytes`` of staging.

    ``what`` names the request in the message (e.g. ``"--n 1000000000000 people x 40 SNPs"``).
    """
    folder = os.path.dirname(os.path.abspath(path))
    free = shutil.disk_usage(folder).free
    if n_bytes > free:
        raise InputError(
            f"{what} needs {_size(n_bytes)} of staging space beside --out, but {folder} has {_size(free)} free "
            "(and the output needs about as much again); lower --n (or split it over runs with different "
            "--seed), or give --out on a larger disk"
        )


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"  # pragma: no cover


class StagingMatrix:
    """int8 matrix, shape (n_rows, n_cols), stored column-major in the file ``path``.

    Create it (the file is created empty and sparse, replacing any stale file of that name), fill
    it with :meth:`write_rows`, read it with :meth:`read_columns` / :meth:`read_rows`; closing
    removes the file.
    """

    def __init__(self, path: str, *, n_rows: int, n_cols: int):
        self.path, self.n_rows, self.n_cols = path, int(n_rows), int(n_cols)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.ftruncate(self._fd, self.n_rows * self.n_cols)
        except OSError as exc:
            self.close()
            raise InputError(f"{path}: cannot create the staging file ({exc.strerror}); lower --n or give --out "
                             "on a disk with more space") from None

    def write_rows(self, start: int, block: np.ndarray) -> None:
        """Store ``block`` (int8, shape (b, n_cols)) as rows ``start .. start + b``."""
        cols = np.ascontiguousarray(block.T, dtype=np.int8)  # (n_cols, b)
        for j in range(self.n_cols):
            os.pwrite(self._fd, cols[j].data, j * self.n_rows + start)

    def read_columns(self, index: np.ndarray) -> np.ndarray:
        """Columns ``index`` as int8, shape (len(index), n_rows) (one column per row of the result)."""
        out = np.empty((len(index), self.n_rows), dtype=np.int8)
        for k, j in enumerate(np.asarray(index, dtype=np.int64)):
            got = os.preadv(self._fd, [out[k].data], int(j) * self.n_rows)
            if got != self.n_rows:  # pragma: no cover - a file shortened under us
                raise OSError(f"{self.path}: short read of column {j}")
        return out

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start .. stop`` as int8, shape (stop - start, n_cols)."""
        cols = np.empty((self.n_cols, stop - start), dtype=np.int8)  # (n_cols, b)
        for j in range(self.n_cols):
            os.preadv(self._fd, [cols[j].data], j * self.n_rows + start)
        return np.ascontiguousarray(cols.T)

    def column_blocks(self, order: np.ndarray, *, block_bytes: int = BLOCK_BYTES, limit: int = 2048):
        """Yield the columns in ``order`` as blocks int8, shape (c, n_rows), of at most ``block_bytes``."""
        step = max(1, min(limit, block_bytes // max(self.n_rows, 1)))
        for start in range(0, len(order), step):
            yield self.read_columns(order[start:start + step])

    def row_blocks(self, *, block_bytes: int = BLOCK_BYTES, multiple: int = 1):
        """Yield all rows in order as blocks int8, shape (r, n_cols), ``r`` a multiple of ``multiple``."""
        step = max(multiple, block_bytes // max(self.n_cols, 1) // multiple * multiple)
        for start in range(0, self.n_rows, step):
            yield self.read_rows(start, min(start + step, self.n_rows))

    def close(self) -> None:
        """Close and remove the file."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)

    def __enter__(self) -> "StagingMatrix":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["StagingMatrix", "check_staging_space", "BLOCK_BYTES"]
