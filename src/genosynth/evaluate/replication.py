"""Case/control association (Fig. 2): dominant-model per-SNP Z-test and the overlap of top hits.

For each SNP the carrier indicator (at least one ALT allele) is compared between cases and
controls with the two-proportion Z-test (pooled variance); its square is the Pearson chi-square of
the 2x2 carrier table, i.e. the dominant-model test of PLINK 1.9 ``--model``. The replication
figures compare real train with the real holdout (the ceiling) and with a synthetic set, each
subsampled to the same numbers of cases and controls.

References
----------
Purcell S. et al. (2007) PLINK: a tool set for whole-genome association and population-based
linkage analyses. American Journal of Human Genetics 81(3): 559-575.
Yelmen B. et al. (2021) Creating artificial human genomes using generative neural networks.
PLOS Genetics 17(2): e1009303.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from genosynth.evaluate.fidelity import spearman


def dominant_ztest(g: np.ndarray, is_case: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dominant-model Z-test per SNP.

    Parameters
    ----------
    g : int8, shape (n_people, n_variants); 0/1/2, -1 missing (excluded per SNP).
    is_case : bool, shape (n_people,); True = case, False = control.

    Returns
    -------
    z : float64, shape (n_variants,); positive when carriers are more frequent in cases. 0 where the
        SNP is monomorphic among the called people.
    neglog10p : float64, shape (n_variants,); two-sided -log10 p, computed from the log survival
        function so that very small p-values keep their rank.
    """
    ok = g >= 0
    carrier = (g >= 1) & ok
    case = is_case[:, None]
    n1 = (ok & case).sum(axis=0).astype(np.float64)
    n0 = (ok & ~case).sum(axis=0).astype(np.float64)
    c1 = (carrier & case).sum(axis=0).astype(np.float64)
    c0 = (carrier & ~case).sum(axis=0).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        p1 = c1 / n1
        p0 = c0 / n0
        pool = (c1 + c0) / (n1 + n0)
        se = np.sqrt(pool * (1 - pool) * (1 / n1 + 1 / n0))
        z = (p1 - p0) / se
    z = np.where(np.isfinite(z), z, 0.0)
    neglog10p = -(math.log(2.0) + stats.norm.logsf(np.abs(z))) / math.log(10.0)
    return z, np.maximum(neglog10p, 0.0)


def top_overlap(a: np.ndarray, b: np.ndarray, fraction: float) -> float:
    """Share of the ``fraction`` SNPs with the lowest p in ``a`` that are also in ``b``'s top set.

    ``a`` and ``b`` are -log10 p, float64 shape (n_variants,); ties are broken by SNP order.
    """
    k = max(1, int(math.ceil(fraction * len(a))))
    ta = np.argsort(-a, kind="stable")[:k]
    tb = np.argsort(-b, kind="stable")[:k]
    return float(len(np.intersect1d(ta, tb)) / k)


def matched_indices(case: np.ndarray, n_case: int, n_control: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``n_case`` random cases and ``n_control`` random controls (``case`` bool)."""
    ci = np.flatnonzero(case)
    ki = np.flatnonzero(~case)
    return np.sort(np.concatenate([rng.choice(ci, n_case, replace=False), rng.choice(ki, n_control, replace=False)]))


def replication(g_ref: np.ndarray, case_ref: np.ndarray, g_other: np.ndarray, case_other: np.ndarray, *,
                n_case: int, n_control: int, fractions: tuple[float, ...], repeats: int,
                rng: np.random.Generator) -> dict:
    """Top-hit overlap and rank correlation of -log10 p between two sets at matched sample sizes.

    Each repeat draws ``n_case`` cases and ``n_control`` controls from each set, runs the test on
    both and compares; the figures are averaged over ``repeats`` (sd alongside). ``lambda_gc`` /
    ``lambda_gc_ref`` are the genomic inflation of the other / the reference set at these sizes.
    """
    overlaps = {f: [] for f in fractions}
    rhos, lam_a, lam_b = [], [], []
    for _ in range(repeats):
        ia = matched_indices(case_ref, n_case, n_control, rng)
        ib = matched_indices(case_other, n_case, n_control, rng)
        _, pa = dominant_ztest(g_ref[ia], case_ref[ia])
        _, pb = dominant_ztest(g_other[ib], case_other[ib])
        for f in fractions:
            overlaps[f].append(top_overlap(pa, pb, f))
        rhos.append(spearman(pa, pb))
        lam_a.append(lambda_gc(pa))
        lam_b.append(lambda_gc(pb))
    out = {"n_case": int(n_case), "n_control": int(n_control), "repeats": int(repeats)}
    for f in fractions:
        key = f"top{int(round(100 * f))}"
        out[f"overlap_{key}"] = float(np.mean(overlaps[f]))
        out[f"overlap_{key}_sd"] = float(np.std(overlaps[f]))
        # expected overlap of two random top sets: the chance level
        out[f"overlap_{key}_chance"] = float(math.ceil(f * g_ref.shape[1]) / g_ref.shape[1])
    out["rank_r"] = float(np.nanmean(rhos)) if np.isfinite(rhos).any() else float("nan")
    # genomic inflation at the matched sizes (it grows with n wherever cases and controls differ)
    out["lambda_gc"] = _nanmean(lam_b)
    out["lambda_gc_ref"] = _nanmean(lam_a)
    return out


def _nanmean(values: list[float]) -> float:
    v = np.asarray(values, dtype=float)
    return float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")


def lambda_gc(neglog10p: np.ndarray) -> float:
    """Genomic inflation factor: median chi-square (1 df) of the p-values over its null median 0.455."""
    v = neglog10p[np.isfinite(neglog10p)]
    if v.size == 0:
        return float("nan")
    chi2 = stats.chi2.isf(np.power(10.0, -np.median(v)), df=1)
    return float(chi2 / stats.chi2.ppf(0.5, df=1))


def qq_points(neglog10p: np.ndarray, *, max_points: int = 2000) -> dict:
    """Expected vs observed -log10 p for a QQ plot (sorted, thinned to ``max_points``) and lambda_GC."""
    obs = np.sort(neglog10p[np.isfinite(neglog10p)])[::-1]
    n = len(obs)
    if n == 0:
        return {"expected": [], "observed": [], "lambda_gc": None}
    exp = -np.log10((np.arange(1, n + 1) - 0.5) / n)
    keep = np.unique(np.linspace(0, n - 1, min(n, max_points)).astype(int))
    return {"expected": exp[keep].tolist(), "observed": obs[keep].tolist(), "lambda_gc": lambda_gc(obs)}
