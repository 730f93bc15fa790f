"""Training rows from a cohort: class frequencies counted in row chunks (memory flat in the cohort)."""

from __future__ import annotations

import pytest
import torch

from genosynth.training.data import class_frequencies


def dense_reference(a: torch.Tensor, labels: torch.Tensor, n_labels: int, k: int, pc: float):
    """The one-tensor computation (R x V x K floats) the chunked counter replaces."""
    al = a.long()
    ok = (al >= 0).float()
    onehot = torch.stack([(al == c).float() for c in range(k)], dim=2)  # (R, V, K)
    overall = (onehot.sum(0) + pc) / (ok.sum(0)[:, None] + k * pc)
    per = [(onehot[labels == j].sum(0) + pc) / (ok[labels == j].sum(0)[:, None] + k * pc) for j in range(n_labels)]
    return overall, torch.stack(per)


@pytest.mark.parametrize("rows, k", [(7, 2), (2500, 3)])  # one chunk, and three chunks of 1024
def test_chunked_class_frequencies_equal_the_dense_ones_bit_for_bit(rows, k):
    g = torch.Generator().manual_seed(rows)
    a = torch.randint(-1, k, (rows, 40), generator=g).to(torch.int8)  # -1 = missing
    labels = torch.randint(0, 4, (rows,), generator=g)
    got = class_frequencies(a, labels, 4, k, pseudo_count=0.5)
    want = dense_reference(a, labels, 4, k, 0.5)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert torch.allclose(got[0].sum(-1), torch.ones(40))


def test_a_label_with_nobody_gets_the_uniform_prior():
    a = torch.zeros(10, 5, dtype=torch.int8)
    _, per = class_frequencies(a, torch.zeros(10, dtype=torch.long), 2, 2, pseudo_count=0.5)
    assert torch.equal(per[1], torch.full((5, 2), 0.5))
    assert torch.all(per[0][:, 0] > 0.9)
