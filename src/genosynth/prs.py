"""Phenotype utility of a synthetic cohort: polygenic-score transfer and recovery of causal SNPs.

Two questions a user of a synthetic case/control cohort asks:

* **Does a risk model learnt on it work on real people?** :func:`prs_transfer` trains a model
  on one cohort and reports its AUC on another. Trained on synthetic and tested on a real
  holdout it is TSTR (train on synthetic, test on real); trained on the real training cohort it
  is TRTR, the reference. :func:`tstr_trtr` runs both. Two models: an L2-penalised logistic
  regression on standardised genotypes (``"logistic_l2"``), and the classical clumping +
  thresholding polygenic score (``"clumped_beta"``: GWAS log odds ratios of the LD-clumped SNPs
  below a p-value threshold, summed over ALT counts).
* **Does a GWAS on it find the true signals?** :func:`causal_recovery` takes the known causal
  SNPs of a simulated trait and reports, of those that the real-data GWAS finds at a threshold,
  the fraction the synthetic-data GWAS also finds.

Every function matches variants between cohorts by id and raises :class:`InputError` naming
the fix when the cohorts do not share them.

References
----------
Esteban C., Hyland S. L., Raetsch G. (2017) Real-valued (medical) time series generation with
recurrent conditional GANs. arXiv:1706.02633. (train on synthetic, test on real)

Choi S. W., Mak T. S.-H., O'Reilly P. F. (2020) Tutorial: a guide to performing polygenic risk
score analyses. Nature Protocols 15: 2759-2772. (clumping + thresholding)

Purcell S. M. et al. (2009) Common polygenic variation contributes to risk of schizophrenia and
bipolar disorder. Nature 460: 748-752. (polygenic score from GWAS log odds ratios)

Hanley J. A., McNeil B. J. (1982) The meaning and use of the area under a receiver operating
characteristic (ROC) curve. Radiology 143(1): 29-36.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from genosynth.cohort import Cohort
from genosynth.errors import InputError
from genosynth.stats.association import binary_phenotype, gwas, ld_clump, single_threaded_blas
from genosynth.stats.frequency import called_mean, dosage

METHODS = ("logistic_l2", "clumped_beta")


# ================================================================================ helpers
def _snp_ids(cohort: Cohort, snps) -> np.ndarray:
    """Variant ids of ``snps`` (ids, or integer indices into ``cohort``; None = all)."""
    ids = cohort.variants["id"].astype(str).to_numpy()
    if snps is None:
        return ids
    snps = np.asarray(list(snps))
    if snps.dtype.kind in "iu":
        if len(snps) and (snps.min() < 0 or snps.max() >= len(ids)):
            raise InputError(f"SNP indices must lie in 0..{len(ids) - 1}")
        return ids[snps]
    return snps.astype(str)


def _columns(cohort: Cohort, ids: np.ndarray, role: str) -> np.ndarray:
    """Column index in ``cohort`` of every id; raise naming the fix when some are absent."""
    pos = pd.Index(cohort.variants["id"].astype(str)).get_indexer(ids)
    if (pos < 0).any():
        missing = ids[pos < 0]
        raise InputError(
            f"the {role} cohort lacks {int((pos < 0).sum())} of the {len(ids)} SNPs (first: {list(missing[:3])}); "
            "give cohorts genotyped at the same variant ids (e.g. restrict both with the same .snplist)"
        )
    return pos


def _labelled(cohort: Cohort, phenotype: str, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Genotypes (int8, (n, S)) and 0/1 trait (n,) of the samples with a known trait."""
    y = binary_phenotype(cohort, phenotype)
    keep = np.isfinite(y)
    return cohort.genotypes()[keep][:, cols], y[keep]


def auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (ties count one half); 0.5 for a constant score.

    Parameters
    ----------
    y : shape (n,), 0/1
    score : shape (n,), higher = more likely a case

    References
    ----------
    Hanley J. A., McNeil B. J. (1982) Radiology 143(1): 29-36.
    """
    from scipy.stats import rankdata

    y = np.asarray(y, dtype=bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        raise InputError("an AUC needs cases and controls in the test cohort")
    r = rankdata(score)
    return float((r[y].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


# ================================================================================ PRS transfer
def prs_transfer(train: Cohort, test: Cohort, *, snps=None, method: str = "logistic_l2",
                 phenotype: str = "phenotype", C: float | None = None, p_threshold: float = 1e-5,
                 clump_r2: float | None = 0.2, clump_kb: float = 250.0, seed: int = 0) -> dict:
    """Train a risk model on ``train`` and report its AUC on ``test``.

    Parameters
    ----------
    train, test : Cohort
        Cohorts with a 0/1 trait in ``phenotype``; variants are matched by id.
    snps : ids or integer indices into ``train``, optional
        Predictors (default: every variant of ``train``).
    method : {"logistic_l2", "clumped_beta"}
        ``logistic_l2``: logistic regression with an L2 penalty on genotypes standardised with the
        training mean and sd (missing = training mean), fitted by :func:`fit_l2_logistic`; ``C``
        is the inverse penalty, chosen by stratified 3-fold cross-validated AUC on ``train``
        among :data:`CS` (``10^-4 .. 10^-1``) when ``None``.
        ``clumped_beta``: logistic GWAS on ``train`` (additive), LD clumping on ``train``
        (``clump_r2``, ``clump_kb``), score = sum of log odds ratio x ALT count over the index SNPs
        with ``p <= p_threshold``; no SNP passing gives a constant score (AUC 0.5).
    seed : int
        Seed of the cross-validation folds.

    Returns
    -------
    dict with ``auc``, ``method``, ``n_train``, ``n_test``, ``train_cases``, ``test_cases``,
    ``n_snps`` (offered), ``n_snps_used`` (with a non-zero weight), and ``C`` (logistic_l2) or
    ``p_threshold`` (clumped_beta).
    """
    if method not in METHODS:
        raise InputError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    ids = _snp_ids(train, snps)
    if not len(ids):
        raise InputError("no SNPs to train on; give a non-empty snps list")
    g_tr, y_tr = _labelled(train, phenotype, _columns(train, ids, "training"))
    g_te, y_te = _labelled(test, phenotype, _columns(test, ids, "test"))
    out = {"method": method, "n_train": int(len(y_tr)), "n_test": int(len(y_te)),
           "train_cases": int(y_tr.sum()), "test_cases": int(y_te.sum()), "n_snps": int(len(ids))}
    if method == "logistic_l2":
        with single_threaded_blas():
            score, extra = _logistic_l2(g_tr, y_tr, g_te, C=C, seed=seed)
    else:
        sub = train.subset(variants=_columns(train, ids, "training"))
        score, extra = _clumped_beta(sub, g_te, phenotype=phenotype, p_threshold=p_threshold,
                                     clump_r2=clump_r2, clump_kb=clump_kb)
    out.update(extra)
    out["auc"] = auc(y_te, score)
    return out


def _fill_standardise(g_tr: np.ndarray, g_te: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Standardise both with the training mean/sd; missing = training mean. float64 (n, S) each."""
    mean = called_mean(g_tr)  # (S,), 0 where nothing is called
    x_tr = dosage(g_tr, mean, dtype=np.float64)
    sd = x_tr.std(axis=0)
    sd[sd == 0] = 1.0
    x_te = dosage(g_te, mean, dtype=np.float64)
    return (x_tr - mean) / sd, (x_te - mean) / sd


def fit_l2_logistic(x: np.ndarray, y: np.ndarray, *, C: float, coef: np.ndarray | None = None,
                    max_iter: int = 50, tol: float = 1e-6) -> np.ndarray:
    """L2-penalised logistic regression by Newton's method.

    Minimises ``C * sum_i logloss(y_i, b0 + x_i w) + ||w||^2 / 2`` (scikit-learn's convention; the
    intercept ``b0`` is not penalised). Newton's method converges in a few steps here, and
    warm starts along a path of ``C`` make cross-validation cheap.

    Parameters
    ----------
    x : float64, shape (n, p)   standardised predictors
    y : float64, shape (n,)     0/1
    C : float                   inverse penalty
    coef : float64, shape (p + 1,), optional  start ``[b0, w]``

    Returns
    -------
    float64, shape (p + 1,): ``[b0, w]``.
    """
    from scipy import special

    n, p = x.shape
    xi = np.hstack([np.ones((n, 1)), x])  # (n, p+1)
    b = np.zeros(p + 1) if coef is None else coef.copy()
    ridge = np.ones(p + 1)
    ridge[0] = 0.0
    for _ in range(max_iter):
        mu = special.expit(xi @ b)  # (n,)
        grad = C * (xi.T @ (mu - y)) + ridge * b
        h = C * (xi.T @ (xi * (mu * (1.0 - mu))[:, None]))  # (p+1, p+1)
        h[np.diag_indices_from(h)] += ridge + 1e-10
        step = np.linalg.solve(h, grad)
        b -= step
        if np.abs(step).max() < tol:
            break
    return b


