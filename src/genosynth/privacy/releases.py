"""Every DP release of the pipeline, each recording itself in the accountant: per-label allele
frequencies, the within-label ancestry spread, LD bands, and SNP selection
(:func:`release_snp_selection`, which :func:`genosynth.selection.select_snps` calls).

This module imports nothing of the pipeline (training, sampling, models): it takes arrays.
"""

from __future__ import annotations

import math
from typing import Any
import numpy as np
from genosynth.errors import InputError, PrivacyError
from genosynth.privacy.accountant import PrivacyAccountant
from genosynth.privacy.mechanisms import _check_positive, clip_rows, denoise_low_rank, gaussian_mechanism, noisy_top_k
from genosynth.stats.association import association_scores
from genosynth.stats.frequency import as_genotypes
from genosynth.stats.ld import band_products, check_window, moments_to_band


#: Post-processings of the per-label frequency release (``PrivacyConfig.frequency_denoiser``,
#: :func:`release_label_frequencies`).
FREQUENCY_DENOISERS = ("shrink", "low_rank")
#: What each person's dosages are centred on in the frequency release (``PrivacyConfig.frequency_centre``):
#: ``"one"`` (a dosage of 1, i.e. frequency 1/2) or ``"public"`` (the public frequencies of the person's
#: label, when a public model gives them).
FREQUENCY_CENTRES = ("one", "public")

#: Per-person bound (fraction of ``sqrt(V)``) of a frequency release centred on public frequencies
#: (``centre="public"``) when ``clip_fraction`` is left at ``None``. Centred on a public model's rows, a
#: person's squared norm is about ``0.45 V`` (its deviation from its population; 1000 Genomes, 805 SNPs:
#: quantiles 0.32 / 0.45 / 0.49 / 0.55 V at 10 / 50 / 90 / 99 %) instead of ``0.65 V`` centred on 1, so a
#: bound of ``0.7 sqrt(V)`` clips few people and cuts the noise by ~30 % (RESULTS.md "Public model adapted
#: under DP": "Eight splits", session 11).
PUBLIC_CLIP_FRACTION = 0.7
#: Weight of the count slot in a release centred on public frequencies: the label counts are released with
#: noise sd ``z Δ / weight`` for a sensitivity ``Δ = sqrt(bound² + weight²)`` only ~2 % above ``bound``.
PUBLIC_COUNT_WEIGHT = 4.0


def check_frequency_options(denoiser: str, clip_fraction: float | None, centre: str = "one") -> None:
    """Refuse an unknown frequency denoiser or centre, or a per-person clip outside (0, 1] (``None``: the default)."""
    if centre not in FREQUENCY_CENTRES:
        raise InputError(f"unknown frequency centre {centre!r} (frequency_centre); choose one of "
                         f"{', '.join(FREQUENCY_CENTRES)}")
    if denoiser not in FREQUENCY_DENOISERS:
        raise InputError(f"unknown frequency denoiser {denoiser!r} (--frequency-denoiser); choose one of "
                           f"{', '.join(FREQUENCY_DENOISERS)}")
    if clip_fraction is not None and not 0.0 < clip_fraction <= 1.0:
        raise PrivacyError(f"--frequency-clip {clip_fraction} must lie in (0, 1] (clip_fraction; 1 = no clipping)")


