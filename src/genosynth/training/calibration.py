"""Calibration of decoded allele frequencies to (aggregate, or DP-released) training frequencies."""

from __future__ import annotations

import torch
from genosynth.models.diffusion import GaussianDiffusion
from genosynth.models.dit import DiT1D
from genosynth.models.vae import GenotypeVAE


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
