"""Calibration of decoded allele frequencies to (aggregate, or DP-released) training frequencies, and the
corrections of finer labels (populations) inside the labels a model conditions on."""

from __future__ import annotations

import numpy as np
import torch
from genosynth.cohort import Cohort
from genosynth.errors import InputError
from genosynth.models.diffusion import GaussianDiffusion
from genosynth.models.dit import DiT1D
from genosynth.models.solvers import sample_latents
from genosynth.models.vae import GenotypeVAE
from genosynth.privacy.releases import ancestry_basis, ancestry_covariance
from genosynth.sampling.ancestry import binomial_logit_shift
from genosynth.training.data import (TrainingData, alt_frequency, class_counts, shrink_label_frequencies,
                                     smoothed_frequencies)


@torch.no_grad()
def decoded_draws(vae: GenotypeVAE, dit: DiT1D, diffusion: GaussianDiffusion, cond: dict, latent_scale: float, *,
                  shape: tuple[int, int, int], steps: int, sampler: str, eta: float, rng: torch.Generator,
                  dev: torch.device) -> torch.Tensor:
    """Decoder logits of DiT latents drawn as sampling draws them (``sampler``, ``steps``, ``eta``; x_T and any
    step noise from ``rng``) under ``cond`` (``{"y": (B,), ...}`` on ``dev``).

    shape : (B, C, T) -> float, shape (B, K, V)
    """
    noise = torch.randn(shape, generator=rng).to(dev)  # (B, C, T)
    z = sample_latents(diffusion, dit, shape, sampler=sampler, cond=cond, steps=steps, eta=eta, noise=noise,
                       rng=rng, device=dev)  # (B, C, T)
    return vae.decode(z / latent_scale, cond["y"])  # (B, K, V)


