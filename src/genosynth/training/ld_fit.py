"""Fitting the LD prior of a cohort (plain, or released under DP) and shrinking its bands by their noise.

The plain prior is shrunk by its sampling noise and its band ended where shrunk LD ends
(:func:`plain_correlation_prior`); a DP release by the known noise of its mechanism
(:func:`shrink_correlation_bands`). Both use :func:`shrink_bands` (docs/corrguide.md).
"""

from __future__ import annotations

from collections.abc import Sequence
import numpy as np
from genosynth.cohort import Cohort
from genosynth.errors import InputError, PrivacyError
from genosynth.models.config import GeneratorConfig
from genosynth.models.ld_prior import CorrelationPrior, CorrGuideConfig, previous_counts, usable_pairs
from genosynth.privacy import PrivacyAccountant
from genosynth.privacy.releases import dp_correlation_prior
from genosynth.stats.ld import correlation_band
from genosynth.stats.frequency import called_mean, dosage


class LabelDosages:
    """ALT dosages of one label at a time, float64 (n_label, V); missing calls filled with the column
    mean of the whole cohort's called ones (0 if none). Only the int8 genotypes are held, so memory is
    one label's float rows, not the cohort's (2.4 GB at 3,000 people x 100,000 SNPs)."""

    def __init__(self, cohort: Cohort, labels: np.ndarray):
        self.g = cohort.genotypes()  # (N, V) int8, -1 missing
        self.fill = called_mean(self.g)  # (V,)
        self.labels = labels

    def __call__(self, label: str) -> np.ndarray:
        return dosage(self.g[self.labels == label], self.fill, dtype=np.float64)  # (n_label, V)


def fit_prior(
    cohort: Cohort,
    *,
    label_column: str = "super_pop",
    labels: Sequence[str] | None = None,
    window: int = 64,
    noise_multiplier: float | None = None,
    clip: float | None = None,
    center: np.ndarray | None = None,
    accountant: PrivacyAccountant | None = None,
    rng: np.random.Generator | None = None,
    name: str = "correlation_prior",
    shrink: bool = False,
) -> CorrelationPrior:
    """The banded within-label correlation prior of a training cohort.

    Parameters
    ----------
    cohort : Cohort
        Private training people (phased or not; dosages are used either way: under random
        mating the dosage correlation of two SNPs equals their haplotype correlation).
    label_column : str
    labels : sequence of str, optional
        Label vocabulary and order (default: sorted labels of the cohort, as the generator uses).
    window : int
        Band width in SNPs.
    noise_multiplier : float, optional
        ``z`` of the Gaussian mechanism. When given the prior is released with
        :func:`~genosynth.privacy.releases.dp_correlation_prior` per label (``clip`` and
        ``center`` required) and **one** Gaussian event ``name`` is recorded in ``accountant``
        (every person belongs to one label, so the concatenated per-label sums have L2
        sensitivity ``clip``: parallel composition). Label counts are treated as public, as the
        generator's label mix is.
    clip : float, optional
        Per-person L2 bound of the product vector (DP only).
    center : float, shape (L, V) or (V,), optional
        Public or DP expected dosages per label (DP only), e.g. ``2 p`` from
        :func:`~genosynth.privacy.releases.dp_allele_frequencies` or from a DP-trained decoder.
    accountant : PrivacyAccountant, optional
    rng : numpy.random.Generator, optional
        Noise source of the DP release.
    shrink : bool
        Plain prior only: shrink every entry towards 0 by its sampling noise (:func:`shrink_bands`
        with ``pool=True``: each label's band is the shrunk count-weighted mean band plus its own
        shrunk deviation), so correlations that a label's few people show by chance are dropped
        (``info["shrinkage"]`` says how much). A DP release is shrunk by
        :func:`shrink_correlation_bands` from its released frequencies and counts instead.

    Returns
    -------
    CorrelationPrior
    """
    y = cohort.labels(label_column)
    vocab = sorted(set(y.tolist())) if labels is None else [str(v) for v in labels]
    unknown = sorted(set(y.tolist()) - set(vocab))
    if unknown:
        raise InputError(f"training labels {unknown[:5]} are not in the label vocabulary {vocab}")
    window = int(min(max(1, window), max(1, cohort.n_variants - 1)))
    dosages = LabelDosages(cohort, y)
    v = cohort.n_variants
    private = noise_multiplier is not None
    if private:
        center = _label_centers(center, clip, n_labels=len(vocab), n_variants=v)  # (L, V)
        rng = rng if rng is not None else np.random.default_rng()
    bands = np.zeros((len(vocab), v, window), dtype=np.float32)
    n_per = {}
    for k, lab in enumerate(vocab):
        rows = dosages(lab)  # (n_label, V)
        n_per[lab] = int(len(rows))
        if len(rows) < (1 if private else 2):
            continue  # an absent (or, without a budget, single-person) label gets no constraint
        if private:
            bands[k] = dp_correlation_prior(rows, window=window, clip=clip, noise_multiplier=noise_multiplier,
                                            center=center[k], rng=rng, accountant=None)
        else:
            bands[k] = correlation_band(rows, window=window)
    if private and accountant is not None:
        accountant.add_gaussian(name, noise_multiplier=float(noise_multiplier))
    # exact label counts are private under a budget: callers may put DP counts in info["n_per_label"]
    info = {"label_column": label_column, "n_per_label": {} if private else n_per,
            "noise_multiplier": None if not private else float(noise_multiplier),
            "clip": None if not private else float(clip)}
    if shrink:
        if private:
            raise InputError("fit_prior(shrink=True) is for the plain prior; shrink a DP release with "
                             "shrink_correlation_bands(bands, dp_freq, dp_counts, ...) (post-processing)")
        noise, valid, counts = label_noise(dosages, vocab, window)  # (L, 1, 1), (L, V, W), (L,)
        bands, info["shrinkage"] = shrink_bands(bands, noise, valid, counts=counts, pool=True)
    return CorrelationPrior(bands=bands, labels=vocab, window=window, private=private, info=info)


