"""Case/control association tests, LD clumping and GWAS-guided SNP selection.

The phenotype-supervised generator (SNPgen) models only the SNPs that matter for a trait:
:func:`select_snps` runs a GWAS on the training cohort, clumps it by linkage disequilibrium and
keeps the top ``k`` index SNPs. Three building blocks are public:

* :func:`logistic_gwas` - per-SNP logistic regression ``logit P(case) = C b + x_j beta_j`` fitted by
  iteratively reweighted least squares (Newton-Raphson), **vectorised over SNPs**: every Newton
  step is a handful of matrix products over a block of SNPs, and each SNP uses the samples with
  an observed genotype (complete-case, as plink2 ``--glm``). Additive (0/1/2 ALT copies) or
  dominant (ALT carrier 0/1) coding; optional covariates such as the top genotype principal
  components (:func:`genotype_pcs`). Wald test of ``beta_j``.
* :func:`ld_clump` - plink-style greedy clumping: take the best remaining SNP as an index SNP,
  drop every SNP within ``kb`` kilobases on the same chromosome whose squared genotype
  correlation with it exceeds ``r2``, repeat.
* :func:`dp_select` - differentially private selection: an exponential mechanism over an
  association score whose per-person sensitivity is bounded (derivation in
  :func:`association_scores`), run ``k`` times by peeling, so the guarantee holds for the
  phenotype *and* the genotypes of every person.

The GWAS table of a private cohort is itself a private statistic (summary statistics allow
membership inference, Homer et al. 2008), so with ``epsilon`` set :func:`select_snps` returns no
GWAS table and uses no private p-values, principal components or LD.

>>> from genosynth.cohort import Cohort, make_samples, make_variants
>>> rng = np.random.default_rng(0)
>>> g = rng.binomial(2, 0.3, size=(400, 6)).astype(np.int8)
>>> y = (rng.random(400) < 0.2 + 0.25 * g[:, 2]).astype(float)
>>> c = Cohort(g, make_variants(chrom=["1"] * 6, pos=np.arange(1, 7) * 1_000_000, ref=["A"] * 6, alt=["G"] * 6),
...            make_samples(range(400), phenotype=y), phased=False)
>>> sel = select_snps(c, k=1, seed=1)
>>> sel.ids, bool(sel.gwas["p"].iloc[2] < 1e-6)
(['1:3000000_A_G'], True)

References
----------
Purcell S. et al. (2007) PLINK: a tool set for whole-genome association and population-based
linkage analyses. American Journal of Human Genetics 81(3): 559-575. (logistic test, clumping)

Chang C. C. et al. (2015) Second-generation PLINK: rising to the challenge of larger and richer
datasets. GigaScience 4: 7. (plink2 ``--glm``, the reference implementation we validate against)

Price A. L. et al. (2006) Principal components analysis corrects for stratification in
genome-wide association studies. Nature Genetics 38(8): 904-909.

McCullagh P., Nelder J. A. (1989) Generalized Linear Models, 2nd ed., section 4.4 (IRLS).

Homer N. et al. (2008) Resolving individuals contributing trace amounts of DNA to highly complex
mixtures using high-density SNP genotyping microarrays. PLoS Genetics 4(8): e1000167.

McSherry F., Talwar K. (2007) Mechanism design via differential privacy. FOCS. (exponential mechanism)

Durfee D., Rogers R. (2019) Practical differentially private top-k selection with pay-what-you-get
composition. NeurIPS. (Gumbel noise = exponential mechanism; peeling)

Cesar M., Rogers R. (2021) Bounding, concentrating, and truncating: unifying privacy loss
composition for data analytics. ALT. (an eps-exponential mechanism is eps^2/8-zCDP)

Bun M., Steinke T. (2016) Concentrated differential privacy: simplifications, extensions, and
lower bounds. TCC. (rho-zCDP implies (rho + 2 sqrt(rho log(1/delta)), delta)-DP)

Johnson A., Shmatikov V. (2013) Privacy-preserving data exploration in genome-wide association
studies. KDD. (differentially private selection of GWAS SNPs)
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import special, stats

from genosynth.cohort import Cohort
from genosynth.errors import InputError, PrivacyError

try:  # a scikit-learn dependency
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = None

MODELS = ("additive", "dominant")
GWAS_COLUMNS = ("chrom", "pos", "id", "ref", "alt", "a1", "a1_freq", "obs_ct", "beta", "se", "z", "p",
                "neg_log10_p", "converged")


# ================================================================================ configuration
@dataclass
class SelectConfig:
    """Options of :func:`select_snps` (recorded with every selection)."""

    k: int = 1024  # number of SNPs to keep
    model: str = "additive"  # genotype coding of the test: "additive" (0/1/2) or "dominant" (0/1)
    pcs: int = 0  # top genotype principal components used as covariates (0: none; not with epsilon)
    clump_r2: float | None = 0.2  # LD clumping r^2 threshold; None disables clumping
    clump_kb: float = 250.0  # LD clumping window, kilobases either side of the index SNP
    p_threshold: float | None = None  # only SNPs with p <= this are candidates (not with epsilon)
    epsilon: float | None = None  # differential privacy budget of the selection; None: not private
    delta: float = 0.0  # DP delta; > 0 allows zCDP accounting of the k exponential mechanisms
    strata: str | None = None  # sample-table column (e.g. "super_pop") to stratify the DP score by
    phenotype: str = "phenotype"  # sample-table column holding the 0/1 trait
    seed: int | None = None  # None draws one; the seed used is recorded in the selection

    def validate(self) -> None:
        """Raise :class:`InputError` naming the fix for an impossible option."""
        if int(self.k) != self.k or self.k < 1:
            raise InputError(f"k must be a positive integer (e.g. --k 1024), got {self.k}")
        if self.model not in MODELS:
            raise InputError(f"model must be one of {', '.join(MODELS)} (e.g. --model additive), got {self.model!r}")
        if int(self.pcs) != self.pcs or self.pcs < 0:
            raise InputError(f"pcs must be a non-negative integer (e.g. --pcs 4), got {self.pcs}")
        if self.clump_r2 is not None and not 0.0 < self.clump_r2 <= 1.0:
            raise InputError(f"clump_r2 must lie in (0, 1] (e.g. --clump-r2 0.2), got {self.clump_r2}")
        if not self.clump_kb >= 0:
            raise InputError(f"clump_kb must be >= 0 (e.g. --clump-kb 250), got {self.clump_kb}")
        if self.p_threshold is not None and not 0.0 < self.p_threshold <= 1.0:
            raise InputError(f"p_threshold must lie in (0, 1] (e.g. 5e-8), got {self.p_threshold}")
        if self.epsilon is not None and not (self.epsilon > 0 and math.isfinite(self.epsilon)):
            raise InputError(f"epsilon must be a positive number (e.g. --epsilon 1), got {self.epsilon}")
        if not 0.0 <= self.delta < 1.0:
            raise InputError(f"delta must lie in [0, 1) (e.g. --delta 1e-6), got {self.delta}")
        if self.epsilon is not None:
            if self.pcs:
                raise PrivacyError(
                    "principal components of a private cohort are private statistics and cannot be used "
                    "under --epsilon; drop --pcs, or stratify the DP score by ancestry labels with --strata super_pop"
                )
            if self.p_threshold is not None:
                raise PrivacyError(
                    "a p-value threshold on a private cohort is not differentially private; drop --p-threshold "
                    "under --epsilon (the exponential mechanism ranks the SNPs itself)"
                )
        elif self.strata is not None:
            raise InputError("--strata stratifies the DP score and needs --epsilon; without --epsilon use --pcs")


@dataclass
class SnpSelection:
    """Result of :func:`select_snps`.

    Attributes
    ----------
    indices : int64, shape (n_selected,)
        Selected variant indices into the input cohort, in the cohort's variant order.
    ids : list of str
        Their variant ids, same order.
    rank : int64, shape (n_selected,)
        1 = strongest association (GWAS p-value, or DP selection order), same order as ``indices``.
    gwas : DataFrame or None
        The association table of every variant (columns :data:`GWAS_COLUMNS` + ``selected``,
        ``rank``); ``None`` under differential privacy, where it would be a private release.
    privacy : dict or None
        What the DP selection spent (see :func:`dp_select`); ``None`` when not private.
    config : dict
        The resolved :class:`SelectConfig`, seed included.
    notes : list of str
        Things the user should know (fewer than ``k`` SNPs, clumping skipped, ...).
    """

    indices: np.ndarray
    ids: list[str]
    rank: np.ndarray
    gwas: pd.DataFrame | None
    privacy: dict[str, Any] | None
    config: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    @property
    def epsilon(self) -> float:
        """Privacy budget spent by the selection (0.0 when it was not private)."""
        return float(self.privacy["epsilon"]) if self.privacy else 0.0


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


def population_phenotype(cohort: Cohort, case_pops, control_pops) -> Cohort:
    """A case/control cohort from population labels: cases from ``case_pops``, controls from ``control_pops``.

    Each label is looked up in the ``pop`` column, then in ``super_pop`` (so ``YRI`` and ``AFR``
    both work). Samples in neither group are dropped; the trait goes to the ``phenotype`` column
    (1 case, 0 control). This is the two-population GWAS set-up used to test generators on data
    without a trait.

    Raises :class:`InputError` naming the fix when a label matches nobody or the groups overlap.
    """
    pop, sup = cohort.labels("pop"), cohort.labels("super_pop")

    def members(labels, role):
        mask = np.zeros(cohort.n_samples, dtype=bool)
        for label in labels:
            hit = (pop == label) | (sup == label)
            if not hit.any():
                known = sorted(set(pop.tolist()) | set(sup.tolist()) - {""})
                raise InputError(f"{role} population {label!r} matches no sample; known labels: {known[:30]} "
                                 "(give --samples with pop/super_pop columns)")
            mask |= hit
        return mask

    case = members(list(case_pops), "case")
    control = members(list(control_pops), "control")
    if (case & control).any():
        raise InputError("case and control populations overlap; give disjoint --case-pop and --control-pop")
    keep = np.flatnonzero(case | control)
    out = cohort.subset(samples=keep)
    out.samples["phenotype"] = case[keep].astype(np.float64)
    return out


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


def _standardised(g: np.ndarray) -> np.ndarray:
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
    z = _standardised(g)  # (N, V)
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
    z = _standardised(gs) if n * v <= 64_000_000 else None  # (N, V) float32 when it fits in ~256 MB
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
            block = _standardised(np.concatenate([gs[:, [s]], gs[:, win]], axis=1))
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


def epsilon_per_step(epsilon: float, delta: float, k: int) -> tuple[float, str, float | None]:
    """Largest per-step budget of ``k`` exponential mechanisms that meets a total ``(epsilon, delta)``.

    Pure composition gives ``epsilon / k``. With ``delta > 0``, each ``eps0``-exponential
    mechanism is ``eps0^2 / 8``-zCDP (Cesar & Rogers 2021), ``k`` of them ``rho = k eps0^2 / 8``,
    and ``rho``-zCDP is ``(rho + 2 sqrt(rho log(1/delta)), delta)``-DP (Bun & Steinke 2016), so
    ``rho = (sqrt(log(1/delta) + epsilon) - sqrt(log(1/delta)))^2``. The larger of the two is used.

    Returns
    -------
    eps0 : float
    accounting : "pure" or "zcdp"
    rho : float or None
        Total zCDP of the ``k`` steps (also valid when ``accounting == "pure"``).
    """
    pure = epsilon / k
    if delta and delta > 0:
        log_inv = math.log(1.0 / delta)
        rho = (math.sqrt(log_inv + epsilon) - math.sqrt(log_inv)) ** 2
        eps0 = math.sqrt(8.0 * rho / k)
        if eps0 > pure:
            return eps0, "zcdp", rho
    return pure, "pure", k * pure * pure / 8.0


def dp_select(scores: np.ndarray, k: int, *, sensitivity: float, epsilon: float, delta: float = 0.0,
              seed: int | None = None, exclude=None, accountant=None,
              name: str = "snp_selection") -> tuple[np.ndarray, dict[str, Any]]:
    """Differentially private top-``k`` by ``k`` exponential mechanisms (peeling).

    Step ``t`` releases ``argmax_j (scores_j + G_tj)`` over the candidates left, with fresh
    ``G_tj ~ Gumbel(0, 2 Delta / eps0)`` - exactly the exponential mechanism
    ``P(j) ~ exp(eps0 scores_j / (2 Delta))`` - and then removes the released SNP and, when
    ``exclude`` is given, the SNPs it excludes (``exclude(j) -> indices``, which must use only
    public data, e.g. LD of a public reference). The steps compose adaptively; the per-step
    ``eps0`` comes from :func:`epsilon_per_step`. Without ``exclude`` the peeling equals one-shot
    Gumbel top-``k`` (Durfee & Rogers 2019). Both paths draw through
    :func:`genosynth.privacy.mechanisms.noisy_top_k` with noise multiplier ``z = 2 / eps0`` and
    record themselves in ``accountant`` (a fresh :class:`~genosynth.privacy.PrivacyAccountant`
    when none is given), so the selection is charged to the run's budget.

    Parameters
    ----------
    scores : float64, shape (n_candidates,)
    k : int
    sensitivity : float      per-person sensitivity ``Delta`` of every score
    epsilon, delta : float   total budget of the selection
    seed : int, optional
    exclude : callable, optional
    accountant : PrivacyAccountant, optional
    name : str               name of the accountant event

    Returns
    -------
    chosen : int64, shape (<= k,)  in release order
    privacy : dict  ``mechanism``, ``epsilon``, ``delta``, ``epsilon_step``, ``noise_multiplier``,
        ``steps``, ``rho`` (zCDP; RDP ``eps(alpha) = rho alpha``), ``accounting``, ``sensitivity``,
        ``neighbouring``, ``accountant_epsilon`` (the accountant's RDP bound at ``delta`` for this
        selection alone; ``None`` when ``delta = 0``) and ``accountant`` (its ``state_dict``).
    """
    from genosynth.privacy import PrivacyAccountant
    from genosynth.privacy.mechanisms import noisy_top_k

    scores = np.asarray(scores, dtype=np.float64)
    if not np.isfinite(scores).all():
        raise InputError("DP selection scores must be finite")
    k = int(min(k, len(scores)))
    eps0, accounting, rho = epsilon_per_step(epsilon, delta, k)
    z = 2.0 / eps0  # Gumbel scale z * Delta = 2 Delta / eps0
    rng = np.random.default_rng(seed)
    own = PrivacyAccountant()
    if exclude is None:
        chosen = noisy_top_k(scores, k, sensitivity=sensitivity, noise_multiplier=z, generator=rng,
                             accountant=own, name=name)
    else:
        alive = np.ones(len(scores), dtype=bool)
        picked = []
        for _ in range(k):
            cand = np.flatnonzero(alive)
            if not len(cand):
                break
            j = int(cand[noisy_top_k(scores[cand], 1, sensitivity=sensitivity, noise_multiplier=z,
                                     generator=rng, accountant=own, name=name)[0]])
            picked.append(j)
            alive[j] = False
            alive[np.asarray(exclude(j), dtype=np.int64)] = False
        chosen = np.asarray(picked, dtype=np.int64)
    if accountant is not None:
        for event in own.state_dict()["events"]:
            accountant.add_top_k(event["name"], noise_multiplier=event["noise_multiplier"], k=event["k"],
                                 count=event["count"])
    privacy = {
        "mechanism": "exponential mechanism, k-fold peeling (Gumbel-max, genosynth.privacy.mechanisms.noisy_top_k); "
                     "McSherry & Talwar 2007, Durfee & Rogers 2019",
        "epsilon": float(epsilon),
        "delta": float(delta) if accounting == "zcdp" else 0.0,
        "epsilon_step": float(eps0),
        "noise_multiplier": float(z),
        "steps": int(len(chosen)),
        "rho": float(rho),
        "accounting": accounting,
        "sensitivity": float(sensitivity),
        "neighbouring": "add/remove (zero-out) one person: genotypes and phenotype",
        "accountant_epsilon": float(own.get_epsilon(delta)) if delta > 0 else None,
        "accountant": own.state_dict(),
    }
    return np.asarray(chosen, dtype=np.int64), privacy


# ================================================================================ selection
def select_snps(cohort: Cohort, *, k: int = 1024, model: str = "additive", pcs: int = 0,
                clump_r2: float | None = 0.2, clump_kb: float = 250.0, p_threshold: float | None = None,
                epsilon: float | None = None, delta: float = 0.0, strata: str | None = None,
                ld_reference: Cohort | None = None, phenotype: str = "phenotype",
                seed: int | None = None, accountant=None) -> SnpSelection:
    """GWAS-guided SNP selection: association test, LD clumping, top ``k`` index SNPs.

    Without ``epsilon``: logistic GWAS (:func:`gwas`, optional ``pcs`` principal-component
    covariates), candidates ordered by p-value (``p <= p_threshold`` when given), greedy LD
    clumping (:func:`ld_clump`, with the cohort's own LD or ``ld_reference``), first ``k`` index SNPs.

    With ``epsilon``: ``k`` exponential mechanisms on :func:`association_scores` (bounded
    sensitivity, optionally stratified by the ``strata`` column), see :func:`dp_select`. Clumping
    then needs a public ``ld_reference`` (private LD would leak); without one it is skipped and a
    note says so. No GWAS table is returned and no private p-value, PC or LD is touched. The
    returned ``privacy`` dict is what an accountant must charge.

    Parameters
    ----------
    cohort : Cohort
        Training cohort with a binary trait in ``phenotype``.
    k : int
        Number of SNPs to keep (fewer when fewer candidates remain).
    model : {"additive", "dominant"}
    pcs : int
    clump_r2 : float or None
        ``None`` disables clumping.
    clump_kb : float
    p_threshold : float, optional
    epsilon, delta : float
        DP budget of the selection (``None``: not private).
    strata : str, optional
        Sample-table column to stratify the DP score by (e.g. ``"super_pop"``).
    ld_reference : Cohort, optional
        Public cohort holding every variant id of ``cohort``, whose LD is used for clumping.
    phenotype : str
    seed : int, optional
        ``None`` draws one; it is in ``config["seed"]`` unless ``epsilon`` is given: the seed of a
        DP selection is a secret (whoever knows it can redraw the mechanism's noise), so it is
        never returned or written.
    accountant : PrivacyAccountant, optional
        Under ``epsilon``, the run's accountant; the selection records its ``top_k`` event(s) there
        (``privacy["accountant"]`` holds them either way).

    Returns
    -------
    SnpSelection
    """
    if seed is None:
        seed = int(np.random.default_rng().integers(2**31 - 1))
    cfg = SelectConfig(k=k, model=model, pcs=pcs, clump_r2=clump_r2, clump_kb=clump_kb,
                       p_threshold=p_threshold, epsilon=epsilon, delta=delta, strata=strata,
                       phenotype=phenotype, seed=int(seed))
    cfg.validate()
    t0 = time.perf_counter()
    notes: list[str] = []
    y = binary_phenotype(cohort, phenotype)
    g = cohort.genotypes()
    ld_g = g
    if ld_reference is not None:
        ld_g = _aligned_genotypes(ld_reference, cohort)

    def clump_exclusion(lo_g):
        chrom = cohort.variants["chrom"].astype(str).to_numpy()
        pos = cohort.variants["pos"].to_numpy(dtype=np.int64)
        zfull = _standardised(lo_g)
        half = cfg.clump_kb * 1000

        def exclude(j):
            win = np.flatnonzero((chrom == chrom[j]) & (np.abs(pos - pos[j]) <= half))
            r = (zfull[:, j] @ zfull[:, win]) / zfull.shape[0]
            return win[r * r > cfg.clump_r2]
        return exclude

    if epsilon is not None:
        labels = cohort.labels(strata) if strata else None
        scores, sens = association_scores(g, y, model=model, strata=labels)
        exclude = None
        if cfg.clump_r2 is not None:
            if ld_reference is None:
                notes.append("LD clumping skipped: LD of the private cohort is a private statistic; give a public "
                             "LD reference (--ld-bfile/ld_reference) to clump under --epsilon")
            else:
                exclude = clump_exclusion(ld_g)
        chosen, privacy = dp_select(scores, cfg.k, sensitivity=sens, epsilon=epsilon, delta=delta,
                                    seed=seed, exclude=exclude, accountant=accountant)
        privacy["score"] = ("|co-moment of trait and " + model + " genotype|"
                            + (f", stratified by {strata}" if strata else ""))
        table = None
    else:
        table = gwas(cohort, phenotype=phenotype, model=model, pcs=pcs, seed=seed)
        p = table["p"].to_numpy()
        ok = np.isfinite(p)
        if p_threshold is not None:
            ok &= p <= p_threshold
        cand = np.flatnonzero(ok)
        cand = cand[np.lexsort((cand, -table["neg_log10_p"].to_numpy()[cand]))]  # smallest p first, ties by index
        n_failed = int((~np.isfinite(p)).sum())
        if n_failed:
            notes.append(f"{n_failed} variants have no test (monomorphic, separated or not converged)")
        if cfg.clump_r2 is not None:
            chosen = ld_clump(ld_g, cohort.variants, cand, r2=cfg.clump_r2, kb=cfg.clump_kb, max_index=cfg.k)
        else:
            chosen = cand[:cfg.k]
        privacy = None
    if len(chosen) < cfg.k:
        notes.append(f"only {len(chosen)} SNPs selected (asked for {cfg.k}): fewer candidates remain after "
                     "filtering/clumping; lower --k, relax --clump-r2 or --p-threshold")
    rank_of = np.zeros(cohort.n_variants, dtype=np.int64)
    rank_of[chosen] = np.arange(1, len(chosen) + 1)
    indices = np.sort(chosen)
    if table is not None:
        table["selected"] = rank_of > 0
        table["rank"] = rank_of
    config = dataclasses.asdict(cfg)
    if epsilon is not None:
        config["seed"] = None  # secret under DP
    config["ld_reference"] = ld_reference is not None
    config["seconds"] = round(time.perf_counter() - t0, 3)
    return SnpSelection(
        indices=indices,
        ids=[str(i) for i in cohort.variants["id"].to_numpy()[indices]],
        rank=rank_of[indices],
        gwas=table,
        privacy=privacy,
        config=config,
        notes=notes,
    )


def _aligned_genotypes(reference: Cohort, cohort: Cohort) -> np.ndarray:
    """Genotypes of ``reference`` in the variant order of ``cohort`` (matched by id)."""
    pos = pd.Index(reference.variants["id"].astype(str)).get_indexer(cohort.variants["id"].astype(str))
    if (pos < 0).any():
        missing = cohort.variants["id"].to_numpy()[pos < 0]
        raise InputError(
            f"the LD reference lacks {int((pos < 0).sum())} variants of the cohort (first: {list(missing[:3])}); "
            "give a reference genotyped at the same variant ids"
        )
    return reference.genotypes()[:, pos]


__all__ = [
    "GWAS_COLUMNS",
    "MODELS",
    "SelectConfig",
    "SnpSelection",
    "association_scores",
    "binary_phenotype",
    "dp_select",
    "encode",
    "epsilon_per_step",
    "genotype_pcs",
    "gwas",
    "ld_clump",
    "logistic_gwas",
    "population_phenotype",
    "select_snps",
]
