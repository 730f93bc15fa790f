"""Fitting the LD prior of a cohort (plain, or released under DP) and post-processing DP bands."""

from __future__ import annotations

from collections.abc import Sequence
import numpy as np
from genosynth.cohort import Cohort
from genosynth.errors import InputError, PrivacyError
from genosynth.models.config import GeneratorConfig
from genosynth.models.ld_prior import CorrelationPrior, CorrGuideConfig, previous_counts
from genosynth.privacy import PrivacyAccountant
from genosynth.privacy.releases import dp_correlation_prior
from genosynth.stats.ld import correlation_band
from genosynth.stats.frequency import called_mean, dosage


def mean_filled_dosages(cohort: Cohort) -> np.ndarray:
    """ALT dosages, float64 shape (N, V); missing filled with the column mean of the called ones (0 if none)."""
    g = cohort.genotypes()  # (N, V) int8, -1 missing
    return dosage(g, called_mean(g), dtype=np.float64)


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
    g = mean_filled_dosages(cohort)  # (N, V)
    v = g.shape[1]
    private = noise_multiplier is not None
    if private:
        center = _label_centers(center, clip, n_labels=len(vocab), n_variants=v)  # (L, V)
        rng = rng if rng is not None else np.random.default_rng()
    bands = np.zeros((len(vocab), v, window), dtype=np.float32)
    n_per = {}
    for k, lab in enumerate(vocab):
        rows = g[y == lab]
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


def plain_correlation_prior(cohort: Cohort, config: GeneratorConfig, vocabulary: list[str]) -> dict | None:
    """The un-noised banded per-label correlation prior (state dict), or None when guidance is off.

    The band is ``corr_latent_window`` SNPs wide, or narrower when no SNP has that many others
    within ``max_bp`` (1 Mb) before it on its chromosome (sparse panels store only what decoding
    can use); the copula uses its first ``corr_window`` lags (``info["copula_window"]``).
    """
    sc = config.sampling
    if sc.corr_guidance == "none":
        return None
    wide = max(sc.corr_window, sc.corr_latent_window)
    v = cohort.variants
    used = previous_counts(len(v), wide, chrom=v["chrom"].to_numpy(), pos=v["pos"].to_numpy(),
                           max_bp=CorrGuideConfig().max_bp)  # (V,) partners of each SNP within the band
    window = max(1, min(wide, int(used.max(initial=0))))
    prior = fit_prior(cohort, label_column=config.label_column, labels=vocabulary, window=window)
    prior.info["copula_window"] = int(min(sc.corr_window, prior.window))
    return prior.state_dict()


def shrink_correlation_bands(bands: np.ndarray, freq: np.ndarray, counts: np.ndarray, *, noise_multiplier: float,
                             clip: float) -> tuple[np.ndarray, list[float]]:
    """Shrink DP correlation bands towards 0 by their known noise (post-processing of the release).

    An entry ``r_jl`` of label ``k`` carries Gaussian noise of standard deviation about
    ``sigma_jl = z clip / (n_k sqrt(v_j v_j+l))`` (:func:`~genosynth.privacy.releases.dp_correlation_prior`:
    noise ``z clip`` on a sum of products over ``n_k`` people, divided by the dosage variances;
    here ``v_j = 2 p_j (1 - p_j)`` from the DP frequencies and ``n_k`` the DP count). With
    ``tau²`` the signal variance estimated as ``mean(r²) - mean(sigma²)`` (at least 0), each entry
    is multiplied by ``tau² / (tau² + sigma_jl²)``: with pure noise the band becomes 0 (no
    constraint) instead of random correlations of size 1.

    bands : float, shape (L, V, W); freq : float, shape (L, V) DP frequencies; counts : float, shape (L,)
    -> float32, shape (L, V, W), and the mean weight per label.
    """
    b = np.asarray(bands, dtype=np.float64)
    n_labels, v, w = b.shape
    var = np.clip(2 * freq * (1 - freq), 1e-3, None)  # (L, V)
    out = np.zeros_like(b)
    weights = []
    for k in range(n_labels):
        sig2 = np.zeros((v, w))
        for lag in range(1, w + 1):
            m = v - lag
            if m > 0:
                sig2[:m, lag - 1] = (noise_multiplier * clip / (counts[k] * np.sqrt(var[k, :m] * var[k, lag:]))) ** 2
        valid = np.zeros((v, w), dtype=bool)
        for lag in range(1, w + 1):
            valid[: max(v - lag, 0), lag - 1] = True
        tau2 = max(float((b[k][valid] ** 2).mean() - sig2[valid].mean()), 0.0) if valid.any() else 0.0
        wt = np.where(valid, tau2 / (tau2 + sig2 + 1e-12), 0.0)
        out[k] = b[k] * wt
        weights.append(float(wt[valid].mean()) if valid.any() else 0.0)
    return out.astype(np.float32), weights
