"""Training rows from a cohort: class frequencies counted in row chunks (memory flat in the cohort)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genosynth.training import data as training_data
from genosynth.training.data import chunk_rows, class_counts, class_frequencies


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


def test_class_counts_in_chunks_of_a_few_rows_equal_the_dense_counts(monkeypatch):
    monkeypatch.setattr(training_data, "CHUNK_BYTES", 3 * 40 * 8)  # 3 rows per chunk of 40 SNPs
    assert chunk_rows(40) == 3
    g = torch.Generator().manual_seed(5)
    a = torch.randint(-1, 3, (20, 40), generator=g).to(torch.int8)  # -1 = missing
    labels = torch.randint(-1, 4, (20,), generator=g)  # -1: counted in the total row only
    count, seen = class_counts(a, labels, 3, 3)  # (4, V, K), (4, V)
    al = a.long()
    for j in range(3):
        mine = al[labels == j]
        assert torch.equal(count[j], torch.stack([(mine == c).sum(0) for c in range(3)], dim=1))
        assert torch.equal(seen[j], (mine >= 0).sum(0))
    assert torch.equal(count[3], torch.stack([(al == c).sum(0) for c in range(3)], dim=1))
    assert torch.equal(seen[3], (al >= 0).sum(0))


def test_chunk_rows_keeps_temporaries_small_and_is_at_least_one_row():
    assert chunk_rows(100_000, itemsize=4) * 100_000 * 4 <= training_data.CHUNK_BYTES
    assert chunk_rows(10**9) == 1
    assert chunk_rows(10, most=64) == 64


def test_a_label_with_nobody_gets_the_uniform_prior():
    a = torch.zeros(10, 5, dtype=torch.int8)
    _, per = class_frequencies(a, torch.zeros(10, dtype=torch.long), 2, 2, pseudo_count=0.5)
    assert torch.equal(per[1], torch.full((5, 2), 0.5))
    assert torch.all(per[0][:, 0] > 0.9)


def _balding_nichols_rows(rng, *, n_per: int, v: int = 2000, f: float = 0.01):
    """Haplotype rows of 2 groups x 3 labels; labels drawn around their group frequency with divergence f."""
    from genosynth.training.data import class_frequencies

    group_q = rng.uniform(0.05, 0.95, (2, v))
    rows, labels, truth = [], [], []
    for lab in range(6):
        qg = group_q[lab // 3]
        q = rng.beta(qg * (1 - f) / f, (1 - qg) * (1 - f) / f)  # (V,)
        truth.append(q)
        rows.append((rng.random((2 * n_per, v)) < q).astype(np.int8))
        labels += [lab] * (2 * n_per)
    a, y = torch.from_numpy(np.concatenate(rows)), torch.tensor(labels)
    _, per = class_frequencies(a, y, 6, 2, pseudo_count=0.5)
    return a, y, per, np.asarray(truth)


@pytest.mark.parametrize("n_per", [15, 400])
def test_label_shrinkage_estimates_the_divergence_and_moves_thin_labels_toward_truth(n_per):
    from genosynth.training.data import class_counts, shrink_label_frequencies

    rng = np.random.default_rng(n_per)
    a, y, per, truth = _balding_nichols_rows(rng, n_per=n_per)
    seen = class_counts(a, y, 6, 2)[1][:6]  # (L, V) called rows per label
    shrunk, info = shrink_label_frequencies(per, seen, [[0, 1, 2], [3, 4, 5]], alleles_per_row=1)
    assert all(0.004 < f < 0.02 for f in info["F"])  # simulated F = 0.01
    err_raw = np.abs(per[..., 1].numpy() - truth).mean()
    err_shrunk = np.abs(shrunk[..., 1].numpy() - truth).mean()
    assert err_shrunk < err_raw * (0.85 if n_per == 15 else 1.0)  # thin labels gain most
    assert torch.allclose(shrunk.sum(-1), torch.ones(6, truth.shape[1], dtype=shrunk.dtype))


def test_label_shrinkage_estimates_the_divergence_of_thin_labels_from_raw_frequencies():
    """A pseudo-count pulls thin labels' low frequencies toward 1/2: F from them comes out too low."""
    from genosynth.training.data import class_counts, class_frequencies, shrink_label_frequencies

    rng = np.random.default_rng(3)
    f, v, n_rows = 0.02, 4000, 30  # 15 people, rare-ish SNPs
    group_q = rng.uniform(0.02, 0.3, (2, v))
    rows = [(rng.random((n_rows, v)) < rng.beta(group_q[lab // 3] * (1 - f) / f, (1 - group_q[lab // 3]) * (1 - f) / f))
            .astype(np.int8) for lab in range(6)]
    a, y = torch.from_numpy(np.concatenate(rows)), torch.arange(6).repeat_interleave(n_rows)
    _, smooth = class_frequencies(a, y, 6, 2, pseudo_count=0.5)
    _, raw = class_frequencies(a, y, 6, 2, pseudo_count=1e-3)
    seen = class_counts(a, y, 6, 2)[1][:6]
    groups = [[0, 1, 2], [3, 4, 5]]
    _, from_smooth = shrink_label_frequencies(smooth, seen, groups, alleles_per_row=1)
    shrunk, from_raw = shrink_label_frequencies(smooth, seen, groups, alleles_per_row=1, raw=raw)
    assert all(fs < 0.85 * f for fs in from_smooth["F"])  # the bias this guards against
    assert all(abs(fr - f) < 0.25 * f for fr in from_raw["F"])
    assert torch.allclose(shrunk.sum(-1), torch.ones(6, v, dtype=shrunk.dtype))


def test_label_shrinkage_leaves_lone_labels_and_very_different_labels_alone():
    from genosynth.training.data import label_groups, shrink_label_frequencies

    per = torch.tensor([[[0.9, 0.1]] * 50, [[0.1, 0.9]] * 50, [[0.5, 0.5]] * 50])  # (3, 50, 2)
    counts = torch.full((3, 50), 800)
    shrunk, info = shrink_label_frequencies(per, counts, [[0, 1], [2]], alleles_per_row=1)
    assert torch.equal(shrunk[2], per[2]) and info["F"][1] is None
    assert info["F"][0] > 0.5 and torch.allclose(shrunk[:2], per[:2], atol=2e-3)  # kappa ~ 0.5 << 800
    vocab = ["CEU", "CHB", "TSI", "YRI"]
    parents = {"super_pop": {"CEU": "EUR", "CHB": "EAS", "TSI": "EUR", "YRI": "AFR"}}
    assert sorted(label_groups(vocab, parents)) == [[0, 2], [1], [3]]
    assert label_groups(vocab, {}) == [[0, 1, 2, 3]]
