"""Association testing: logistic GWAS with covariates (IRLS), principal components, LD clumping, association scores."""

from __future__ import annotations

import math
import numpy as np
import pandas as pd
from scipy import special, stats
from genosynth.cohort import Cohort
from genosynth.errors import InputError
from threadpoolctl import threadpool_limits


MODELS = ("additive", "dominant")


GWAS_COLUMNS = ("chrom", "pos", "id", "ref", "alt", "a1", "a1_freq", "obs_ct", "beta", "se", "z", "p",
                "neg_log10_p", "converged")


def single_threaded_blas():
    """Context manager: BLAS on one thread.

    The products here are skinny (n x k with k < 20, or matrix-vector); a threaded BLAS only
    adds synchronisation, which on a busy machine costs 10-100x (measured: an L2-logistic fit on
    1,000 x 41 took 0.46 s with OpenBLAS threads, 0.02 s with one).
    """
    import contextlib

    return threadpool_limits(limits=1, user_api="blas") if threadpool_limits else contextlib.nullcontext()


# ================================================================================ inputs
def binary_phenotype(cohort: Cohort, column: str = "phenotype") -> np.ndarray:
    """The 0/1 trait of ``cohort`` as float64, shape (n_samples,), NaN where missing.

    Accepts 0/1 coding and PLINK's 1 = control / 2 = case coding. Raises :class:`InputError`
    naming the fix when the column is absent, not binary, or lacks cases or controls.
    """
    if column not in cohort.samples.columns:
        raise InputError(
            f"sample table has no column {column!r}; give a --samples table with a 0/1 {column} column, "
            "or define cases and controls by population with --case-pop/--control-pop"
        )
    y = pd.to_numeric(cohort.samples[column], errors="coerce").to_numpy(dtype=np.float64)
    ok = np.isfinite(y)
    values = set(np.unique(y[ok]).tolist())
    if values <= {1.0, 2.0} and values == {1.0, 2.0}:
        y = y - 1.0  # PLINK coding
    elif not values <= {0.0, 1.0}:
        raise InputError(
            f"column {column!r} is not a binary trait (values {sorted(values)[:5]}...); code controls 0 and "
            "cases 1 (or PLINK 1/2), missing as NA"
        )
    n_case = int(np.nansum(y == 1))
    n_ctrl = int(np.nansum(y == 0))
    if n_case < 2 or n_ctrl < 2:
        raise InputError(
            f"the trait in column {column!r} has {n_case} cases and {n_ctrl} controls; an association test "
            "needs both (check the phenotype coding: 0 control, 1 case)"
        )
    return y


def encode(g: np.ndarray, model: str) -> np.ndarray:
    """Genotype coding of the test.

    Parameters
    ----------
    g : int8, shape (n_samples, n_variants)
        ALT counts, -1 missing.
    model : {"additive", "dominant"}
        ``additive``: ALT count 0/1/2; ``dominant``: carries ALT (0/1).

    Returns
    -------
    float64, shape (n_samples, n_variants); NaN where missing.
    """
    if model not in MODELS:
        raise InputError(f"model must be one of {', '.join(MODELS)}, got {model!r}")
    x = g.astype(np.float64)
    if model == "dominant":
        x = np.minimum(x, 1.0)
    x[g < 0] = np.nan
    return x


def standardised(g: np.ndarray) -> np.ndarray:
    """Mean-imputed, centred, unit-variance ALT counts, float32 shape (n_samples, n_variants).

    Monomorphic columns are all zero.
    """
    x = g.astype(np.float32)
    miss = g < 0
    x[miss] = np.nan
    mean = np.nanmean(x, axis=0) if miss.any() else x.mean(axis=0)
    mean = np.nan_to_num(mean)
    x = np.where(miss, mean[None, :], x) - mean[None, :]
    sd = x.std(axis=0)
    sd[sd == 0] = np.inf
    return (x / sd[None, :]).astype(np.float32)


