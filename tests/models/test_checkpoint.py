"""Old checkpoints still load and decode bit-identically.

``tests/data/ckpt_6d66687.pt`` was written by the code before the re-layout (commit 6d66687,
``genosynth.generator``), and the alleles it drew with ``seed=11`` were saved beside it
(``tests/data/README.md`` says how). The new :class:`genosynth.sampling.generator.Generator` must
load it and draw exactly the same alleles with plain decoding, and the alleles of the default
correlation-guided decoding as regenerated after the copula solve fix (tests/data/README.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from genosynth.sampling.generator import Generator

DATA = Path(__file__).resolve().parents[1] / "data"
CHECKPOINT = DATA / "ckpt_6d66687.pt"


@pytest.fixture(scope="module")
def old_model():
    """The old checkpoint, sampled on one thread (the guided decode is many tiny ops, which
    threads only slow down on a shared CPU; the draws are the same on one thread or several)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield Generator.load(str(CHECKPOINT))
    torch.set_num_threads(threads)


def test_old_checkpoint_loads(old_model):
    assert old_model.phased is False
    assert old_model.config.sampling.corr_guidance == "latent+copula"
    assert len(old_model.variants) == 60


@pytest.mark.parametrize("decoding, options", [("default", {}), ("none", {"corr_guidance": "none"})])
def test_old_checkpoint_decodes_bit_identically(old_model, decoding, options):
    cohort = old_model.sample(40, seed=11, **options)
    expected = np.load(DATA / f"ckpt_6d66687.alleles_{decoding}.npy")
    assert cohort.alleles.dtype == expected.dtype == np.int8
    assert np.array_equal(cohort.alleles, expected)
    labels = cohort.samples[["sample", "pop", "super_pop"]].to_numpy(dtype=str)
    assert np.array_equal(labels, np.load(DATA / "ckpt_6d66687.labels.npy"))