def calibrate_frequencies(vae: GenotypeVAE, dit: DiT1D, diffusion: GaussianDiffusion, per_label: torch.Tensor,
               latent_scale: float, *, rows: int, steps: int, rng: torch.Generator,
               dev: torch.device, bound: float = 3.0, by_phenotype: bool = False, iters: int = 1,
               sampler: str = "ddim", eta: float = 0.0) -> torch.Tensor:
    """Per-label per-SNP logit corrections that match generated allele frequencies to training ones.

    With ``by_phenotype`` the groups are (label, phenotype) pairs, index ``2 * label +
    phenotype``: rows of group ``g`` are drawn with ancestry ``g // 2`` and phenotype ``g % 2``
    and matched to that group's case (or control) allele frequencies.

    Draws ``rows`` latents per label with the trained DiT (``sampler``, ``steps``, ``eta``: as the model
    samples), decodes them, and compares the mean
    decoded class probabilities with the (smoothed) training frequencies of that label:
    ``correction = log f_train - log mean p``, clipped to ``[-bound, bound]``. Only aggregate
    per-label frequencies enter; a DP run must pass noised frequencies.

    ``iters > 1`` iterates the correction on the same decoded rows,
    ``c <- c + log f - log mean softmax(logits + c)``, until the mean matches: a sharp decoder
    (probabilities near 0 or 1, e.g. a public model's, :mod:`genosynth.training.transfer`) is
    under-corrected by the one step.

    per_label : float, shape (n_labels, V, K) -> float, shape (n_labels, V, K)
    """
    was = dit.training
    dit.eval()
    out = []
    shape = (rows, vae.config.latent_channels, vae.n_tokens)
    for j in range(per_label.shape[0]):
        y = torch.full((rows,), j // 2 if by_phenotype else j, dtype=torch.long, device=dev)  # (rows,)
        cond = {"y": y}
        if by_phenotype:
            cond["pheno"] = torch.full((rows,), j % 2, dtype=torch.long, device=dev)  # (rows,)
        logits = decoded_draws(vae, dit, diffusion, cond, latent_scale, shape=shape, steps=steps, sampler=sampler,
                               eta=eta, rng=rng, dev=dev)  # (rows, K, V)
        p = torch.softmax(logits, dim=1).mean(dim=0).T.cpu()  # (V, K)
        c = (per_label[j].log() - p.clamp_min(1e-6).log()).clamp(-bound, bound)  # (V, K)
        for _ in range(iters - 1):
            p = torch.softmax(logits + c.T.to(logits.device), dim=1).mean(dim=0).T.cpu()  # (V, K)
            c = (c + per_label[j].log() - p.clamp_min(1e-6).log()).clamp(-bound, bound)
        out.append(c)
    dit.train(was)
    return torch.stack(out)


#: the decoder temperature a fit may choose lies in [TEMPERATURE_FLOOR, 1]
TEMPERATURE_FLOOR = 0.25


def decoded_entropy(logits: torch.Tensor, temperatures: np.ndarray) -> np.ndarray:
    """Mean per-SNP entropy (nats) of the allele classes of ``logits`` at each temperature.

    logits : float, shape (B, K, V) -> float64, shape (len(temperatures),)
    """
    out = []
    for t in temperatures:
        logp = torch.log_softmax(logits.float() / float(t), dim=1)  # (B, K, V)
        out.append(float(-(logp.exp() * logp).sum(dim=1).mean()))
    return np.asarray(out)


def temperature_for_entropy(curve: np.ndarray, temperatures: np.ndarray, target: float) -> float:
    """The temperature at which an entropy ``curve`` (increasing in temperature, one value per entry of
    the increasing ``temperatures``) reaches ``target``, by linear interpolation; the grid's ends when
    the target lies outside it (never above the largest temperature, 1 for the fit).

    >>> temperature_for_entropy(np.array([0.1, 0.2, 0.4]), np.array([0.5, 0.75, 1.0]), 0.3)
    0.875
    """
    if target >= curve[-1]:
        return float(temperatures[-1])
    if target <= curve[0]:
        return float(temperatures[0])
    return float(np.interp(target, curve, temperatures))


@torch.no_grad()
def fit_temperature(vae: GenotypeVAE, dit: DiT1D, diffusion: GaussianDiffusion, mu: torch.Tensor,
                    labels: torch.Tensor, latent_scale: float, *, rows: int, steps: int, sampler: str,
                    rng: torch.Generator, dev: torch.device, eta: float = 0.0,
                    floor: float = TEMPERATURE_FLOOR) -> dict:
    """The decoder temperature at which the DiT's draws decode as sharply as the training rows' latents.

    A DiT that cannot hold every window's haplotypes draws latents between them, which decode to
    blurred allele probabilities; alleles drawn from those independently lose LD at every distance
    (benchmarks/RESULTS.md, "Why the DiT lost LD"). Per label, up to ``rows`` training rows' posterior
    means and ``rows`` DiT draws (``sampler``, ``steps``, ``eta``: as the model samples) are decoded; the
    temperature in ``[floor, 1]`` that brings the draws' mean per-SNP entropy down to the training
    rows' is returned (1 when the draws are no more blurred). Only that one aggregate of the training
    rows enters (no per-person value is kept).

    mu : float, shape (R, C, T) - posterior means of the training rows; labels : int64, shape (R,)

    Returns ``{"temperature": float, "entropy_train": float, "entropy_draws": float}`` (draws at 1).
    """
    was = dit.training
    dit.eval()
    grid = np.linspace(floor, 1.0, 31)
    shape = (rows, vae.config.latent_channels, vae.n_tokens)
    real, drawn, weight = [], [], []
    for j in torch.unique(labels).tolist():
        where = torch.nonzero(labels == j).flatten()
        pick = where[torch.randperm(len(where), generator=rng)[:rows]]  # (r,)
        y = torch.full((len(pick),), j, dtype=torch.long, device=dev)  # (r,)
        real.append(decoded_entropy(vae.decode(mu[pick].to(dev), y), grid[-1:])[0])
        cond = {"y": torch.full((rows,), j, dtype=torch.long, device=dev)}
        logits = decoded_draws(vae, dit, diffusion, cond, latent_scale, shape=shape, steps=steps, sampler=sampler,
                               eta=eta, rng=rng, dev=dev)  # (rows, K, V)
        drawn.append(decoded_entropy(logits, grid))  # (G,)
        weight.append(len(pick))
    dit.train(was)
    w = np.asarray(weight, dtype=np.float64) / sum(weight)
    target = float(np.dot(w, real))
    curve = np.tensordot(w, np.stack(drawn), axes=1)  # (G,)
    return {"temperature": temperature_for_entropy(curve, grid, target), "entropy_train": target,
            "entropy_draws": float(curve[-1])}


def _fine_column(cohort: Cohort, label_column: str, setting: str, max_people: int) -> str | None:
    """The finer label column to store corrections for, or None (``training.fine_labels``)."""
    if setting == "off" or label_column == "pop":
        return None
    column = "pop" if setting == "auto" else setting
    if column == label_column or column not in cohort.samples.columns:
        if setting != "auto":
            raise InputError(f"training.fine_labels={setting!r}: the sample table has no {setting!r} column "
                             "nested in the label column; give --samples with it, or use 'auto' / 'off'")
        return None
    fine, coarse = cohort.labels(column), cohort.labels(label_column)
    if (fine == "").any() or any(len(set(coarse[fine == f])) != 1 for f in np.unique(fine)):
        if setting != "auto":
            raise InputError(f"training.fine_labels={setting!r}: every person needs a {setting!r} label that lies "
                             f"inside one {label_column!r} label; fix the sample table or use 'auto' / 'off'")
        return None
    sizes = np.unique(fine, return_counts=True)[1]
    thin = setting != "auto" or max_people <= 0 or float(np.median(sizes)) <= max_people
    return column if thin and len(sizes) > len(np.unique(coarse)) else None


def fine_label_corrections(cohort: Cohort, data: TrainingData, per_label: torch.Tensor, *, label_column: str,
                           setting: str, max_people: int, exponent: float, rank: int = -1,
                           bound: float = 3.0) -> dict | None:
    """Allele-frequency corrections of finer labels (populations) inside the coarse labels a model conditions on.

    A model conditioned on super population decodes its frequencies ``Q_s``; each population ``l`` of
    super population ``s`` gets a correction of the decoder logits toward frequencies ``P_l``, added
    for a person drawn as ``l`` (:class:`genosynth.sampling.generator.Generator`). With few people
    per population their frequencies ``f_l`` are mostly sampling noise, and every per-SNP estimate
    of them carries its members' genotypes, so ``P_l`` keeps only part of ``f_l - Q_s``:

    * ``rank != 0`` (default ``-1``: the axes above the noise edge, :func:`principal_axes`; ``k > 0``: ``k``
      axes): the population's offset along the top principal axes of the training people
      (:func:`principal_axes`), ``P_l = Q_s + A A' (f_l - Q_s)`` in genotypes standardised by the
      overall frequency, ``f_l`` unsmoothed. A population's centre along a few axes is where its
      people sit in a PCA; its per-SNP noise (and the members' own rare alleles) is left out.
      The decoder logits of allele class ``m`` (of ``K``) get ``m log(P/Q) + (K - 1 - m)
      log((1 - P)/(1 - Q))``, the binomial likelihood ratio (:mod:`genosynth.sampling.ancestry`).
      The tilts are then recentred so that a coarse label's populations, mixed as in training, decode
      its genotype classes (:func:`_recentred`). Cohort (a) of issue 21 (15 people per population, 5
      axes): PCA energy distance 0.14-0.16 -> 0.00-0.01, population TSTR +0.08 / +0.14,
      membership-inference AUC +0.00-0.01, AATS -0.04 (benchmarks/RESULTS.md, session 11).
    * ``rank == 0``: per-SNP empirical Bayes (as before): ``P_l = Q_s + w^exponent (f_l - Q_s)`` with
      ``w = n_l / (n_l + (1 - F) / F)`` per SNP (``n_l`` called alleles, ``F`` the Balding-Nichols
      divergence of the group from unsmoothed counts, :func:`~genosynth.training.data.shrink_label_frequencies`;
      ``f_l`` with pseudo-count 0.5). ``exponent`` 1 is the posterior mean, 0.5 matches the spread
      between populations to ``F`` (constrained Bayes, Louis 1984). Costlier in membership signal per
      unit of population signal than the axes (RESULTS.md, session 11).

    Only aggregate per-label frequencies (and, for the axes, the training people's top principal axes) enter.

    Parameters
    ----------
    per_label : float, shape (n_labels, V, K)
        The coarse labels' frequencies the model's calibration matches.

    Returns
    -------
    None when ``setting`` selects no column (``"off"``, or ``"auto"`` and the finer labels have more than
    ``max_people`` people on median), else ``{"column", "labels", "parent" (coarse index per fine label),
    "mix", "correction" (float, shape (n_fine, V, K)), "F", "exponent", "rank"}`` (``rank`` the number of axes
    used, 0 for the per-SNP shrinkage).

    References
    ----------
    Louis T. A. (1984) Estimating a population of parameter values using Bayes and empirical Bayes
    methods. JASA 79(386): 393-398.
    Patterson N., Price A. L., Reich D. (2006) Population structure and eigenanalysis. PLoS Genetics 2(12): e190.
    """
    column = _fine_column(cohort, label_column, setting, max_people)
    if column is None:
        return None
    fine = cohort.labels(column)
    vocabulary, index = np.unique(fine, return_inverse=True)
    rows = data.alleles.shape[0] // cohort.n_samples  # 2 haplotype rows or 1 genotype row per person
    row_fine = torch.from_numpy(np.repeat(index, rows).astype(np.int64))  # (R,)
    parent = torch.zeros(len(vocabulary), dtype=torch.long)  # (Lf,)
    parent[row_fine] = data.labels
    count, seen = class_counts(data.alleles, row_fine, len(vocabulary), data.n_classes)  # (Lf+1, V, K), (Lf+1, V)
    overall, raw = smoothed_frequencies(count, seen, pseudo_count=1e-3)  # (V, K), (Lf, V, K): (almost) unsmoothed
    groups = [torch.nonzero(parent == j).squeeze(1).tolist() for j in range(per_label.shape[0])]
    _, info = shrink_label_frequencies(raw, seen[:-1], groups, alleles_per_row=1 if data.n_classes == 2 else 2)
    q = per_label[parent].double()  # (Lf, V, K)
    if rank != 0:
        centre = alt_frequency(overall.double()).numpy()  # (V,)
        axes = principal_axes(cohort, freq=centre, rank=None if rank < 0 else rank)  # (V, k)
        correction = _axis_correction(alt_frequency(raw.double()).numpy(), alt_frequency(q).numpy(), centre, axes,
                                      n_classes=data.n_classes, bound=bound)  # (Lf, V, K)
        weight = torch.from_numpy(np.bincount(index, minlength=len(vocabulary)).astype(np.float64))  # (Lf,)
        correction = _recentred(correction, per_label, parent, weight, bound=bound)
        k = axes.shape[1]
    else:
        k = 0
        _, smooth = smoothed_frequencies(count, seen, pseudo_count=0.5)  # (Lf, V, K)
        kappa = torch.tensor([x if x is not None else 0.0 for x in info["kappa"]], dtype=torch.float64)[parent]
        n_alleles = seen[:-1].double() * (1 if data.n_classes == 2 else 2)  # (Lf, V)
        w = torch.where(n_alleles > 0, n_alleles / (n_alleles + kappa[:, None]).clamp_min(1e-12), 0.0)  # (Lf, V)
        target = q + w.pow(exponent)[..., None] * (smooth.double() - q)  # (Lf, V, K)
        correction = (target.clamp_min(1e-6).log() - q.clamp_min(1e-6).log()).clamp(-bound, bound).float()
    sizes = np.bincount(index, minlength=len(vocabulary))
    return {"column": column, "labels": [str(v) for v in vocabulary], "parent": parent.tolist(),
            "mix": {str(v): float(c / sizes.sum()) for v, c in zip(vocabulary, sizes)},
            "correction": correction, "F": info["F"], "exponent": float(exponent), "rank": int(k)}


def principal_axes(cohort: Cohort, *, freq: np.ndarray, rank: int | None = None, chunk: int = 4096,
                   max_people: int = 4000) -> np.ndarray:
    """The top principal axes of the training people's genotypes, standardised by ``freq``.

    Each SNP is centred by ``2 q`` and scaled by ``sqrt(2 q (1 - q))`` (Patterson et al. 2006;
    missing calls count as the centre). The people's Gram matrix is summed over SNP chunks and
    its top eigenvectors give the axes, so memory stays at (N, N) plus one chunk (at most
    ``max_people`` people, evenly spaced rows, enter). ``rank=None`` keeps the axes whose
    eigenvalue is above the Marchenko-Pastur edge ``(sqrt(N) + sqrt(V))^2`` of unstructured
    genotypes (unit variance per standardised entry): the axes population structure makes
    (Patterson et al. 2006), at least one.

    freq : float, shape (V,) overall ALT frequency -> float64, shape (V, k), orthonormal columns,
    ``k = min(rank, N - 1, V)``.
    """
    g = cohort.genotypes()  # (N, V) int8, -1 missing
    if g.shape[0] > max_people:
        g = g[np.linspace(0, g.shape[0] - 1, max_people).round().astype(np.int64)]  # (max_people, V)
    n, v = g.shape
    scale = np.sqrt(np.clip(2 * freq * (1 - freq), 1e-6, None))  # (V,)
    gram = np.zeros((n, n))
    for s in range(0, v, chunk):
        x = _standardised(g[:, s:s + chunk], freq[s:s + chunk], scale[s:s + chunk])  # (N, c)
        gram += x @ x.T
    w, u = np.linalg.eigh(gram)  # ascending
    w, u = w[::-1], u[:, ::-1]
    if rank is None:
        rank = max(1, int((w > (np.sqrt(n) + np.sqrt(v)) ** 2).sum()))
    k = int(min(rank, n - 1, v))
    u, w = u[:, :k], w[:k]
    axes = np.concatenate([_standardised(g[:, s:s + chunk], freq[s:s + chunk], scale[s:s + chunk]).T @ u
                           for s in range(0, v, chunk)]) / np.sqrt(np.clip(w, 1e-12, None))  # (V, k)
    return axes


def _standardised(g: np.ndarray, freq: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """float64 (N, c): ``(g - 2 q) / sqrt(2 q (1 - q))``, 0 where missing."""
    return np.where(g < 0, 0.0, (g - 2 * freq) / scale)


def _axis_correction(f: np.ndarray, q: np.ndarray, centre: np.ndarray, axes: np.ndarray, *, n_classes: int,
                     bound: float) -> torch.Tensor:
    """Logit corrections from the coarse frequencies ``q`` to ``q + A A' (f - q)`` (standardised by ``centre``).

    f, q : float, shape (Lf, V) fine labels' own and their coarse labels' ALT frequencies -> float, shape (Lf, V, K)
    """
    scale = np.sqrt(np.clip(2 * centre * (1 - centre), 1e-6, None))  # (V,)
    offset = ((f - q) / scale) @ axes @ axes.T * scale  # (Lf, V): the offset along the axes
    p = torch.from_numpy(np.clip(q + offset, 1e-3, 1 - 1e-3))  # (Lf, V)
    q = torch.from_numpy(np.clip(q, 1e-3, 1 - 1e-3))
    return binomial_logit_shift(p, q, n_classes=n_classes).clamp(-bound, bound).float()  # (Lf, V, K)


def _recentred(correction: torch.Tensor, per_label: torch.Tensor, parent: torch.Tensor, weight: torch.Tensor, *,
               bound: float) -> torch.Tensor:
    """Corrections shifted per class so that the fine labels of a coarse label, mixed by ``weight``, decode its
    class frequencies.

    The binomial tilt moves each population's ALT frequency, but a coarse label's genotype classes
    already hold the deficit of heterozygotes that its populations' differences make (Wahlund);
    tilting every population by its offset takes that deficit a second time (cohort (a): synthetic
    heterozygosity 0.313 against 0.324 real). One multiplicative step per coarse label, SNP and class
    puts the mixture back on ``per_label`` and keeps the populations' differences.

    correction : (Lf, V, K); per_label : (L, V, K); parent, weight : (Lf,) -> float, shape (Lf, V, K)
    """
    q = per_label.double().clamp_min(1e-12)  # (L, V, K)
    tilted = q[parent] * correction.double().exp()  # (Lf, V, K)
    tilted = tilted / tilted.sum(-1, keepdim=True)
    mixed = torch.zeros_like(q).index_add_(0, parent, weight[:, None, None] * tilted)  # (L, V, K)
    mixed = mixed / torch.zeros(q.shape[0], dtype=torch.float64).index_add_(0, parent, weight)[:, None, None]
    return (correction.double() + (q.log() - mixed.clamp_min(1e-12).log())[parent]).clamp(-bound, bound).float()


def label_ancestry_spread(cohort: Cohort, data: TrainingData, per_label: torch.Tensor, *, dims: int = 8,
                          fine: dict | None = None) -> dict | None:
    """Each label's spread of individual ancestry along the directions between the labels' frequencies.

    The plain (un-noised) counterpart of :func:`genosynth.privacy.releases.release_ancestry_spread`:
    people of one super population differ in ancestry (admixed populations, clines), but decoding
    gives everyone of a label nearly the label's frequencies, so synthetic people sat far too close
    together along the continental axes (cohort (a): within-label variance along PC 1-2 a tenth of
    the real one). Along the top ``k = min(dims, L - 1)`` directions of the label frequencies
    (:func:`~genosynth.privacy.releases.ancestry_basis`) each person's allele fractions minus the
    label's frequencies give coordinates; their second moment per label minus what genotype
    sampling explains is the label's ancestry covariance (negative directions dropped). Sampling
    draws each person's own frequencies from it (:mod:`genosynth.sampling.ancestry`). Missing calls
    count as the label's frequency. Only aggregate (k x k per label) moments enter.

    With ``fine`` (:func:`fine_label_corrections`) each person is measured from its population's
    frequencies (the label's with the population's correction) instead: the populations' own offsets
    are decoded by their corrections already, so the spread keeps only what lies within populations
    (with the label's centre the between-population part was counted twice; session 9: AATS 0.39-0.40).

    per_label : float, shape (L, V, K) - the frequencies the model's calibration matches (the centres).

    Returns
    -------
    ``{"basis": float64 (V, k), "freq": float64 (L, V), "cov": float64 (L, k, k)}``; None with one label.
    """
    q = alt_frequency(per_label.double()).numpy()  # (L, V) ALT frequency
    basis = ancestry_basis(q, dims)  # (V, k)
    if basis.shape[1] < 1:
        return None
    rows = data.alleles.shape[0] // cohort.n_samples
    y = data.labels[::rows].numpy()  # (N,) label index per person
    g = cohort.genotypes()  # (N, V) int8, -1 missing
    centre = q[y]  # (N, V)
    if fine is not None:
        tilted = per_label[fine["parent"]].double() * fine["correction"].double().exp()  # (Lf, V, K)
        own = alt_frequency(tilted / tilted.sum(-1, keepdim=True)).numpy()  # (Lf, V) each population's frequencies
        index = {v: i for i, v in enumerate(fine["labels"])}
        centre = own[np.array([index[v] for v in cohort.labels(fine["column"])])]  # (N, V)
    coords = np.where(g < 0, 0.0, g / 2.0 - centre) @ basis  # (N, k)
    k = basis.shape[1]
    cov = np.zeros((q.shape[0], k, k))
    for j in range(q.shape[0]):
        c = coords[y == j]  # (n_j, k)
        if len(c) < 2:
            continue
        cov[j] = ancestry_covariance(c.T @ c / len(c), basis, q[j], ploidy=2)  # (k, k)
    return {"basis": basis, "freq": q, "cov": cov}