def genotype_pcs(g: np.ndarray, n_pcs: int, *, seed: int = 0) -> np.ndarray:
    """Top principal components of standardised genotypes, for use as GWAS covariates.

    Parameters
    ----------
    g : int8, shape (n_samples, n_variants)
        ALT counts, -1 missing (mean-imputed).
    n_pcs : int
    seed : int
        Seed of the randomised SVD (Halko et al. 2011).

    Returns
    -------
    float64, shape (n_samples, n_pcs); each column has mean 0 and variance 1.

    References
    ----------
    Price A. L. et al. (2006) Nature Genetics 38(8): 904-909.
    """
    n, v = g.shape
    if n_pcs < 1:
        return np.zeros((n, 0))
    if n_pcs >= min(n, v):
        raise InputError(f"--pcs {n_pcs} needs more samples and variants than {n} x {v}; use fewer PCs")
    z = standardised(g)  # (N, V)
    from sklearn.utils.extmath import randomized_svd

    u, _, _ = randomized_svd(z, n_pcs, n_oversamples=20, n_iter=7, random_state=seed)  # (N, n_pcs)
    u = u.astype(np.float64)
    u = u * np.where(u[np.abs(u).argmax(axis=0), range(u.shape[1])] < 0, -1.0, 1.0)  # deterministic sign
    u = u - u.mean(axis=0)
    return u / u.std(axis=0)


# ================================================================================ logistic GWAS
def _irls_null(c: np.ndarray, y: np.ndarray, *, max_iter: int = 50, tol: float = 1e-10) -> np.ndarray:
    """Logistic regression of ``y`` on covariates ``c`` (N, k) alone; coefficients (k,)."""
    b = np.zeros(c.shape[1])
    b[0] = special.logit(np.clip(y.mean(), 1e-6, 1 - 1e-6))
    for _ in range(max_iter):
        p = special.expit(c @ b)
        w = p * (1 - p)
        step = np.linalg.solve((c * w[:, None]).T @ c, c.T @ (y - p))
        b += step
        if np.abs(step).max() < tol:
            break
    return b