def _label_centers(center: np.ndarray | None, clip: float | None, *, n_labels: int, n_variants: int) -> np.ndarray:
    """The expected dosages of a DP release per label, float64 shape (L, V) (a (V,) ``center`` is repeated)."""
    if clip is None or center is None:
        raise PrivacyError(
            "a DP correlation prior needs clip= (per-person L2 bound) and center= (public or DP "
            "expected dosages per label, e.g. 2 * dp_allele_frequencies(...)); the raw prior is "
            "never used under --epsilon"
        )
    center = np.asarray(center, dtype=np.float64)
    if center.ndim == 1:
        center = np.broadcast_to(center, (n_labels, n_variants))
    if center.shape != (n_labels, n_variants):
        raise InputError(f"center must have shape ({n_labels}, {n_variants}) or ({n_variants},), got {center.shape}")
    return center


def plain_correlation_prior(cohort: Cohort, config: GeneratorConfig, vocabulary: list[str], *,
                            shrink: bool = True) -> dict | None:
    """The un-noised banded per-label correlation prior (state dict), or None when guidance is off.

    The band is fitted ``corr_latent_window`` SNPs wide, or narrower when no SNP has that many
    others within ``max_bp`` (1 Mb) before it on its chromosome (sparse panels store only what
    decoding can use). With ``shrink`` (the default) every entry is shrunk towards 0 by its
    sampling noise (:func:`fit_prior`), pairs that decoding never conditions on are set to 0,
    and the band ends after the last lag that keeps some ``|r| >= KEEP_TOL``
    (``info["fitted_window"]`` holds the width fitted): a cohort without LD stores a band of 1
    with no correlation, a small cohort less than a large one. The copula uses the first
    ``corr_window`` lags (``info["copula_window"]``).
    """
    sc = config.sampling
    if sc.corr_guidance == "none":
        return None
    wide = max(sc.corr_window, sc.corr_latent_window)
    v = cohort.variants
    used = previous_counts(len(v), wide, chrom=v["chrom"].to_numpy(), pos=v["pos"].to_numpy(),
                           max_bp=CorrGuideConfig().max_bp)  # (V,) partners of each SNP within the band
    window = max(1, min(wide, int(used.max(initial=0))))
    prior = fit_prior(cohort, label_column=config.label_column, labels=vocabulary, window=window, shrink=shrink)
    if shrink:
        bands = prior.bands * usable_pairs(used, window)[None]  # (L, V, W): only pairs decoding uses
        keep = supported_window(bands)
        prior = CorrelationPrior(bands=bands[:, :, :keep], labels=prior.labels, window=keep, private=False,
                                 info={**prior.info, "fitted_window": int(window)})
    prior.info["copula_window"] = int(min(sc.corr_window, prior.window))
    return prior.state_dict()