def release_label_frequencies(dosages: np.ndarray, labels: np.ndarray, n_labels: int, *,
                              noise_multiplier: float, rng: np.random.Generator,
                              accountant: PrivacyAccountant | None = None,
                              name: str = "allele_frequencies",
                              ploidy: int = 2, parents: np.ndarray | None = None,
                              denoiser: str = "low_rank", clip_fraction: float | None = None,
                              public_freq: np.ndarray | None = None, centre: str = "one") -> dict[str, np.ndarray]:
    """Per-label ALT frequencies and label counts in one Gaussian release.

    Person ``i`` with label ``l`` contributes the vector ``u_i`` of length ``L V + L`` holding
    ``g_i - 1`` (centred dosages, in ``[-1, 1]`` for diploids) in block ``l`` and a 1 in count slot
    ``l``; every other entry is 0. So ``‖u_i‖ ≤ sqrt(V + 1)`` for everyone, the L2 sensitivity of
    ``Σ_i u_i`` under zero-out neighbours (the null person contributes 0). Adding
    ``N(0, (z sqrt(V+1))²)`` is one Gaussian mechanism with noise multiplier ``z``; everything
    below is post-processing. Centring on 1 halves the sensitivity of raw dosages. With
    ``clip_fraction = c < 1`` each person's centred dosage vector is first scaled to L2 norm at
    most ``c sqrt(V)`` (its squared norm is the person's number of homozygous sites), so the
    sensitivity and the noise drop to ``sqrt(c² V + 1)``; people with more homozygous sites than
    ``c² V`` are pulled towards frequency 1/2 (a bias).

    With ``centre="public"`` and public frequencies (``public_freq``, at least one finite row) the
    release is *centred* on them instead of on 1: person ``i`` contributes ``clip(g_i - 1 - a_l,
    c sqrt(V))`` in block ``l``, with the public centre ``a_l = 2 m_l - 1`` (``m_l`` the label's public
    row, or the mean of the public rows for a label without one; public, fixed before the release),
    and ``w`` (:data:`PUBLIC_COUNT_WEIGHT`) in count slot ``l``: sensitivity ``sqrt(c² V + w²)``. A
    person's centred norm is then far below ``sqrt(V)``, so ``c`` (default :data:`PUBLIC_CLIP_FRACTION`)
    clips few people while the noise drops with it (:func:`_toward_public` for the post-processing).

    Parameters
    ----------
    dosages : float, shape (N, V)
        Private ALT dosages in ``[0, ploidy]`` (no missing).
    labels : int, shape (N,)
        Label index per person in ``[0, n_labels)``.
    n_labels : int
    noise_multiplier : float
        ``z``.
    rng : numpy.random.Generator
    accountant : PrivacyAccountant, optional
        Records one ``gaussian`` event ``name``.
    parents : int, shape (L,), optional
        A public label hierarchy (e.g. population -> super population): with ``denoiser="shrink"``
        each label is then shrunk towards its parent's pooled frequency (the sum of its children in
        the same release), with ``tau²`` estimated within each parent; the parents themselves
        towards ``overall``. Not used by ``"low_rank"``.
    clip_fraction : float or None
        ``c`` in (0, 1]: the per-person bound as a fraction of the largest possible norm
        ``sqrt(V)`` (1 = no clipping of a release centred on 1). ``None``: 1, or
        :data:`PUBLIC_CLIP_FRACTION` for a release centred on public frequencies.
    centre : {"one", "public"}
        The dosages' centre (above); ``"public"`` without a public row is ``"one"``.
    denoiser : {"shrink", "low_rank"}
        Post-processing of the noisy per-label sums (neither costs budget nor sees the data):
        ``"shrink"``: each label's raw frequencies are shrunk towards ``overall`` (or its parent)
        by the empirical-Bayes weight ``tau² / (tau² + sigma²)`` (``sigma²`` the known noise
        variance, ``tau²`` the between-label variance estimated from the release).
        ``"low_rank"`` (default): the whole noisy ``(L, V + 1)`` matrix of sums and counts, whose
        noise is i.i.d. ``N(0, (z Δ)²)`` (``Δ`` the sensitivity above), is denoised by optimal
        singular-value shrinkage with that known noise level
        (:func:`~genosynth.privacy.mechanisms.denoise_low_rank`, Gavish & Donoho 2017);
        frequencies are the denoised sums over the denoised counts. Per-label frequencies
        differ along a few ancestry directions while the noise fills all ``V``, so with many small
        labels (26 populations of ~60 people) this removes far more noise than per-label shrinkage.

    public_freq : float, shape (L, V), optional
        Public per-label frequencies (a public model of the same populations; a row of NaN where
        there is none). Every label is then denoised towards a public prior mean: its row, or for a
        label without one the best fit of its release by the public rows (:func:`_toward_public`:
        empirical Bayes with the known noise; centred on 1, the count of a label with a public row is
        first fitted on all SNPs), post-processing only; with ``centre="public"`` the release itself
        is centred on them (above). All rows NaN: as without ``public_freq``.

    Returns
    -------
    dict with
        ``freq`` float64 (L, V): denoised per-label ALT frequencies, clipped to ``[1e-3, 1 - 1e-3]``;
        ``overall`` float64 (V,): pooled frequency (from the raw release: the sum over labels);
        ``shrinkage`` float64 (L,): ``"shrink"``: ``1 - weight`` per label; ``"low_rank"``: the
        fraction of the label's raw deviation from ``overall`` removed, ``1 - ‖freq_l - overall‖ /
        ‖raw_l - overall‖`` (at least 0);
        ``counts`` float64 (L,): noisy (``"low_rank"``: denoised) label counts, at least 1;
        ``mix`` float64 (L,): counts / their sum;
        ``rank`` int: singular values kept (``"low_rank"`` only);
        ``public_weight`` float64 (L,): with ``public_freq``, the mean weight of the release against the
        public prior mean (``counts`` and ``mix`` then as in :func:`_toward_public`).
    """
    y = np.asarray(labels, dtype=np.int64)
    check_frequency_options(denoiser, clip_fraction, centre)
    public = None if public_freq is None else np.asarray(public_freq, dtype=np.float64)  # (L, V)
    centres = public_centres(public) if public is not None and centre == "public" else None  # (L, V) or None
    if clip_fraction is None:
        clip_fraction = 1.0 if centres is None else PUBLIC_CLIP_FRACTION
    weight = 1.0 if centres is None else PUBLIC_COUNT_WEIGHT
    sums, sensitivity = _label_sums(dosages, y, n_labels, ploidy=ploidy, clip_fraction=clip_fraction,
                                    denoiser=denoiser, centres=centres, count_weight=weight)  # (L, V+1)
    noisy = gaussian_mechanism(sums, sensitivity=sensitivity, noise_multiplier=noise_multiplier,
                               rng=rng, accountant=accountant, name=name)  # (L, V+1)
    del sums
    return _denoised_release(noisy, noise_sd=noise_multiplier * sensitivity, ploidy=ploidy, denoiser=denoiser,
                             parents=parents, public=public, centres=centres, count_weight=weight)


def _denoised_release(noisy: np.ndarray, *, noise_sd: float, ploidy: int, denoiser: str, parents, public,
                      centres, count_weight: float) -> dict[str, np.ndarray]:
    """Stage 2 of :func:`release_label_frequencies`, post-processing only: the denoised frequencies and counts.

    noisy : (L, V+1) noisy sums (centred on 1, or on ``centres`` (L, V)) and weighted counts; public :
    (L, V) public frequencies with NaN rows, or None.
    """
    n_labels = noisy.shape[0]
    plain = noisy if centres is None else _uncentred(noisy, centres, count_weight=count_weight)  # (L, V+1)
    if denoiser == "low_rank":
        out = _low_rank_frequencies(plain, noise_sd=noise_sd, ploidy=ploidy)
    else:
        out = _shrunk_frequencies(plain, noise_sd=noise_sd, ploidy=ploidy, parents=parents)
    if public is not None and np.isfinite(public).all(axis=1).any():
        fit = centres is None  # centred on 1: the sums also carry each public label's count
        _toward_public(out, noisy, np.zeros_like(public) if fit else centres, public, noise_sd=noise_sd,
                       count_weight=count_weight, fit_counts=fit)
    elif public is not None:
        out["public_weight"] = np.full(n_labels, np.nan)
    return out


