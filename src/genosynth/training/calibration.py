"""Calibration of decoded allele frequencies to (aggregate, or DP-released) training frequencies, and the
corrections of finer labels (populations) inside the labels a model conditions on."""

from __future__ import annotations

import numpy as np
import torch
from genosynth.cohort import Cohort
from genosynth.errors import InputError
from genosynth.models.diffusion import GaussianDiffusion
from genosynth.models.dit import DiT1D
from genosynth.models.vae import GenotypeVAE
from genosynth.privacy.releases import ancestry_basis, ancestry_covariance
from genosynth.training.data import TrainingData, class_counts, shrink_label_frequencies, smoothed_frequencies


@torch.no_grad()
def calibrate_frequencies(vae: GenotypeVAE, dit: DiT1D, diffusion: GaussianDiffusion, per_label: torch.Tensor,
               latent_scale: float, *, rows: int, steps: int, rng: torch.Generator,
               dev: torch.device, bound: float = 3.0, by_phenotype: bool = False, iters: int = 1) -> torch.Tensor:
    """Per-label per-SNP logit corrections that match generated allele frequencies to training ones.

    With ``by_phenotype`` the groups are (label, phenotype) pairs, index ``2 * label +
    phenotype``: rows of group ``g`` are drawn with ancestry ``g // 2`` and phenotype ``g % 2``
    and matched to that group's case (or control) allele frequencies.

    Draws ``rows`` latents per label with the trained DiT, decodes them, and compares the mean
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
        noise = torch.randn(shape, generator=rng).to(dev)  # (rows, C, T)
        z = diffusion.ddim_sample(dit, shape, cond=cond, steps=steps, noise=noise, device=dev)
        logits = vae.decode(z / latent_scale, y)  # (rows, K, V)
        p = torch.softmax(logits, dim=1).mean(dim=0).T.cpu()  # (V, K)
        c = (per_label[j].log() - p.clamp_min(1e-6).log()).clamp(-bound, bound)  # (V, K)
        for _ in range(iters - 1):
            p = torch.softmax(logits + c.T.to(logits.device), dim=1).mean(dim=0).T.cpu()  # (V, K)
            c = (c + per_label[j].log() - p.clamp_min(1e-6).log()).clamp(-bound, bound)
        out.append(c)
    dit.train(was)
    return torch.stack(out)


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
                           setting: str, max_people: int, exponent: float, bound: float = 3.0) -> dict | None:
    """Allele-frequency corrections of finer labels (populations) inside the coarse labels a model conditions on.

    A model conditioned on super population decodes its frequencies; each population ``l`` of
    super population ``s`` gets ``log P_l - log Q_s`` (per SNP and allele class), added to the
    decoder logits of a person drawn as ``l`` (:class:`genosynth.sampling.generator.Generator`).
    With few people per population their frequencies are mostly sampling noise, so ``P_l`` is
    shrunk toward ``Q_s`` by empirical Bayes (Balding-Nichols divergence ``F`` of the group,
    estimated from the unsmoothed frequencies by
    :func:`~genosynth.training.data.shrink_label_frequencies`):
    ``P_l = Q_s + w^exponent (f_l - Q_s)`` with ``w = n_l / (n_l + (1 - F) / F)`` per SNP
    (``n_l`` called alleles). ``exponent`` 1 is the posterior mean, whose spread between
    populations is ``w`` times too narrow; 0.5 makes the spread of the corrected frequencies match
    the estimated divergence (constrained Bayes, Louis 1984). Only aggregate per-label frequencies enter.

    Parameters
    ----------
    per_label : float, shape (n_labels, V, K)
        The coarse labels' frequencies the model's calibration matches.

    Returns
    -------
    None when ``setting`` selects no column (``"off"``, or ``"auto"`` and the finer labels have more than
    ``max_people`` people on median), else ``{"column", "labels", "parent" (coarse index per fine label),
    "mix", "correction" (float, shape (n_fine, V, K)), "F", "exponent"}``.

    References
    ----------
    Louis T. A. (1984) Estimating a population of parameter values using Bayes and empirical Bayes
    methods. JASA 79(386): 393-398.
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
    _, smooth = smoothed_frequencies(count, seen, pseudo_count=0.5)  # (Lf, V, K)
    _, raw = smoothed_frequencies(count, seen, pseudo_count=1e-3)  # (Lf, V, K): F from (almost) unsmoothed ones
    groups = [torch.nonzero(parent == j).squeeze(1).tolist() for j in range(per_label.shape[0])]
    _, info = shrink_label_frequencies(raw, seen[:-1], groups, alleles_per_row=1 if data.n_classes == 2 else 2)
    kappa = torch.tensor([k if k is not None else 0.0 for k in info["kappa"]], dtype=torch.float64)[parent]  # (Lf,)
    n_alleles = seen[:-1].double() * (1 if data.n_classes == 2 else 2)  # (Lf, V)
    w = torch.where(n_alleles > 0, n_alleles / (n_alleles + kappa[:, None]).clamp_min(1e-12), 0.0)  # (Lf, V)
    q = per_label[parent].double()  # (Lf, V, K)
    target = q + w.pow(exponent)[..., None] * (smooth.double() - q)  # (Lf, V, K)
    correction = (target.clamp_min(1e-6).log() - q.clamp_min(1e-6).log()).clamp(-bound, bound).float()
    sizes = np.bincount(index, minlength=len(vocabulary))
    return {"column": column, "labels": [str(v) for v in vocabulary], "parent": parent.tolist(),
            "mix": {str(v): float(c / sizes.sum()) for v, c in zip(vocabulary, sizes)},
            "correction": correction, "F": info["F"], "exponent": float(exponent)}


def label_ancestry_spread(cohort: Cohort, data: TrainingData, per_label: torch.Tensor, *, dims: int = 8) -> dict | None:
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

    per_label : float, shape (L, V, K) - the frequencies the model's calibration matches (the centres).

    Returns
    -------
    ``{"basis": float64 (V, k), "freq": float64 (L, V), "cov": float64 (L, k, k)}``; None with one label.
    """
    k_classes = per_label.shape[-1]  # 2 haplotype or 3 genotype classes
    q = ((per_label.double() * torch.arange(k_classes)).sum(-1) / (k_classes - 1)).numpy()  # (L, V) ALT frequency
    basis = ancestry_basis(q, dims)  # (V, k)
    if basis.shape[1] < 1:
        return None
    rows = data.alleles.shape[0] // cohort.n_samples
    y = data.labels[::rows].numpy()  # (N,) label index per person
    g = cohort.genotypes()  # (N, V) int8, -1 missing
    coords = np.where(g < 0, 0.0, g / 2.0 - q[y]) @ basis  # (N, k)
    k = basis.shape[1]
    cov = np.zeros((q.shape[0], k, k))
    for j in range(q.shape[0]):
        c = coords[y == j]  # (n_j, k)
        if len(c) < 2:
            continue
        cov[j] = ancestry_covariance(c.T @ c / len(c), basis, q[j], ploidy=2)  # (k, k)
    return {"basis": basis, "freq": q, "cov": cov}