# ---------------------------------------------------------------------------------------------------------------
# Shrinkage of correlation bands by their noise (adaptive shrinkage; plain fits and DP releases alike)
# ---------------------------------------------------------------------------------------------------------------

ASH_GRID = (0.0, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.5, 0.7, 1.0, 1.4, 2.0)  # prior sds of the mixture (0: the null)
KEEP_TOL = 0.1  # the stored band ends after the last lag with a shrunk |r| this large (below: ~0; r² < 0.01)


def adaptive_shrink(r: np.ndarray, noise_var: np.ndarray, valid: np.ndarray, *, null_weight: float = 10.0,
                    iters: int = 100, fit_max: int = 20_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Posterior means of noisy entries under a zero-centred mixture-of-normals prior fitted to them.

    Each valid entry is ``r = rho + e`` with ``e ~ N(0, noise_var)`` (known) and ``rho`` drawn from
    ``sum_k pi_k N(0, s_k^2)`` over the fixed grid :data:`ASH_GRID` (``s_0 = 0``: no correlation).
    The weights ``pi`` are fitted by EM (a Dirichlet penalty ``null_weight`` on ``pi_0`` favours
    the null, as in ``ash``) on at most ``fit_max`` evenly spaced valid entries; each entry is then
    multiplied by ``E[rho | r] / r = sum_k P(k | r) s_k^2 / (s_k^2 + noise_var)``. Entries that the
    noise explains go to ~0; strong ones are kept almost whole (unlike one linear factor for all).

    Parameters
    ----------
    r, noise_var : float, same shape (any)
    valid : bool, same shape; entries that are not valid become 0 and do not enter the fit.

    Returns
    -------
    shrunk : float64, shape of ``r``; factor : float64, shape of ``r`` (0 where not valid);
    pi : float64, shape (len(ASH_GRID),), the fitted mixture weights.

    References
    ----------
    Stephens M. (2017) False discovery rates: a new deal. Biostatistics 18(2): 275-294.
    """
    r = np.asarray(r, dtype=np.float64)
    noise_var = np.broadcast_to(np.asarray(noise_var, dtype=np.float64), r.shape)
    idx = np.flatnonzero(np.asarray(valid, dtype=bool).ravel())  # (M,) valid entries
    grid2 = np.asarray(ASH_GRID) ** 2  # (K,)
    factor = np.zeros(r.size)
    pi = np.zeros(len(grid2))
    pi[0] = 1.0
    if idx.size == 0:
        return np.zeros_like(r), factor.reshape(r.shape), pi
    fit = idx[np.linspace(0, idx.size - 1, min(idx.size, fit_max)).astype(np.int64)]  # (F,) evenly spaced
    like = _mixture_likelihood(r.ravel()[fit], noise_var.ravel()[fit], grid2)  # (F, K)
    pi = np.full(len(grid2), 1.0 / len(grid2))
    penalty = np.zeros(len(grid2))
    penalty[0] = null_weight - 1.0
    for _ in range(iters):
        q = like * pi
        q /= np.maximum(q.sum(axis=1, keepdims=True), 1e-300)  # (F, K) responsibilities
        new = q.sum(axis=0) + penalty
        new /= new.sum()
        done = np.abs(new - pi).max() < 1e-5
        pi = new
        if done:
            break
    for s in range(0, idx.size, 1 << 20):  # posterior factors in chunks (M x K can be large)
        sel = idx[s:s + (1 << 20)]
        nv = noise_var.ravel()[sel][:, None]  # (C, 1)
        post = _mixture_likelihood(r.ravel()[sel], noise_var.ravel()[sel], grid2) * pi  # (C, K)
        post /= np.maximum(post.sum(axis=1, keepdims=True), 1e-300)
        factor[sel] = (post * (grid2 / (grid2 + nv))).sum(axis=1)
    factor = factor.reshape(r.shape)
    return r * factor, factor, pi


def _mixture_likelihood(r: np.ndarray, noise_var: np.ndarray, grid2: np.ndarray) -> np.ndarray:
    """Normal densities of ``r`` (M,) under variances ``noise_var + grid2`` -> float64 (M, K)."""
    var = np.maximum(noise_var[:, None] + grid2[None, :], 1e-12)  # (M, K)
    return np.exp(-0.5 * r[:, None] ** 2 / var) / np.sqrt(var)


def shrink_bands(bands: np.ndarray, noise_var: np.ndarray, valid: np.ndarray, *, counts: np.ndarray | None = None,
                 pool: bool = False) -> tuple[np.ndarray, dict]:
    """Shrink per-label correlation bands towards 0 by the noise of each entry.

    Without ``pool`` each label is shrunk on its own (:func:`adaptive_shrink`). With ``pool`` (and
    at least two labels) the bands are split into the count-weighted mean over labels ``P`` and
    each label's deviation ``r_k - P``; both are shrunk (``P`` with its own, smaller, noise) and
    added back, so small labels keep the LD that all labels share and lose what only their own few
    people show.

    Parameters
    ----------
    bands : float, shape (L, V, W)
    noise_var : float, shape (L, V, W) or broadcastable; variance of each entry's noise.
    valid : bool, shape (L, V, W); entries that exist (pair inside the cohort, both SNPs varying).
    counts : float, shape (L,), optional
        People per label (weights of ``P``; needed with ``pool``).
    pool : bool

    Returns
    -------
    float32, shape (L, V, W), in [-1, 1] (0 where not valid); and a dict with ``method``,
    ``pooled``, ``kept_fraction`` (``sum |shrunk| / sum |raw|`` over each label's valid entries) and
    ``null_weight`` (fitted prior weight of "no correlation" per label; with ``pool``: of the deviations).
    """
    b = np.asarray(bands, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool)
    nv = np.broadcast_to(np.asarray(noise_var, dtype=np.float64), b.shape)
    n_labels = b.shape[0]
    out = np.zeros_like(b)
    base = np.zeros(b.shape[1:])
    info: dict = {"method": "adaptive_shrinkage", "pooled": False}
    pooled = pool and counts is not None and int((np.asarray(counts) > 0).sum()) >= 2
    if pooled:
        wt = np.asarray(counts, dtype=np.float64)[:, None, None] * valid  # (L, V, W)
        tot = wt.sum(axis=0)  # (V, W)
        a = wt / np.maximum(tot, 1e-12)  # (L, V, W) share of each label in P
        p_raw = (a * b).sum(axis=0)  # (V, W)
        p_var = (a ** 2 * nv).sum(axis=0)  # (V, W)
        base, _, pi_p = adaptive_shrink(p_raw, p_var, tot > 0)
        b = b - p_raw[None]  # (L, V, W) deviations from the pooled band
        nv = np.maximum(nv * (1.0 - 2.0 * a) + p_var[None], 1e-8)
        info.update(pooled=True, pooled_null_weight=float(pi_p[0]))
    kept, nulls = [], []
    raw = np.abs(np.asarray(bands, dtype=np.float64))
    for k in range(n_labels):
        shrunk, _, pi = adaptive_shrink(b[k], nv[k], valid[k])
        out[k] = np.clip(np.where(valid[k], base + shrunk, 0.0), -1.0, 1.0)
        total = float(raw[k][valid[k]].sum())
        kept.append(float(np.abs(out[k][valid[k]]).sum()) / total if total > 0 else 0.0)
        nulls.append(float(pi[0]))
    info.update(kept_fraction=kept, null_weight=nulls)
    return out.astype(np.float32), info


def shrink_correlation_bands(bands: np.ndarray, freq: np.ndarray, counts: np.ndarray, *, noise_multiplier: float,
                             clip: float) -> tuple[np.ndarray, list[float]]:
    """Shrink DP correlation bands towards 0 by their known noise (post-processing of the release).

    An entry ``r_jl`` of label ``k`` carries Gaussian noise of standard deviation about
    ``sigma_jl = z clip / (n_k sqrt(v_j v_j+l))`` (:func:`~genosynth.privacy.releases.dp_correlation_prior`:
    noise ``z clip`` on a sum of products over ``n_k`` people, divided by the dosage variances;
    here ``v_j = 2 p_j (1 - p_j)`` from the DP frequencies and ``n_k`` the DP count); it dwarfs
    the sampling noise of the correlation (variance ``1 / (n_k - 1)``), left out. Each label is
    shrunk by :func:`shrink_bands` (adaptive shrinkage, per label): with pure noise the band
    becomes ~0 (a constraint of no correlation) instead of random correlations of size 1.
    Only released values enter, so this is post-processing.

    bands : float, shape (L, V, W); freq : float, shape (L, V) DP frequencies; counts : float, shape (L,)
    -> float32, shape (L, V, W), and the fraction of ``sum |r|`` kept per label.
    """
    b = np.asarray(bands, dtype=np.float64)
    n_labels, v, w = b.shape
    var = np.clip(2 * np.asarray(freq) * (1 - np.asarray(freq)), 1e-3, None)  # (L, V)
    counts = np.maximum(np.asarray(counts, dtype=np.float64), 2.0)  # (L,) DP counts may be tiny
    sig2 = np.zeros((n_labels, v, w))
    valid = np.zeros((n_labels, v, w), dtype=bool)
    for lag in range(1, w + 1):
        m = v - lag
        if m > 0:
            sig2[:, :m, lag - 1] = (noise_multiplier * clip / (counts[:, None] * np.sqrt(var[:, :m] * var[:, lag:]))) ** 2
            valid[:, :m, lag - 1] = True
    out, info = shrink_bands(b, sig2, valid)
    return out, info["kept_fraction"]


def label_noise(dosages: LabelDosages, vocab: Sequence[str], window: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sampling noise of a plain band: variance ``1 / (n_k - 1)`` of a null correlation of ``n_k`` people.

    dosages : filled dosages per label (:class:`LabelDosages`)
    -> noise variance float64 (L, 1, 1), valid bool (L, V, W) (both SNPs vary in the label and
    ``j + l < V``), counts float64 (L,).
    """
    v = dosages.g.shape[1]
    counts = np.array([float((dosages.labels == lab).sum()) for lab in vocab])  # (L,)
    valid = np.zeros((len(vocab), v, window), dtype=bool)
    for k, lab in enumerate(vocab):
        rows = dosages(lab)  # (n_label, V)
        if len(rows) < 3:
            continue
        varies = rows.var(axis=0) > 1e-12  # (V,)
        for lag in range(1, window + 1):
            if lag < v:
                valid[k, : v - lag, lag - 1] = varies[: v - lag] & varies[lag:]
    noise = (1.0 / np.maximum(counts - 1.0, 1.0))[:, None, None]
    return noise, valid, counts


def supported_window(bands: np.ndarray, *, tol: float = KEEP_TOL) -> int:
    """The band the data support: the last lag where some label keeps ``|r| >= tol`` (at least 1).

    bands : float, shape (L, V, W) -> int in 1..W
    """
    strong = (np.abs(bands) >= tol).any(axis=(0, 1))  # (W,)
    return int(np.flatnonzero(strong).max()) + 1 if strong.any() else 1