CS = np.logspace(-4, -1, 4)  # grid of inverse penalties searched by cross-validation


def _logistic_l2(g_tr, y_tr, g_te, *, C, seed):
    x_tr, x_te = _fill_standardise(g_tr, g_te)
    if C is None:
        rng = np.random.default_rng(seed)
        folds = np.empty(len(y_tr), dtype=np.int64)
        for label in (0.0, 1.0):  # stratified 3-fold split
            rows = np.flatnonzero(y_tr == label)
            folds[rng.permutation(rows)] = np.arange(len(rows)) % 3
        scores = np.zeros(len(CS))
        for f in range(3):
            fit, val = folds != f, folds == f
            coef = None
            for j, c in enumerate(CS):  # strongest penalty first: warm starts
                coef = fit_l2_logistic(x_tr[fit], y_tr[fit], C=c, coef=coef)
                scores[j] += auc(y_tr[val], x_tr[val] @ coef[1:]) / 3.0
        C = float(CS[int(np.argmax(scores))])
    coef = fit_l2_logistic(x_tr, y_tr, C=C)
    return x_te @ coef[1:], {"C": float(C), "n_snps_used": int(np.sum(np.abs(coef[1:]) > 0))}


def _clumped_beta(train: Cohort, g_te, *, phenotype, p_threshold, clump_r2, clump_kb):
    table = gwas(train, phenotype=phenotype, model="additive")
    p = table["p"].to_numpy()
    cand = np.flatnonzero(np.isfinite(p) & (p <= p_threshold))
    cand = cand[np.argsort(p[cand], kind="stable")]
    if clump_r2 is not None and len(cand):
        cand = ld_clump(train.genotypes(), train.variants, cand, r2=clump_r2, kb=clump_kb)
    beta = np.zeros(train.n_variants)
    beta[cand] = table["beta"].to_numpy()[cand]
    freq2 = 2.0 * table["a1_freq"].to_numpy()
    x_te = dosage(g_te, np.nan_to_num(freq2), dtype=np.float64)
    return x_te @ beta, {"p_threshold": float(p_threshold), "n_snps_used": int(len(cand))}


def tstr_trtr(real_train: Cohort, real_test: Cohort, synthetic: Cohort, *, snps=None,
              method: str = "logistic_l2", **options) -> dict:
    """TSTR (train on ``synthetic``) and TRTR (train on ``real_train``), both tested on ``real_test``.

    ``snps`` are ids (or indices into ``real_train``); other options go to :func:`prs_transfer`.
    Returns ``{"tstr": {...}, "trtr": {...}, "gap": trtr_auc - tstr_auc}``.
    """
    ids = _snp_ids(real_train, snps)
    trtr = prs_transfer(real_train, real_test, snps=ids, method=method, **options)
    tstr = prs_transfer(synthetic, real_test, snps=ids, method=method, **options)
    return {"tstr": tstr, "trtr": trtr, "gap": trtr["auc"] - tstr["auc"]}


# ================================================================================ causal SNPs
def _causal_ids(truth) -> list[str]:
    if isinstance(truth, dict):
        if "causal" not in truth:
            raise InputError("truth has no 'causal' entry; pass cohort.meta['truth'] of a simulated cohort")
        return [str(row["id"]) if isinstance(row, dict) else str(row) for row in truth["causal"]]
    return [str(t) for t in truth]


