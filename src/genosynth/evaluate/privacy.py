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

from genosynth.evaluate._arrays import nearest_distances


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


def privacy_metrics(x_train: np.ndarray, x_holdout: np.ndarray, x_syn: np.ndarray, *, mia_repeats: int,
                    aats_repeats: int, max_samples: int, chunk: int, rng: np.random.Generator) -> dict:
    """DCR, membership inference and AATS / privacy loss for one synthetic set.

    Parameters
    ----------
    x_train, x_holdout, x_syn : float32, shapes (n_train, V), (n_holdout, V), (n_syn, V).

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
    d_syn_ho = nearest_distances(x_syn, x_holdout, chunk=chunk)  # (n_syn,)
    d_ho_syn = nearest_distances(x_holdout, x_syn, chunk=chunk)  # (n_holdout,) non-members
    d_tr_syn_all = nearest_distances(x_train, x_syn, chunk=chunk)  # (n_train,) members
    aucs, closer, med_tr = [], [], []
    d_syn_tr_keep = None
    for _ in range(max(1, mia_repeats)):
        mi = rng.choice(n_tr, size=m, replace=False)
        hi = rng.choice(n_ho, size=m, replace=False)
        aucs.append(mia_auc(d_tr_syn_all[mi], d_ho_syn[hi]))
        d_syn_tr = nearest_distances(x_syn, x_train[mi], chunk=chunk)
        d_syn_h = d_syn_ho if m == n_ho else nearest_distances(x_syn, x_holdout[hi], chunk=chunk)
        closer.append(float(np.mean(d_syn_tr < d_syn_h) + 0.5 * np.mean(d_syn_tr == d_syn_h)))
        med_tr.append(float(np.median(d_syn_tr)))
        if d_syn_tr_keep is None:
            d_syn_tr_keep = d_syn_tr
    n_t = min(n_tr, n_sy, max_samples)
    n_h = min(n_ho, n_sy, max_samples)
    a_tr, a_ho = [], []
    for _ in range(max(1, aats_repeats)):
        s = x_syn[rng.choice(n_sy, size=n_t, replace=False)]
        a_tr.append(aats(x_train[rng.choice(n_tr, size=n_t, replace=False)], s, chunk=chunk)["aats"])
        s = x_syn[rng.choice(n_sy, size=n_h, replace=False)]
        a_ho.append(aats(x_holdout[rng.choice(n_ho, size=n_h, replace=False)], s, chunk=chunk)["aats"])
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