def public_centres(public_freq: np.ndarray) -> np.ndarray | None:
    """Centres ``2 m - 1`` of a release centred on public frequencies: float64 (L, V), or None without a public row.

    public_freq : float, shape (L, V), NaN rows where there is none; such a label is centred on the mean
    of the public rows (public, fixed before the release).
    """
    have = np.isfinite(public_freq).all(axis=1)  # (L,)
    if not have.any():
        return None
    m = np.where(have[:, None], public_freq, public_freq[have].mean(axis=0)[None, :])  # (L, V)
    return 2.0 * np.clip(m, 0.0, 1.0) - 1.0


def _uncentred(noisy: np.ndarray, centres: np.ndarray, *, count_weight: float) -> np.ndarray:
    """A centred release in the layout of one centred on 1 (post-processing): sums ``S' + C a``, counts ``C``.

    noisy : (L, V+1) centred sums and weighted counts; centres : (L, V). Returns float64 (L, V+1).
    """
    v = noisy.shape[1] - 1
    counts = noisy[:, v] / count_weight  # (L,)
    return np.column_stack([noisy[:, :v] + np.maximum(counts, 1.0)[:, None] * centres, counts])


def release_phenotype_frequencies(dosages: np.ndarray, labels: np.ndarray, phenotypes: np.ndarray, n_labels: int, *,
                                  noise_multiplier: float, rng: np.random.Generator,
                                  accountant: PrivacyAccountant | None = None, name: str = "allele_frequencies",
                                  ploidy: int = 2, denoiser: str = "low_rank", clip_fraction: float | None = None,
                                  parents: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-label frequencies, case fractions and case/control frequencies from one Gaussian release over groups.

    The release is :func:`release_label_frequencies`' mechanism over the ``2 L`` groups ``g = 2 label
    + phenotype`` (0 control, 1 case): each person still adds one vector of norm at most
    ``sqrt(c² V + 1)`` to one block, so it is the same mechanism with the same sensitivity and one
    ``gaussian`` event, and a phenotype model spends no more ε on frequencies than a model without
    one. Everything after it is post-processing of the noisy ``(2L, V+1)`` sums:

    * per label, the sum of its two groups' rows (i.i.d. noise of sd ``sqrt(2) z Δ``, twice the
      variance of a label release) is denoised as in :func:`release_label_frequencies`
      (``denoiser``, ``parents``): ``freq``, ``counts``, ``mix``, ``overall``;
    * the case fraction of a label is ``cases / (cases + controls)`` of the noisy group counts
      (``"low_rank"``: denoised with the whole group matrix, whose count column is nearly a
      multiple of its sums), clipped to ``[0.01, 0.99]``;
    * the case/control contrast ``Δ`` (per SNP, ALT frequency of cases minus controls) is pooled
      over labels with inverse-noise-variance weights, since per group the noise (about
      ``z Δ / (2 n_g)``) is larger than most trait effects, and shrunk towards 0 by the
      empirical-Bayes factor ``tau² / (tau² + sigma²)`` (``sigma²`` its known noise variance,
      ``tau²`` the mean squared contrast less ``sigma²``). This assumes the contrast is shared by
      the labels (the same causal variants and effects in every ancestry); a label's groups are
      then ``freq + (1 - pi) Δ`` (cases) and ``freq - pi Δ`` (controls), ``pi`` its case fraction,
      whose mean is the label's frequency.

    Parameters
    ----------
    dosages : float, shape (N, V)
        Private ALT dosages in ``[0, ploidy]`` (no missing).
    labels : int, shape (N,)
        Label index per person in ``[0, n_labels)``.
    phenotypes : int, shape (N,)
        0 control, 1 case (no missing: whether a person's phenotype is missing is private too).
    n_labels : int
    noise_multiplier, rng, accountant, name, ploidy, denoiser, clip_fraction, parents
        As in :func:`release_label_frequencies` (``parents``: the label hierarchy, ``"shrink"`` only).

    Returns
    -------
    dict with
        ``freq`` (L, V), ``counts`` (L,), ``mix`` (L,), ``overall`` (V,), ``shrinkage`` (L,) and
        ``rank`` (``"low_rank"``) as :func:`release_label_frequencies`; ``group_freq`` float64 (2L, V)
        (row ``2 l + p``), ``group_counts`` (2L,), ``case_fraction`` (L,), ``contrast`` (V,): the
        shrunk ``Δ``, and ``contrast_weight``: its shrinkage factor.
    """
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(phenotypes, dtype=np.int64)
    if p.shape != y.shape or not np.isin(p, (0, 1)).all():
        raise InputError("phenotypes must be 0 (control) or 1 (case) for every person under --epsilon; remove the "
                         "people without a phenotype (missingness is itself private) or drop --phenotype-column")
    sums, sensitivity = _label_sums(dosages, 2 * y + p, 2 * n_labels, ploidy=ploidy, clip_fraction=clip_fraction,
                                    denoiser=denoiser)  # (2L, V+1)
    noisy = gaussian_mechanism(sums, sensitivity=sensitivity, noise_multiplier=noise_multiplier,
                               rng=rng, accountant=accountant, name=name)  # (2L, V+1)
    del sums
    # ------------------------------------------------ everything below is post-processing of `noisy`
    noise_sd = noise_multiplier * sensitivity
    by_label = noisy[0::2] + noisy[1::2]  # (L, V+1): controls + cases
    if denoiser == "low_rank":
        out = _low_rank_frequencies(by_label, noise_sd=math.sqrt(2.0) * noise_sd, ploidy=ploidy)
    else:
        out = _shrunk_frequencies(by_label, noise_sd=math.sqrt(2.0) * noise_sd, ploidy=ploidy, parents=parents)
    group_counts, _, raw, _ = _raw_frequencies(noisy, ploidy=ploidy)  # (2L,), _, (2L, V)
    if denoiser == "low_rank":  # the counts of the groups denoised with their sums (the case fractions)
        group_counts = _low_rank_frequencies(noisy, noise_sd=noise_sd, ploidy=ploidy)["counts"]  # (2L,)
    gc = group_counts.reshape(n_labels, 2)  # (L, 2) controls, cases
    pi = np.clip(gc[:, 1] / gc.sum(axis=1), 0.01, 0.99)  # (L,)
    contrast, weight = _pooled_contrast(raw, gc, noise_sd=noise_sd, ploidy=ploidy)  # (V,), float
    group = np.stack([out["freq"] - pi[:, None] * contrast, out["freq"] + (1 - pi[:, None]) * contrast], axis=1)
    out.update(group_freq=np.clip(group.reshape(2 * n_labels, -1), 1e-3, 1 - 1e-3), group_counts=group_counts,
               case_fraction=pi, contrast=contrast, contrast_weight=weight)
    return out


def _pooled_contrast(raw: np.ndarray, counts: np.ndarray, *, noise_sd: float, ploidy: int) -> tuple[np.ndarray, float]:
    """Case-minus-control frequencies pooled over labels and shrunk by empirical Bayes (post-processing).

    raw : float, shape (2L, V), unbiased noisy group frequencies (row ``2 l + p``); counts : (L, 2)
    noisy controls and cases. A group frequency's noise sd is ``noise_sd half / (ploidy n_g)``
    (:func:`_shrunk_frequencies`), so label ``l``'s difference has variance ``unit² (1/n_case² +
    1/n_control²)``. Returns the shrunk pooled contrast (V,) and its shrinkage factor.
    """
    unit = noise_sd * 0.5  # noise sd of a group frequency times its count (half / ploidy = 1/2)
    diff = raw[1::2] - raw[0::2]  # (L, V)
    var = unit ** 2 * (1.0 / counts[:, 1] ** 2 + 1.0 / counts[:, 0] ** 2)  # (L,)
    w = (1.0 / var) / (1.0 / var).sum()  # (L,) inverse-variance weights
    pooled = (w[:, None] * diff).sum(axis=0)  # (V,)
    sigma2 = float(1.0 / (1.0 / var).sum())  # noise variance of the pooled contrast
    tau2 = max(float(np.mean(pooled ** 2)) - sigma2, 0.0)
    weight = tau2 / (tau2 + sigma2) if tau2 + sigma2 > 0 else 0.0
    return weight * pooled, weight

def _toward_public(out: dict, noisy: np.ndarray, centres: np.ndarray, public_freq: np.ndarray, *, noise_sd: float,
                   count_weight: float, fit_counts: bool) -> None:
    """Denoise each label's frequencies of a release centred on ``centres`` towards a public prior mean by
    empirical Bayes (post-processing).

    Replaces ``out["freq"]``, ``out["counts"]`` and ``out["mix"]``. A label's prior mean ``m`` is its
    public row, or (a label with a NaN row) the least-squares fit of its raw frequencies on an
    intercept and the public rows (an admixed or intermediate population is close to a mix of public
    ones; 805 SNPs fit the few coefficients with negligible noise).

    *Count*, centred on the public rows (``fit_counts=False``): the released count ``n = C / count_weight``
    (noise sd ``noise_sd / count_weight``). The centred sums ``S' ≈ n (2 p - 1 - a)`` are small, so
    ``raw = (S' / n + a + 1) / 2`` barely depends on the count's noise. Centred on 1 (``centres`` 0,
    ``fit_counts=True``): the sums are ``S ≈ n (2 p - 1)``, and with ``a = 2 m - 1`` a label with a
    public row gets the least-squares count ``n = (C + S·a) / (1 + a·a)`` over every SNP (noise sd
    about ``noise_sd / sqrt(1 + a·a)``: at ε = 10 on 805 SNPs ~1 person instead of ~16, which for a
    label of 50 people otherwise rescales every deviation from 1/2 by tens of percent); a new label
    keeps ``out["counts"]`` (its fitted mix of public rows can absorb any rescaling).

    *Frequencies.* ``raw`` has known noise variance ``σ² = (noise_sd / (2 n))²`` per SNP; the deviation
    ``d = raw - m`` gets the Balding-Nichols prior variance ``F m (1 - m)`` with ``F`` the
    method-of-moments ``mean(d² - σ²) / mean(m (1 - m))`` (at least 1e-6), and the posterior mean
    ``m + w d`` with ``w = F m (1 - m) / (F m (1 - m) + σ²)`` per SNP.

    noisy : (L, V+1) centred sums and weighted counts; centres : (L, V) ``2 m - 1`` of
    :func:`public_centres`; public_freq : float, shape (L, V), NaN rows where there is no public
    frequency (the centred sums are ploidy-free, so no ploidy is needed). ``out["public_weight"]``:
    float64 (L,), the mean ``w`` of each label.
    """
    v = noisy.shape[1] - 1
    sums, released = noisy[:, :v], noisy[:, v] / count_weight  # (L, V), (L,)
    counts = np.asarray(out["counts"], dtype=np.float64).copy() if fit_counts else np.maximum(released, 1.0)  # (L,)
    have = np.isfinite(public_freq).all(axis=1)  # (L,)
    weight = np.full(noisy.shape[0], np.nan)
    design = np.column_stack([np.ones(v), public_freq[have].T])  # (V, 1 + L_pub)
    for k in range(noisy.shape[0]):
        n = max(float(counts[k]), 1.0)
        if have[k]:
            m = public_freq[k]
            if fit_counts:
                a = 2.0 * m - 1.0
                n = max(float((released[k] + sums[k] @ a) / (1.0 + a @ a)), 1.0)
        raw = (sums[k] / n + centres[k] + 1.0) / 2.0  # (V,) unbiased given n (unclipped people)
        if not have[k]:
            beta = np.linalg.lstsq(design, raw, rcond=None)[0]
            m = np.clip(design @ beta, 1e-3, 1 - 1e-3)  # (V,)
        s2 = (noise_sd * 0.5 / n) ** 2
        d = raw - m
        het = m * (1.0 - m)
        f = max(float(np.mean(d * d - s2)) / max(float(np.mean(het)), 1e-12), 1e-6)
        w = f * het / (f * het + s2)  # (V,)
        out["freq"][k] = np.clip(m + w * d, 1e-3, 1 - 1e-3)
        counts[k], weight[k] = n, float(np.mean(w))
    out["counts"], out["mix"] = counts, counts / counts.sum()
    out["public_weight"] = weight


def _label_sums(dosages: np.ndarray, y: np.ndarray, n_labels: int, *, ploidy: int, clip_fraction: float | None,
                denoiser: str, centres: np.ndarray | None = None,
                count_weight: float = 1.0) -> tuple[np.ndarray, float]:
    """Stage 1 of :func:`release_label_frequencies`: per-label sums of clipped centred dosages and counts.

    ``centres`` (L, V), optional: each person's scaled dosages ``(g - half) / half`` minus its label's row
    before clipping (public, :func:`public_centres`); ``count_weight``: each person's entry in its count
    slot. Returns the private ``(L, V+1)`` sums (weighted count in the last column) and their L2
    sensitivity ``sqrt(bound² + count_weight²)``.
    """
    g = np.asarray(dosages, dtype=np.float64)
    n, v = g.shape
    if y.shape != (n,) or (y < 0).any() or (y >= n_labels).any():
        raise InputError(f"labels must be {n} indices in [0, {n_labels})")
    check_frequency_options(denoiser, clip_fraction)
    clip_fraction = 1.0 if clip_fraction is None else clip_fraction
    _check_positive(count_weight, "count_weight", "give a positive weight of the count slot")
    half = ploidy / 2.0
    bound = clip_fraction * math.sqrt(v)  # L2 bound of a person's centred dosage vector
    sensitivity = math.sqrt(bound ** 2 + count_weight ** 2)  # with the person's weight in the count slot
    centred = (g - half) / half  # (N, V) in [-1, 1]
    if centres is not None:
        centred = centred - centres[y]  # (N, V) in [-2, 2]: the norm bound needs the clip below
    if clip_fraction < 1.0 or centres is not None:
        centred = clip_rows(centred, bound)
    sums = np.zeros((n_labels, v + 1))  # (L, V+1): centred dosage sums and the weighted count
    for j in range(n_labels):
        sums[j, :v] = centred[y == j].sum(axis=0)
        sums[j, v] = count_weight * (y == j).sum()
    return sums, sensitivity


def _raw_frequencies(noisy: np.ndarray, *, ploidy: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Counts (L,), ALT alleles / ploidy (L, V), raw frequencies (L, V) and ``overall`` (V,) of a release."""
    half = ploidy / 2.0
    v = noisy.shape[1] - 1
    counts = np.maximum(noisy[:, v], 1.0)  # (L,)
    # Σ_i g_ij / ploidy = (Σ_i (g_ij - half)/half + n_l) / 2 for diploids (half = 1)
    alt = (noisy[:, :v] * half + half * counts[:, None]) / ploidy  # (L, V) ALT alleles / ploidy
    raw = alt / counts[:, None]  # (L, V), unbiased but noisy
    overall = np.clip((alt.sum(0)) / counts.sum(), 1e-3, 1 - 1e-3)  # (V,)
    return counts, alt, raw, overall


def _low_rank_frequencies(noisy: np.ndarray, *, noise_sd: float, ploidy: int) -> dict[str, np.ndarray]:
    """Stage 2, ``denoiser="low_rank"``: singular-value shrinkage of the whole noisy (L, V+1) release."""
    half = ploidy / 2.0
    v = noisy.shape[1] - 1
    _, _, raw, overall = _raw_frequencies(noisy, ploidy=ploidy)
    est, rank = denoise_low_rank(noisy, noise_sd=noise_sd)  # (L, V+1)
    d_counts = np.maximum(est[:, v], 1.0)  # (L,)
    freq = np.clip((est[:, :v] * half + half * d_counts[:, None]) / ploidy / d_counts[:, None], 1e-3, 1 - 1e-3)
    before = np.linalg.norm(raw - overall, axis=1)  # (L,)
    after = np.linalg.norm(freq - overall, axis=1)  # (L,)
    shrink = np.clip(1.0 - after / np.maximum(before, 1e-12), 0.0, 1.0)
    return {"freq": freq, "overall": overall, "counts": d_counts, "mix": d_counts / d_counts.sum(),
            "shrinkage": shrink, "rank": rank}


def _shrunk_frequencies(noisy: np.ndarray, *, noise_sd: float, ploidy: int,
                        parents: np.ndarray | None) -> dict[str, np.ndarray]:
    """Stage 2, ``denoiser="shrink"``: empirical-Bayes shrinkage of each label towards ``overall`` (or its parent).

    The noise variance of ``raw[l]`` is known, ``sigma_l² = (z sqrt(V+1) half / (ploidy n_l))²``, and
    the between-label variance ``tau_l²`` is estimated from the noisy data minus that noise.
    """
    counts, alt, raw, overall = _raw_frequencies(noisy, ploidy=ploidy)
    unit = noise_sd * (ploidy / 2.0) / ploidy  # noise sd of a frequency times its count
    sigma2 = (unit / counts) ** 2  # (L,)
    target = np.broadcast_to(overall, raw.shape).copy()  # (L, V) what each label is shrunk towards
    if parents is not None:
        par = np.asarray(parents, dtype=np.int64)  # (L,)
        for k in np.unique(par):
            kids = par == k
            p_cnt = counts[kids].sum()
            p_raw = alt[kids].sum(axis=0) / p_cnt  # (V,) the parent's pooled frequency
            p_s2 = (unit / p_cnt) ** 2
            p_tau2 = max(float(((p_raw - overall) ** 2).mean()) - p_s2, 1e-6)
            target[kids] = (p_tau2 / (p_tau2 + p_s2)) * p_raw + (p_s2 / (p_tau2 + p_s2)) * overall
    dev2 = ((raw - target) ** 2).mean(axis=1)  # (L,)
    if parents is not None:  # one between-label variance per parent, pooled over its children
        tau2 = np.array([max(float((dev2[par == par[j]] - sigma2[par == par[j]]).mean()), 1e-6)
                         for j in range(len(counts))])
    else:
        tau2 = np.maximum(dev2 - sigma2, 1e-6)  # (L,)
    w = (tau2 / (tau2 + sigma2))[:, None]  # (L, 1)
    freq = np.clip(w * raw + (1 - w) * target, 1e-3, 1 - 1e-3)
    return {"freq": freq, "overall": overall, "counts": counts, "mix": counts / counts.sum(),
            "shrinkage": 1 - w[:, 0]}


def ancestry_basis(freq: np.ndarray, dims: int) -> np.ndarray:
    """The top ``min(dims, L - 1)`` right singular vectors of the label frequencies centred on their mean.

    freq : float, shape (L, V) (released, so public) -> float64, shape (V, k), orthonormal columns.
    """
    q = np.asarray(freq, dtype=np.float64)
    k = int(min(dims, q.shape[0] - 1, q.shape[1]))
    if k < 1:
        return np.zeros((q.shape[1], 0))
    _, _, vt = np.linalg.svd(q - q.mean(axis=0), full_matrices=False)  # (L, V)
    return vt[:k].T.copy()  # (V, k)


def spread_clip(dims: int, *, clip: float, ploidy: int = 2) -> float:
    """Per-person norm bound of the ancestry coordinates: ``clip`` times the largest sampling-noise norm.

    Along a unit direction the allele fraction ``g / ploidy`` of one person varies by genotype
    sampling alone with variance at most ``1 / (4 ploidy)`` (at frequency 1/2), so ``k``
    coordinates have a noise norm of at most about ``sqrt(k / (4 ploidy))``. The bound depends on
    public quantities only.
    """
    return float(clip) * math.sqrt(dims / (4.0 * ploidy))


def release_ancestry_spread(dosages: np.ndarray, labels: np.ndarray, *, freq: np.ndarray, counts: np.ndarray,
                            dims: int, clip: float, noise_multiplier: float, rng: np.random.Generator,
                            accountant=None, name: str = "ancestry_spread", ploidy: int = 2) -> dict[str, np.ndarray]:
    """Per-label ancestry covariance along the public directions of ``freq``, in one Gaussian release.

    Parameters
    ----------
    dosages, labels : numpy.ndarray
        As in :func:`release_label_frequencies`: private ALT dosages (N, V) in ``[0, ploidy]``, no
        missing, and each person's label index (N,) in ``[0, L)``.
    freq : float, shape (L, V)
        The already released per-label frequencies (defines the directions and the centres).
    counts : float, shape (L,)
        The already released label counts.
    dims : int
        ``k``, directions kept (at most ``L - 1``).
    clip : float
        Multiple of the sampling-noise norm at which each person's coordinates are clipped
        (:func:`spread_clip`).
    noise_multiplier : float
        ``z``; the noise std is ``z c²``.
    accountant : PrivacyAccountant, optional
        Records one ``gaussian`` event ``name``.

    Returns
    -------
    dict with ``basis`` float64 (V, k), ``freq`` float64 (L, V) (the centres, as given), ``cov``
    float64 (L, k, k) (positive semi-definite), ``clip`` float (the norm bound ``c``).
    """
    q = np.asarray(freq, dtype=np.float64)
    n_labels, v = q.shape
    y = np.asarray(labels, dtype=np.int64)
    basis = ancestry_basis(q, dims)  # (V, k), public
    k = basis.shape[1]
    if k < 1:
        raise PrivacyError(f"an ancestry spread needs at least 2 labels and dims >= 1 (got {n_labels} labels, "
                           f"dims={dims}); set PrivacyConfig.ancestry_dims=0 to skip it")
    c = spread_clip(k, clip=clip, ploidy=ploidy)
    coords = (np.asarray(dosages, dtype=np.float64) / ploidy - q[y]) @ basis  # (N, k), private
    coords = clip_rows(coords, c)
    iu = np.triu_indices(k)
    sums = np.stack([(coords[y == j].T @ coords[y == j])[iu] for j in range(n_labels)])  # (L, k(k+1)/2)
    del coords
    noisy = gaussian_mechanism(sums, sensitivity=c * c, noise_multiplier=noise_multiplier,
                               rng=rng, accountant=accountant, name=name)  # (L, k(k+1)/2)
    # ------------------------------------------------ everything below is post-processing of `noisy`
    cov = np.zeros((n_labels, k, k))
    for j in range(n_labels):
        n_j = max(float(counts[j]), 1.0)
        m = np.zeros((k, k))
        m[iu] = noisy[j] / n_j
        m = m + np.triu(m, 1).T  # (k, k) second moment
        # the release adds a symmetric noise matrix of known entry sd z c² / n_j, whose eigenvalues reach
        # about 2 sqrt(k) times that: directions below this edge are indistinguishable from noise, dropped
        cov[j] = ancestry_covariance(m, basis, q[j], ploidy=ploidy,
                                     edge=2.0 * math.sqrt(k) * noise_multiplier * c * c / n_j)
    return {"basis": basis, "freq": q, "cov": cov, "clip": c}


def ancestry_covariance(second_moment: np.ndarray, basis: np.ndarray, freq: np.ndarray, *, ploidy: int = 2,
                        edge: float = 0.0) -> np.ndarray:
    """A label's ancestry covariance from the second moment of its people's ancestry coordinates.

    What genotype sampling alone explains (``basis' diag(q (1 - q) / ploidy) basis``) is removed,
    and directions whose variance is not above ``edge`` are dropped (positive semi-definite).

    second_moment : (k, k); basis : (V, k); freq : (V,) the label's ALT frequencies -> float64 (k, k)
    """
    sampling = basis.T @ (basis * (freq * (1.0 - freq) / ploidy)[:, None])  # (k, k) what genotype draws explain
    w, u = np.linalg.eigh(second_moment - sampling)
    return (u * np.where(w > edge, w, 0.0)) @ u.T


def _person_band_norms(gc: np.ndarray, window: int) -> np.ndarray:
    """L2 norm of each person's vector of products ``gc_ij gc_i,j+l`` (l = 0..window), shape (N,)."""
    n, v = gc.shape
    sq = np.zeros(n)
    for lag in range(window + 1):
        if lag < v:
            sq += np.einsum("ij,ij->i", gc[:, : v - lag] ** 2, gc[:, lag:] ** 2)
    return np.sqrt(sq)




def _center_for(g: np.ndarray, center) -> np.ndarray:
    if center is None:
        raise PrivacyError(
            "dp_correlation_prior needs public or DP centring values: pass center=2*p with p from "
            "a public reference panel or from dp_allele_frequencies() (accounted)"
        )
    c = np.broadcast_to(np.asarray(center, dtype=np.float64), (g.shape[1],))
    return c


def dp_correlation_prior(
    genotypes,
    *,
    window: int,
    clip: float,
    noise_multiplier: float,
    center,
    rng: np.random.Generator,
    accountant: "PrivacyAccountant | None" = None,
    name: str = "correlation_prior",
    var_floor: float = 1e-3,
) -> np.ndarray:
    """Banded SNP correlation released with the Gaussian mechanism.

    Each person ``i`` contributes the vector ``u_i = (c_ij c_i,j+l)_{j, l=0..window}`` of products
    of centred dosages ``c_ij = g_ij - center_j`` (length ``V (window+1)``), clipped to L2 norm
    ``clip``. The sum ``Σ_i clip(u_i)`` has L2 sensitivity ``clip`` under zero-out neighbours (the
    null person contributes the zero vector; the clipped vector of anyone has norm ≤ ``clip``),
    so adding ``N(0, (z·clip)² I)`` is a Gaussian mechanism with noise multiplier ``z``. The
    correlation is then post-processing with the public ``n``:
    ``m = noisy_sum / n``, ``var_j = max(m_j0, var_floor)``, ``r_j,l = m_jl / sqrt(var_j var_j+l)``,
    clipped to [-1, 1]. ``center`` must be public or DP (e.g. ``2 p`` from
    :func:`dp_allele_frequencies`, released and accounted before).

    Parameters
    ----------
    genotypes : array_like, float, shape (N, V)
        Private dosages, no missing values.
    window : int
        SNP pairs within ``window`` positions.
    clip : float
        L2 bound on each person's product vector. Without clipping a person's vector has norm up
        to ``4 sqrt(V (window+1))``; typical norms are far smaller (about
        ``sqrt(V (window+1)) · E[c²]``). Clipping biases the correlation towards 0 for people
        above the bound; noise std on each correlation entry is about ``z clip / (n var)``.
    noise_multiplier : float
        ``z`` (from :func:`~genosynth.privacy.accountant.plan_for_training`).
    center : array_like, float, shape (V,) or scalar
        Public or DP centring values (expected dosage).
    rng : numpy.random.Generator
    accountant : PrivacyAccountant, optional
        Records one ``gaussian`` event named ``name``.

    Returns
    -------
    numpy.ndarray, float64, shape (V, window)
        ``band[j, l-1] ≈ corr(SNP j, SNP j+l)``; entries with ``j+l ≥ V`` are 0.
    """
    g = as_genotypes(genotypes)
    window = check_window(window, g.shape[1])
    clip = _check_positive(clip, "clip", "pass the per-person L2 bound, e.g. --corr-clip")
    z = _check_positive(noise_multiplier, "noise_multiplier", "calibrate it with plan_for_training()")
    gc = g - _center_for(g, center)  # (N, V)
    norms = _person_band_norms(gc, window)  # (N,)
    weights = np.minimum(1.0, clip / np.maximum(norms, np.finfo(np.float64).tiny))  # (N,)
    sums = band_products(gc, window, weights)  # (V, window+1)
    mask = np.zeros_like(sums, dtype=bool)
    for lag in range(window + 1):
        mask[max(g.shape[1] - lag, 0):, lag] = True  # structurally zero entries: no noise needed
    noisy = gaussian_mechanism(sums, sensitivity=clip, noise_multiplier=z, rng=rng,
                               accountant=accountant, name=name)  # fmt: skip
    noisy[mask] = 0.0
    return moments_to_band(noisy / g.shape[0], window, var_floor)


def dp_allele_frequencies(
    genotypes,
    *,
    noise_multiplier: float,
    rng: np.random.Generator,
    ploidy: int = 2,
    clip: float | None = None,
    accountant: "PrivacyAccountant | None" = None,
    name: str = "allele_frequencies",
) -> np.ndarray:
    """ALT allele frequencies released with the Gaussian mechanism.

    Each person contributes their dosage vector ``g_i ∈ [0, ploidy]^V``, clipped to L2 norm
    ``clip`` (default ``ploidy sqrt(V)``, the largest possible norm, so no clipping happens). The
    column sums have L2 sensitivity ``clip`` under zero-out neighbours; ``N(0, (z clip)²)`` is added
    to each, and frequencies ``= noisy sum / (ploidy n)`` (public ``n``) clipped to [0, 1].

    Parameters
    ----------
    genotypes : array_like, shape (N, V)
        Private ALT dosages in ``[0, ploidy]``, no missing values.
    noise_multiplier : float
        ``z``.
    rng : numpy.random.Generator
    ploidy : int
    clip : float, optional
        Per-person L2 bound. A smaller bound (e.g. ``sqrt(expected number of non-zero dosages) ·
        ploidy``) cuts the noise but biases frequencies of people above it downwards.
    accountant : PrivacyAccountant, optional
        Records one ``gaussian`` event named ``name``.

    Returns
    -------
    numpy.ndarray, float64, shape (V,)
    """
    g = as_genotypes(genotypes)
    if (g > ploidy).any():
        raise InputError(f"dosages above ploidy={ploidy}; pass the right ploidy or ALT counts")
    clip = ploidy * math.sqrt(g.shape[1]) if clip is None else _check_positive(clip, "clip", "pass a per-person L2 bound")
    sums = clip_rows(g, clip).sum(axis=0)  # (V,)
    noisy = gaussian_mechanism(sums, sensitivity=clip, noise_multiplier=noise_multiplier,
                               rng=rng, accountant=accountant, name=name)  # fmt: skip
    return np.clip(noisy / (ploidy * g.shape[0]), 0.0, 1.0)


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
    seed : int, optional     seed of the Gumbel noise (``None``: drawn from the OS); whoever knows it
                             can redraw the noise, so pass a secret one (:func:`genosynth.seeds.noise_seed`)
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
    scores = np.asarray(scores, dtype=np.float64)
    if not np.isfinite(scores).all():
        raise InputError("DP selection scores must be finite")
    k = int(min(k, len(scores)))
    eps0, accounting, rho = epsilon_per_step(epsilon, delta, k)
    z = 2.0 / eps0  # Gumbel scale z * Delta = 2 Delta / eps0
    own = PrivacyAccountant()
    chosen = _peeled_top_k(scores, k, sensitivity=sensitivity, noise_multiplier=z, rng=np.random.default_rng(seed),
                           exclude=exclude, accountant=own, name=name)  # (<= k,)
    if accountant is not None:
        accountant.extend(own)
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


def _peeled_top_k(scores: np.ndarray, k: int, *, sensitivity: float, noise_multiplier: float,
                  rng: np.random.Generator, exclude, accountant: PrivacyAccountant, name: str) -> np.ndarray:
    """The ``k`` releases of :func:`dp_select`: one-shot Gumbel top-``k``, or ``k`` peeled picks with ``exclude``."""
    if exclude is None:
        return noisy_top_k(scores, k, sensitivity=sensitivity, noise_multiplier=noise_multiplier, rng=rng,
                           accountant=accountant, name=name)
    alive = np.ones(len(scores), dtype=bool)  # (n_candidates,)
    picked = []
    for _ in range(k):
        cand = np.flatnonzero(alive)
        if not len(cand):
            break
        j = int(cand[noisy_top_k(scores[cand], 1, sensitivity=sensitivity, noise_multiplier=noise_multiplier,
                                 rng=rng, accountant=accountant, name=name)[0]])
        picked.append(j)
        alive[j] = False
        alive[np.asarray(exclude(j), dtype=np.int64)] = False
    return np.asarray(picked, dtype=np.int64)


def release_snp_selection(genotypes: np.ndarray, phenotype: np.ndarray, k: int, *, model: str, epsilon: float,
                          delta: float = 0.0, seed: int | None = None, strata: np.ndarray | None = None,
                          strata_name: str | None = None, exclude=None, accountant=None,
                          name: str = "snp_selection") -> tuple[np.ndarray, dict[str, Any]]:
    """The DP SNP selection: :func:`dp_select` on association scores of bounded sensitivity.

    Scores are :func:`genosynth.stats.association.association_scores` (per-person sensitivity
    ``Delta`` = 2 additive, 1 dominant, for genotypes and phenotype together); the ``(epsilon,
    delta)`` budget is split over the ``k`` exponential mechanisms by :func:`epsilon_per_step`
    and the selection records its ``top_k`` event(s) in ``accountant``.

    Parameters
    ----------
    genotypes : int8, shape (N, V)      private ALT counts, -1 missing.
    phenotype : float64, shape (N,)     private 0/1 trait, NaN missing.
    k : int                             SNPs to select (fewer when fewer candidates remain).
    model : {"additive", "dominant"}    genotype coding of the score.
    epsilon, delta : float              total budget of the selection.
    seed : int, optional                seed of the noise: secret (:func:`genosynth.seeds.noise_seed`).
    strata : array, shape (N,), optional   stratum label per person (e.g. super population).
    strata_name : str, optional         what ``strata`` is (a sample column), for the record.
    exclude : callable, optional        ``exclude(j) -> indices`` from public data only (LD clumping).
    accountant : PrivacyAccountant, optional
    name : str                          name of the accountant event.

    Returns
    -------
    chosen : int64, shape (<= k,)  in release order
    privacy : dict  as :func:`dp_select`, plus ``score`` (what was ranked).
    """
    scores, sens = association_scores(genotypes, phenotype, model=model, strata=strata)  # (V,)
    chosen, privacy = dp_select(scores, k, sensitivity=sens, epsilon=epsilon, delta=delta, seed=seed,
                                exclude=exclude, accountant=accountant, name=name)
    privacy["score"] = ("|co-moment of trait and " + model + " genotype|"
                        + (f", stratified by {strata_name}" if strata is not None else ""))
    return chosen, privacy
