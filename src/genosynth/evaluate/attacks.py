"""Privacy: identical records, distance to closest record, membership inference, AATS.

Distances are Euclidean between genotype-count vectors (missing calls filled with twice the
real-train allele frequency), computed in blocks (:func:`nearest_distances`), never as a full
people x people matrix.

References
----------
Yelmen B. et al. (2021) Creating artificial human genomes using generative neural networks.
PLOS Genetics 17(2): e1009303. (Nearest-neighbour adversarial accuracy AA_TS and privacy loss.)
Yale A. et al. (2020) Generation and evaluation of privacy preserving synthetic health data.
Neurocomputing 416: 244-255. (Adversarial accuracy.)
Chen D. et al. (2020) GAN-Leaks: a taxonomy of membership inference attacks against generative
models. ACM CCS 2020. (Distance-based membership inference.)
"""

from __future__ import annotations

import numpy as np

from genosynth.evaluate._arrays import distance_matrix, nearest_distances


def identical_rows(query: np.ndarray, ref: np.ndarray) -> int:
    """Number of rows of ``query`` (int8, (n, V)) equal to some row of ``ref`` (int8, (m, V))."""
    if query.shape[1] != ref.shape[1]:
        raise ValueError("query and ref must have the same number of columns")
    seen = {r.tobytes() for r in np.ascontiguousarray(ref)}
    return int(sum(q.tobytes() in seen for q in np.ascontiguousarray(query)))


def aats(real: np.ndarray, synthetic: np.ndarray, *, chunk: int = 1024) -> dict:
    """Nearest-neighbour adversarial accuracy of equal-size sets.

    ``AA_TS = 0.5 * (mean_r [d_RS(r) > d_RR(r)] + mean_s [d_SR(s) > d_SS(s)])``; 0.5 is ideal, near 0
    means synthetic people sit on top of real ones (copying), near 1 means they are far from all.

    Parameters
    ----------
    real, synthetic : float32, shape (n, n_variants) each (equal ``n`` as in Yelmen et al.).
    """
    d_rs = nearest_distances(real, synthetic, chunk=chunk)
    d_rr = nearest_distances(real, real, exclude_self=True, chunk=chunk)
    d_sr = nearest_distances(synthetic, real, chunk=chunk)
    d_ss = nearest_distances(synthetic, synthetic, exclude_self=True, chunk=chunk)
    a_real = float(np.mean(d_rs > d_rr))
    a_syn = float(np.mean(d_sr > d_ss))
    return {"aats": 0.5 * (a_real + a_syn), "aa_real": a_real, "aa_synthetic": a_syn}


def mia_auc(d_members: np.ndarray, d_nonmembers: np.ndarray) -> float:
    """AUC of the attack "closer to a synthetic record = member" (0.5 = no information)."""
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.ones(len(d_members)), np.zeros(len(d_nonmembers))]
    return float(roc_auc_score(y, -np.r_[d_members, d_nonmembers]))


class _Distances:
    """Nearest-neighbour distances between (subsets of) two sets.

    When the full ``n_a x n_b`` matrix is small (``max_cells``) it is computed once and every
    subsample is a slice of it; otherwise each query is computed in blocks from the data.
    """

    def __init__(self, a: np.ndarray, b: np.ndarray, *, same: bool, chunk: int, max_cells: int):
        self.a, self.b, self.same, self.chunk = a, b, same, chunk
        self.full = None
        if a.shape[0] * b.shape[0] <= max_cells:
            self.full = distance_matrix(a, b, chunk=chunk)  # (n_a, n_b)
            if same:
                np.fill_diagonal(self.full, np.inf)

    def _block(self, ia, ib) -> np.ndarray:
        """The precomputed distances ``full[ia][:, ib]`` (``None`` = all rows / columns)."""
        m = self.full if ia is None else self.full[ia]
        return m if ib is None else m[:, ib]

    def _subsets(self, ia, ib) -> tuple[np.ndarray, np.ndarray]:
        """The rows ``a[ia]`` and ``b[ib]`` (``None`` = all rows)."""
        return (self.a if ia is None else self.a[ia]), (self.b if ib is None else self.b[ib])

    def min_over_b(self, ia=None, ib=None) -> np.ndarray:
        """For each row of ``a[ia]``, the distance to its closest row of ``b[ib]``."""
        if self.full is not None:
            return self._block(ia, ib).min(axis=1).astype(np.float64)
        a, b = self._subsets(ia, ib)
        same = self.same and (ia is ib or (ia is not None and ib is not None and np.array_equal(ia, ib)))
        return nearest_distances(a, b, exclude_self=same, chunk=self.chunk)

    def min_over_a(self, ia=None, ib=None) -> np.ndarray:
        """For each row of ``b[ib]``, the distance to its closest row of ``a[ia]``."""
        if self.full is not None:
            return self._block(ia, ib).min(axis=0).astype(np.float64)
        a, b = self._subsets(ia, ib)
        return nearest_distances(b, a, chunk=self.chunk)


def _aats_sub(d_rs: _Distances, d_rr: _Distances, d_ss: _Distances, ir: np.ndarray, is_: np.ndarray) -> float:
    """AA_TS of ``real[ir]`` vs ``synthetic[is_]`` from cached or blocked distances."""
    a_real = np.mean(d_rs.min_over_a(is_, ir) > d_rr.min_over_b(ir, ir))
    a_syn = np.mean(d_rs.min_over_b(is_, ir) > d_ss.min_over_b(is_, is_))
    return float(0.5 * (a_real + a_syn))


