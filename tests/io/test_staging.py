"""The on-disk staging matrix: rows in, columns (and rows) out, the file removed, space checked."""

from __future__ import annotations

import os

import numpy as np
import pytest

from genosynth.errors import InputError
from genosynth.io.staging import StagingMatrix, check_staging_space


def test_rows_written_in_batches_read_back_by_columns_and_rows(tmp_path):
    rng = np.random.default_rng(0)
    full = rng.integers(-1, 3, size=(37, 11), dtype=np.int8)  # (rows, cols)
    path = str(tmp_path / "m.staging.tmp")
    with StagingMatrix(path, n_rows=37, n_cols=11) as mat:
        for start in range(0, 37, 8):
            mat.write_rows(start, full[start:start + 8])
        order = np.array([3, 0, 10, 5])
        assert np.array_equal(mat.read_columns(order), full[:, order].T)
        blocks = list(mat.column_blocks(np.arange(11), block_bytes=37 * 3))  # 3 columns per block
        assert [b.shape[0] for b in blocks] == [3, 3, 3, 2]
        assert np.array_equal(np.concatenate(blocks), full.T)
        rows = list(mat.row_blocks(block_bytes=11 * 5, multiple=2))  # 4 rows per block (a multiple of 2)
        assert {b.shape[0] for b in rows[:-1]} == {4}
        assert np.array_equal(np.concatenate(rows), full)
    assert not os.path.exists(path)


def test_a_stale_file_is_replaced(tmp_path):
    path = tmp_path / "s.staging.tmp"
    path.write_bytes(b"x" * 1000)
    with StagingMatrix(str(path), n_rows=2, n_cols=3) as mat:
        assert os.path.getsize(path) == 6
        mat.write_rows(0, np.ones((2, 3), dtype=np.int8))
        assert mat.read_columns(np.arange(3)).sum() == 6
    assert not path.exists()


def test_space_check_names_the_fix(tmp_path):
    check_staging_space(str(tmp_path / "a"), 10, what="10 people")
    with pytest.raises(InputError, match="lower --n .* larger disk"):
        check_staging_space(str(tmp_path / "a"), 10**18, what="10**18 people")