def _irls_block(x: np.ndarray, y: np.ndarray, c: np.ndarray, b0: np.ndarray, *, max_iter: int,
                tol: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Newton-Raphson for a block of SNPs at once.

    Parameters
    ----------
    x : float64, shape (N, B)   coded genotypes of B SNPs, NaN missing
    y : float64, shape (N,)     0/1 trait
    c : float64, shape (N, k)   covariates, first column the intercept
    b0 : float64, shape (k,)    null-model coefficients (start)

    Returns
    -------
    beta, se : float64, shape (B,)   SNP effect (log odds ratio) and its Wald standard error
    converged : bool, shape (B,)
    """
    n, nb = x.shape
    k = c.shape[1]
    m = ~np.isnan(x)  # (N, B)
    x = np.where(m, x, 0.0)
    mf = m.astype(np.float64)
    has_missing = not m.all()
    cc = (c[:, :, None] * c[:, None, :]).reshape(n, k * k)  # (N, k*k)
    coef = np.empty((nb, k + 1))
    coef[:, :k] = b0[None, :]
    coef[:, k] = 0.0
    active = np.ones(nb, dtype=bool)
    converged = np.zeros(nb, dtype=bool)

    def hessian_and_score(cols):
        xa, ma = x[:, cols], mf[:, cols]  # (N, A)
        eta = c @ coef[cols, :k].T + xa * coef[cols, k][None, :]  # (N, A)
        p = special.expit(eta)
        w = p - p * p  # (N, A)
        r = y[:, None] - p  # (N, A)
        if has_missing:
            w *= ma
            r *= ma
        wx = w * xa
        h = np.empty((len(cols), k + 1, k + 1))  # (A, k+1, k+1)
        h[:, :k, :k] = (w.T @ cc).reshape(len(cols), k, k)
        h[:, :k, k] = wx.T @ c
        h[:, k, :k] = h[:, :k, k]
        h[:, k, k] = (wx * xa).sum(axis=0)
        u = np.empty((len(cols), k + 1))  # (A, k+1)
        u[:, :k] = r.T @ c
        u[:, k] = (r * xa).sum(axis=0)
        return h, u

    for _ in range(max_iter):
        cols = np.flatnonzero(active)
        if not len(cols):
            break
        h, u = hessian_and_score(cols)
        step, ok = _batched_solve(h, u)
        step[~ok] = 0.0
        coef[cols] += step
        done = ok & (np.abs(step).max(axis=1) < tol)
        bad = ~ok | ~np.isfinite(coef[cols]).all(axis=1) | (np.abs(coef[cols, k]) > 30)
        converged[cols[done & ~bad]] = True
        active[cols[done | bad]] = False
    h, _ = hessian_and_score(np.arange(nb))
    inv, ok = _batched_inverse(h)
    var = np.where(ok, inv[:, k, k], np.nan)
    converged &= ok & (var > 0)
    se = np.sqrt(np.where(var > 0, var, np.nan))
    return coef[:, k], se, converged


def _batched_solve(h: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Solve h[i] s[i] = u[i] for every i; singular systems give ok[i] = False."""
    try:
        return np.linalg.solve(h, u[:, :, None])[:, :, 0], np.ones(len(h), dtype=bool)
    except np.linalg.LinAlgError:
        out = np.zeros_like(u)
        ok = np.zeros(len(h), dtype=bool)
        for i in range(len(h)):
            try:
                out[i] = np.linalg.solve(h[i], u[i])
                ok[i] = True
            except np.linalg.LinAlgError:
                pass
        return out, ok


def _batched_inverse(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of every h[i]; singular matrices give NaN and ok[i] = False."""
    eye = np.broadcast_to(np.eye(h.shape[1]), h.shape)
    try:
        return np.linalg.solve(h, eye), np.ones(len(h), dtype=bool)
    except np.linalg.LinAlgError:
        inv = np.full_like(h, np.nan)
        ok = np.zeros(len(h), dtype=bool)
        for i in range(len(h)):
            try:
                inv[i] = np.linalg.inv(h[i])
                ok[i] = True
            except np.linalg.LinAlgError:
                pass
        return inv, ok


def logistic_gwas(g: np.ndarray, y: np.ndarray, *, covariates: np.ndarray | None = None,
                  model: str = "additive", max_iter: int = 25, tol: float = 1e-8,
                  block: int = 2048) -> dict[str, np.ndarray]:
    """Per-SNP logistic regression with a Wald test, vectorised over SNPs.

    For every SNP ``j`` fits ``logit P(y = 1) = b0 + C b + beta_j x_j`` by Newton-Raphson (IRLS) on
    the samples whose genotype at ``j`` is observed, starting from the covariates-only fit.

    Parameters
    ----------
    g : int8, shape (n_samples, n_variants)
        ALT counts, -1 missing.
    y : float64, shape (n_samples,)
        0 control, 1 case; samples with NaN are dropped.
    covariates : float64, shape (n_samples, n_covariates), optional
        Extra covariates (e.g. :func:`genotype_pcs`); the intercept is added here.
    model : {"additive", "dominant"}
        Coding of the tested ALT allele (see :func:`encode`).
    max_iter, tol : Newton iterations and the convergence tolerance on the largest step.
    block : SNPs fitted together (memory ~ 10 x n_samples x block x 8 bytes).

    Returns
    -------
    dict of arrays, each shape (n_variants,): ``beta`` (log odds ratio per coded ALT allele),
    ``se``, ``z``, ``p`` (two-sided Wald), ``neg_log10_p`` (exact also below 1e-308),
    ``obs_ct`` (samples used), ``a1_freq`` (ALT frequency among them), ``converged``. SNPs that are
    monomorphic, perfectly separate cases from controls or do not converge get NaN statistics
    and ``converged = False`` (plink2 would report them with an error code).

    References
    ----------
    McCullagh P., Nelder J. A. (1989) Generalized Linear Models, 2nd ed., section 4.4.
    """
    g = np.asarray(g)
    y = np.asarray(y, dtype=np.float64)
    if g.ndim != 2 or g.shape[0] != y.shape[0]:
        raise InputError(f"genotypes {g.shape} and phenotype {y.shape} disagree on the number of samples")
    keep = np.isfinite(y)
    c = np.ones((g.shape[0], 1))
    if covariates is not None:
        covariates = np.asarray(covariates, dtype=np.float64).reshape(g.shape[0], -1)
        keep &= np.isfinite(covariates).all(axis=1)
        c = np.hstack([c, covariates])
    g, y, c = g[keep], y[keep], c[keep]
    if not set(np.unique(y).tolist()) <= {0.0, 1.0}:
        raise InputError("the phenotype must be coded 0 (control) / 1 (case)")
    with single_threaded_blas():
        return _logistic_gwas(g, y, c, model=model, max_iter=max_iter, tol=tol, block=block)


def _logistic_gwas(g, y, c, *, model, max_iter, tol, block):
    """:func:`logistic_gwas` after input checks; ``c`` holds the intercept and covariates (N, k)."""
    b0 = _irls_null(c, y)
    fitted = special.expit(c @ b0)
    if c.shape[1] > 1 and (np.abs(fitted - y) < 1e-3).mean() > 0.99:
        raise InputError(
            "the covariates alone separate cases from controls (e.g. principal components when cases and "
            "controls are different populations), so no SNP effect can be estimated; drop --pcs / covariates"
        )
    n_var = g.shape[1]
    out = {name: np.full(n_var, np.nan) for name in ("beta", "se", "a1_freq")}
    out["obs_ct"] = np.zeros(n_var, dtype=np.int64)
    out["converged"] = np.zeros(n_var, dtype=bool)
    for lo in range(0, n_var, block):
        hi = min(lo + block, n_var)
        x = encode(g[:, lo:hi], model)  # (N, B)
        obs = ~np.isnan(x)
        out["obs_ct"][lo:hi] = obs.sum(axis=0)
        gb = g[:, lo:hi].astype(np.float64)
        out["a1_freq"][lo:hi] = np.where(obs, gb, 0).sum(axis=0) / np.maximum(2 * obs.sum(axis=0), 1)
        xs = np.where(obs, x, np.nan)
        varies = np.nanmax(xs, axis=0, initial=-1) > np.nanmin(xs, axis=0, initial=3)
        idx = np.flatnonzero(varies)
        if len(idx):
            beta, se, conv = _irls_block(x[:, idx], y, c, b0, max_iter=max_iter, tol=tol)
            out["beta"][lo + idx] = np.where(conv, beta, np.nan)
            out["se"][lo + idx] = np.where(conv, se, np.nan)
            out["converged"][lo + idx] = conv
    z = out["beta"] / out["se"]
    out["z"] = z
    absz = np.abs(z)
    out["p"] = 2.0 * stats.norm.sf(absz)
    out["neg_log10_p"] = -(stats.norm.logsf(absz) + math.log(2.0)) / math.log(10.0)
    return out


def gwas(cohort: Cohort, *, phenotype: str = "phenotype", model: str = "additive", pcs: int = 0,
         covariates: np.ndarray | None = None, seed: int = 0) -> pd.DataFrame:
    """Logistic association test of every variant of ``cohort`` with a binary trait.

    Parameters
    ----------
    cohort : Cohort
        Phased or unphased diploid cohort.
    phenotype : str
        Sample-table column with the trait (see :func:`binary_phenotype`).
    model : {"additive", "dominant"}
    pcs : int
        Add the top ``pcs`` principal components of the cohort's genotypes as covariates.
    covariates : float64, shape (n_samples, n_covariates), optional
        Further covariates.
    seed : int
        Seed of the randomised SVD when ``pcs`` > 0.

    Returns
    -------
    DataFrame, one row per variant in cohort order, columns :data:`GWAS_COLUMNS` (``a1`` = ALT,
    the tested allele; ``beta`` = log odds ratio per coded ALT allele).
    """
    y = binary_phenotype(cohort, phenotype)
    g = cohort.genotypes()
    cov = [] if covariates is None else [np.asarray(covariates, dtype=np.float64).reshape(cohort.n_samples, -1)]
    if pcs:
        cov.append(genotype_pcs(g, pcs, seed=seed))
    res = logistic_gwas(g, y, covariates=np.hstack(cov) if cov else None, model=model)
    v = cohort.variants
    table = pd.DataFrame({
        "chrom": v["chrom"].astype(object).to_numpy(),
        "pos": v["pos"].to_numpy(),
        "id": v["id"].astype(object).to_numpy(),
        "ref": v["ref"].astype(object).to_numpy(),
        "alt": v["alt"].astype(object).to_numpy(),
        "a1": v["alt"].astype(object).to_numpy(),
    })
    for name in GWAS_COLUMNS[6:]:
        table[name] = res[name]
    return table


# ================================================================================ LD clumping
def ld_clump(g: np.ndarray, variants: pd.DataFrame, order: np.ndarray, *, r2: float = 0.2,
             kb: float = 250.0, max_index: int | None = None) -> np.ndarray:
    """Greedy plink-style LD clumping.

    Walks ``order`` (best first); each SNP not yet clumped becomes an index SNP, and every SNP on
    the same chromosome within ``kb`` kilobases whose squared correlation of ALT counts with it
    exceeds ``r2`` is clumped into it (removed). Missing genotypes are mean-imputed for ``r``.

    Parameters
    ----------
    g : int8, shape (n_samples, n_variants)
        ALT counts, -1 missing (the cohort whose LD is used: the GWAS cohort or a public reference).
    variants : DataFrame with ``chrom`` and ``pos``, one row per column of ``g``.
    order : int, shape (n_candidates,)
        Candidate variant indices, best first (e.g. ``argsort(p)`` restricted to ``p <= p1``).
    r2, kb : float
        Clumping threshold and window (plink ``--clump-r2``, ``--clump-kb``).
    max_index : int, optional
        Stop after this many index SNPs.

    Returns
    -------
    int64, shape (n_index,): the index SNPs in the order they were taken.

    References
    ----------
    Purcell S. et al. (2007) American Journal of Human Genetics 81(3): 559-575 (``--clump``).
    """
    order = np.asarray(order, dtype=np.int64)
    n, v = g.shape
    if len(variants) != v:
        raise InputError(f"variant table has {len(variants)} rows but genotypes have {v} columns")
    chrom = variants["chrom"].astype(str).to_numpy()
    pos = variants["pos"].to_numpy(dtype=np.int64)
    perm = np.lexsort((pos, chrom))  # sorted position -> variant index
    where = np.empty(v, dtype=np.int64)
    where[perm] = np.arange(v)  # variant index -> sorted position
    s_chrom, s_pos = chrom[perm], pos[perm]
    # chromosome block bounds in sorted order
    starts = {c: (int(np.searchsorted(s_chrom, c, "left")), int(np.searchsorted(s_chrom, c, "right")))
              for c in np.unique(s_chrom)} if v else {}
    half = int(round(kb * 1000))
    gs = g[:, perm]  # (N, V) in sorted order
    z = standardised(gs) if n * v <= 64_000_000 else None  # (N, V) float32 when it fits in ~256 MB
    removed = np.zeros(v, dtype=bool)  # in sorted space
    out: list[int] = []
    with single_threaded_blas():
        _clump_walk(order, where, removed, out, gs, z, s_chrom, s_pos, starts, half, n, r2, max_index)
    return np.asarray(out, dtype=np.int64)


def _clump_walk(order, where, removed, out, gs, z, s_chrom, s_pos, starts, half, n, r2, max_index):
    """The greedy walk of :func:`ld_clump` in sorted-variant space; appends index SNPs to ``out``."""
    for j in order:
        s = where[j]
        if removed[s]:
            continue
        out.append(int(j))
        removed[s] = True
        if max_index is not None and len(out) >= max_index:
            break
        lo_c, hi_c = starts[s_chrom[s]]
        lo = lo_c + int(np.searchsorted(s_pos[lo_c:hi_c], s_pos[s] - half, "left"))
        hi = lo_c + int(np.searchsorted(s_pos[lo_c:hi_c], s_pos[s] + half, "right"))
        win = np.arange(lo, hi)
        win = win[~removed[lo:hi]]
        if not len(win):
            continue
        if z is not None:
            zi, zw = z[:, s], z[:, win]
        else:
            block = standardised(np.concatenate([gs[:, [s]], gs[:, win]], axis=1))
            zi, zw = block[:, 0], block[:, 1:]
        r = (zi @ zw) / n  # (W,)
        removed[win[r * r > r2]] = True


# ================================================================================ DP selection
def association_scores(g: np.ndarray, y: np.ndarray, *, model: str = "additive",
                       strata: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Association score with bounded per-person sensitivity, for DP selection.

    The score of SNP ``j`` is the absolute co-moment of trait and coded genotype over the samples
    with an observed genotype, summed over strata ``s`` (ancestry groups, optional)::

        S_j = | sum_s sum_{i in s, x_ij observed} (y_i - ybar_sj) (x_ij - xbar_sj) |

    i.e. ``n`` times the covariance (a Cochran-Armitage trend numerator; stratified, a
    Mantel-Haenszel-type score that adjusts for ancestry without private principal components).

    Sensitivity (add/remove one person). The co-moment of ``n`` pairs updates, when a pair
    ``(y, x)`` is added, as ``C_{n+1} = C_n + n / (n + 1) (y - ybar_n) (x - xbar_n)`` (Welford).
    With ``y`` in {0, 1} and ``x`` in ``[0, x_max]`` both deviations are bounded, ``|y - ybar| <= 1``
    and ``|x - xbar| <= x_max``, so one person changes ``C`` of its own stratum by at most
    ``x_max`` and no other stratum at all; a missing genotype changes nothing. Taking ``|.|`` does
    not increase the change. Hence ``Delta = x_max``: 2 for additive, 1 for dominant coding, for
    every SNP at once (a replace-one neighbour changes it by at most ``2 x_max``).

    Parameters
    ----------
    g : int8, shape (n_samples, n_variants)  ALT counts, -1 missing.
    y : float64, shape (n_samples,)           0/1 trait; NaN samples are dropped.
    model : {"additive", "dominant"}
    strata : array, shape (n_samples,), optional  stratum label of each sample.

    Returns
    -------
    scores : float64, shape (n_variants,)
    sensitivity : float
        ``Delta`` under add/remove-one-person neighbouring.
    """
    y = np.asarray(y, dtype=np.float64)
    keep = np.isfinite(y)
    labels = np.zeros(len(y), dtype=np.int64) if strata is None else pd.factorize(np.asarray(strata))[0]
    total = np.zeros(g.shape[1])
    for s in np.unique(labels[keep]):
        rows = keep & (labels == s)
        x = encode(g[rows], model)  # (n_s, V)
        obs = ~np.isnan(x)
        x0 = np.where(obs, x, 0.0)
        ys = y[rows]
        n = obs.sum(axis=0)  # (V,)
        sy = ys @ obs  # (V,) sum of y over observed
        sx = x0.sum(axis=0)
        sxy = ys @ x0
        with np.errstate(invalid="ignore", divide="ignore"):
            total += np.where(n > 0, sxy - sy * sx / np.maximum(n, 1), 0.0)
    return np.abs(total), (2.0 if model == "additive" else 1.0)