def _dcr_and_mia(st: _Distances, sh: _Distances, d_syn_ho: np.ndarray, m: int, *, repeats: int,
                 rng: np.random.Generator):
    """Repeated DCR and distance-based membership inference, train subsampled to ``m`` people each time.

    Returns (MIA AUCs, closer-to-train shares, median DCRs to train, the first repeat's DCR to train
    of every synthetic person).
    """
    n_tr, n_ho = len(st.b), len(sh.b)
    d_ho_syn = sh.min_over_a()  # (n_holdout,) non-members
    d_tr_syn_all = st.min_over_a()  # (n_train,) members
    aucs, closer, med_tr = [], [], []
    d_syn_tr_keep = None
    for _ in range(max(1, repeats)):
        mi = np.sort(rng.choice(n_tr, size=m, replace=False))
        hi = np.sort(rng.choice(n_ho, size=m, replace=False))
        aucs.append(mia_auc(d_tr_syn_all[mi], d_ho_syn[hi]))
        d_syn_tr = st.min_over_b(None, mi)
        d_syn_h = d_syn_ho if m == n_ho else sh.min_over_b(None, hi)
        closer.append(float(np.mean(d_syn_tr < d_syn_h) + 0.5 * np.mean(d_syn_tr == d_syn_h)))
        med_tr.append(float(np.median(d_syn_tr)))
        if d_syn_tr_keep is None:
            d_syn_tr_keep = d_syn_tr
    return aucs, closer, med_tr, d_syn_tr_keep


def privacy_metrics(x_train: np.ndarray, x_holdout: np.ndarray, x_syn: np.ndarray, *, mia_repeats: int,
                    aats_repeats: int, max_samples: int, chunk: int, rng: np.random.Generator,
                    max_cells: int = 25_000_000) -> dict:
    """DCR, membership inference and AATS / privacy loss for one synthetic set.

    Parameters
    ----------
    x_train, x_holdout, x_syn : float32, shapes (n_train, V), (n_holdout, V), (n_syn, V).
    max_cells : int
        Distance matrices up to this many entries (float32) are computed once and sliced for every
        subsample; larger ones are never formed (blocked nearest-neighbour search instead).

    Notes
    -----
    * DCR and membership inference use all synthetic people; train is subsampled to the holdout
      size each repeat so that "closer to train than to holdout" has 0.5 as its ideal.
    * AATS(train) pairs ``n = min(n_train, n_syn, max_samples)`` train people with as many synthetic
      people, AATS(holdout) ``min(n_holdout, n_syn, max_samples)`` holdout people (equal sizes within
      each, as in Yelmen et al.; AA_TS of equal-size sets does not drift with ``n``), so a copy of
      the training set scores AATS(train) = 0 instead of being diluted by a small holdout.
    """
    n_tr, n_ho, n_sy = len(x_train), len(x_holdout), len(x_syn)
    m = min(n_tr, n_ho)
    st = _Distances(x_syn, x_train, same=False, chunk=chunk, max_cells=max_cells)
    sh = _Distances(x_syn, x_holdout, same=False, chunk=chunk, max_cells=max_cells)
    ss = _Distances(x_syn, x_syn, same=True, chunk=chunk, max_cells=max_cells)
    tt = _Distances(x_train, x_train, same=True, chunk=chunk, max_cells=max_cells)
    hh = _Distances(x_holdout, x_holdout, same=True, chunk=chunk, max_cells=max_cells)
    d_syn_ho = sh.min_over_b()  # (n_syn,)
    aucs, closer, med_tr, d_syn_tr_keep = _dcr_and_mia(st, sh, d_syn_ho, m, repeats=mia_repeats, rng=rng)
    n_t = min(n_tr, n_sy, max_samples)
    n_h = min(n_ho, n_sy, max_samples)
    a_tr, a_ho = [], []
    for _ in range(max(1, aats_repeats)):
        ir, is_ = np.sort(rng.choice(n_tr, n_t, replace=False)), np.sort(rng.choice(n_sy, n_t, replace=False))
        a_tr.append(_aats_sub(st, tt, ss, ir, is_))
        ir, is_ = np.sort(rng.choice(n_ho, n_h, replace=False)), np.sort(rng.choice(n_sy, n_h, replace=False))
        a_ho.append(_aats_sub(sh, hh, ss, ir, is_))
        if n_t == n_tr == n_sy and n_h == n_ho:
            break  # nothing is subsampled: repeats would be identical
    return {
        "dcr_median_to_train": float(np.mean(med_tr)),
        "dcr_median_to_holdout": float(np.median(d_syn_ho)),
        "dcr_closer_to_train": float(np.mean(closer)),
        "dcr_train_matched_size": int(m),
        "mia_auc": float(np.mean(aucs)),
        "mia_auc_sd": float(np.std(aucs)),
        "mia_repeats": int(max(1, mia_repeats)),
        "mia_members": int(m),
        "aats_train": float(np.mean(a_tr)),
        "aats_holdout": float(np.mean(a_ho)),
        "aats_train_sd": float(np.std(a_tr)),
        "aats_holdout_sd": float(np.std(a_ho)),
        "privacy_loss": float(np.mean(a_ho) - np.mean(a_tr)),
        "aats_n_train": int(n_t),
        "aats_n_holdout": int(n_h),
        "aats_repeats": len(a_tr),
        "_dcr_to_train": d_syn_tr_keep,
        "_dcr_to_holdout": d_syn_ho,
    }