def _significance(level, p: pd.Series, real_found: set | None) -> float:
    """The p-value threshold of ``alpha``/``alpha_synthetic``: a number, ``"bonferroni"`` (0.05 / SNPs
    tested) or, for the synthetic GWAS (``real_found`` given), ``"replication"`` (0.05 / real hits)."""
    if level == "bonferroni":
        return 0.05 / max(int(np.isfinite(p).sum()), 1)
    if level == "replication" and real_found is not None:
        return 0.05 / max(len(real_found), 1)
    if isinstance(level, str):
        raise InputError(f"alpha must be a number or 'bonferroni' (alpha_synthetic also 'replication'), "
                         f"got {level!r}")
    return float(level)


def causal_recovery(real: Cohort, synthetic: Cohort, truth, *, alpha: float | str = 5e-8,
                    alpha_synthetic: float | str | None = None, model: str = "additive", pcs: int = 0,
                    phenotype: str = "phenotype") -> dict:
    """Of the causal SNPs the real-data GWAS finds, the fraction the synthetic-data GWAS also finds.

    Both cohorts get the same logistic GWAS (:func:`genosynth.stats.association.gwas`); a causal SNP is
    *found* in a cohort when its own p-value is below ``alpha``.

    Parameters
    ----------
    real, synthetic : Cohort
        Both hold every causal SNP id.
    truth : dict or list of str
        ``cohort.meta["truth"]`` of a simulated cohort (its ``causal`` rows) or causal ids.
    alpha : float or "bonferroni"
        Significance threshold; ``"bonferroni"`` is 0.05 / number of variants tested, per cohort.
    alpha_synthetic : float, "bonferroni", "replication" or None
        Threshold in the synthetic GWAS (default: the same as ``alpha``). ``"replication"`` is
        0.05 / number of causal SNPs found in the real GWAS, the usual replication-study threshold:
        it asks whether the synthetic cohort *replicates* the real hits rather than whether it
        reaches genome-wide significance again, which fresh real samples of the same size often
        do not (see ``docs/phenotype.md``).
    model, pcs, phenotype : as in :func:`genosynth.stats.association.gwas`.

    Returns
    -------
    dict: ``recovery`` (``found_both / found_real``; NaN when the real GWAS finds none),
    ``n_causal``, ``found_real``, ``found_synthetic``, ``found_both`` (id lists),
    ``sign_agreement`` (fraction of ``found_both`` with the same effect sign),
    ``hits_real`` / ``hits_synthetic`` (all variants below the threshold), ``alpha_real`` /
    ``alpha_synthetic``.
    """
    causal = np.asarray(_causal_ids(truth), dtype=object).astype(str)
    if not len(causal):
        raise InputError("truth lists no causal SNPs")
    res = {}
    for role, cohort in (("real", real), ("synthetic", synthetic)):
        cols = _columns(cohort, causal, role)
        table = gwas(cohort, phenotype=phenotype, model=model, pcs=pcs)
        level = alpha if role == "real" or alpha_synthetic is None else alpha_synthetic
        a = _significance(level, table["p"], res["real"]["found"] if role == "synthetic" else None)
        p = table["p"].to_numpy()
        res[role] = {"found": set(causal[np.nan_to_num(p[cols], nan=1.0) < a].tolist()),
                     "beta": dict(zip(causal, table["beta"].to_numpy()[cols])),
                     "hits": int(np.sum(np.nan_to_num(p, nan=1.0) < a)), "alpha": a}
    real_found, syn_found = res["real"]["found"], res["synthetic"]["found"]
    both = sorted(real_found & syn_found)
    signs = [np.sign(res["real"]["beta"][i]) == np.sign(res["synthetic"]["beta"][i]) for i in both]
    return {
        "recovery": len(both) / len(real_found) if real_found else math.nan,
        "n_causal": int(len(causal)),
        "found_real": sorted(real_found),
        "found_synthetic": sorted(syn_found),
        "found_both": both,
        "sign_agreement": float(np.mean(signs)) if signs else math.nan,
        "hits_real": res["real"]["hits"],
        "hits_synthetic": res["synthetic"]["hits"],
        "alpha_real": res["real"]["alpha"],
        "alpha_synthetic": res["synthetic"]["alpha"],
    }


__all__ = ["CS", "METHODS", "auc", "fit_l2_logistic", "causal_recovery", "prs_transfer", "tstr_trtr"]
