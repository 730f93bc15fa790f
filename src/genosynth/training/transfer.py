"""Adapting a released public model to a private cohort (``genosynth train --epsilon E --from-model PUBLIC.pt``).

A *public model* is an ordinary ``genosynth train`` checkpoint of a public reference panel (1000
Genomes, HGDP): its weights, label vocabulary and LD prior are public, so reusing them spends no
budget. This module holds what the DP trainer (:mod:`genosynth.training.private`) needs to start
from one, none of which touches private values beyond their shape and variant table:

- :func:`load_public_model`: read and check the checkpoint;
- :func:`align_to_model`: match the private cohort's variants to the model's by chromosome,
  position and alleles (REF/ALT swaps flipped, model SNPs the cohort lacks filled from the public
  model, refused below ``min_overlap`` or when the cohort has SNPs the model lacks);
- :func:`adapt_config`: the public model's architecture with this run's training options;
- :func:`adopt_public_weights`: copy the public VAE and DiT into the freshly built networks, label
  tables extended for labels the public panel lacks;
- :func:`correct_public_prior`: the public LD band as the baseline and the private DP band as a
  noisy correction, shrunk towards the public band by its known noise (post-processing).

``docs/privacy.md`` §"Public model" states the threat model.

References
----------
Ganesh A. et al. (2023) Why is public pretraining necessary for private model training? ICML.
Stephens M. (2017) False discovery rates: a new deal. Biostatistics 18(2): 275-294 (the shrinkage).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import torch

from genosynth.cohort import Cohort
from genosynth.errors import InputError
from genosynth.models.checkpoint import load_checkpoint
from genosynth.models.config import GeneratorConfig, SamplingConfig
from genosynth.models.dit import DiT1D
from genosynth.models.ld_prior import CorrelationPrior
from genosynth.models.vae import GenotypeVAE
from genosynth.training.ld_fit import shrink_correlation_bands

#: refuse an adaptation when fewer of the model's SNPs than this fraction are in the private cohort
MIN_OVERLAP = 0.5


def load_public_model(path: str) -> dict:
    """The checkpoint payload of the public model ``path``; :class:`InputError` naming the fix otherwise.

    A model still training (stage other than ``"done"``) or with phenotype conditioning is refused.
    """
    ck = load_checkpoint(path)
    stage = (ck.get("state") or {}).get("stage")
    if stage != "done":
        raise InputError(f"{path}: an unfinished training run (stage {stage}); finish it with `genosynth train "
                         "--resume` on the public panel, then pass the finished PREFIX.pt to --from-model")
    if ck.get("phenotype_column"):
        raise InputError(f"{path}: a phenotype-conditioned model; --from-model needs a model trained without "
                         "--phenotype-column")
    return ck


def _variant_keys(variants: pd.DataFrame) -> list[tuple[str, int]]:
    return [(str(c), int(p)) for c, p in zip(variants["chrom"], variants["pos"])]


def align_to_model(cohort: Cohort, model_variants: pd.DataFrame, *,
                   fill: np.ndarray | Callable[[], np.ndarray] | None = None,
                   min_overlap: float = MIN_OVERLAP, seed: int = 0,
                   log: Callable[[str], None] | None = None) -> tuple[Cohort, dict]:
    """The private cohort on the model's variants, in the model's order and allele coding.

    Variants match on chromosome and position with the same two alleles; a REF/ALT swap is
    flipped (haplotype ``a -> 1 - a``, genotype ``g -> ploidy - g``; missing stays missing).

    Parameters
    ----------
    cohort : Cohort
        The private cohort.
    model_variants : DataFrame
        The public model's variant table (``Generator.variants``).
    fill : float, shape (V_model,), or a callable returning it, optional
        ALT frequencies (public: from the public model, :func:`public_frequencies`) from which model
        SNPs the cohort lacks are drawn independently for every row; needed (and a callable called)
        only when some are missing.
    min_overlap : float
        Smallest fraction of the model's SNPs that must be in the cohort.
    seed : int
        Seed of the fill draws (data-independent randomness).
    log : callable(str), optional
        Receives the counts (matched, flipped, filled).

    Returns
    -------
    Cohort, and a report ``{"model_snps", "matched", "flipped", "filled"}`` (counts only).

    Raises
    ------
    InputError
        The cohort has SNPs the model lacks (or with other alleles), naming some; or fewer than
        ``min_overlap`` of the model's SNPs are in the cohort.
    """
    where = {k: i for i, k in enumerate(_variant_keys(cohort.variants))}
    ref, alt = cohort.variants["ref"].astype(str).to_numpy(), cohort.variants["alt"].astype(str).to_numpy()
    v_model = len(model_variants)
    src = np.full(v_model, -1, dtype=np.int64)  # cohort column of each model SNP
    flip = np.zeros(v_model, dtype=bool)
    for j, (key, r, a) in enumerate(zip(_variant_keys(model_variants), model_variants["ref"].astype(str),
                                        model_variants["alt"].astype(str))):
        i = where.get(key)
        if i is None:
            continue
        if (ref[i], alt[i]) == (r, a):
            src[j] = i
        elif (ref[i], alt[i]) == (a, r):
            src[j], flip[j] = i, True
    extra = np.setdiff1d(np.arange(cohort.n_variants), src[src >= 0])
    if extra.size:
        names = ", ".join(str(x) for x in cohort.variants["id"].to_numpy()[extra[:5]])
        raise InputError(
            f"{extra.size} SNP(s) of the private cohort are not in the public model (or have other alleles), e.g. "
            f"{names}; the model cannot generate them: restrict the cohort to the model's SNPs (e.g. plink2 "
            "--extract with the model's variant ids) or train a public model on a panel that has them")
    matched = int((src >= 0).sum())
    if matched < min_overlap * v_model:
        raise InputError(
            f"only {matched} of the public model's {v_model} SNPs ({matched / max(v_model, 1):.0%}) are in the "
            f"private cohort (at least {min_overlap:.0%} needed); use a public model of the same SNP panel, or "
            "genotype/impute the cohort on the model's SNPs")
    a = cohort.alleles[:, np.maximum(src, 0)].astype(np.int8)  # (rows, V_model)
    top = 1 if cohort.phased else cohort.ploidy
    a = np.where(flip[None, :] & (a >= 0), top - a, a).astype(np.int8)
    missing = np.flatnonzero(src < 0)
    if missing.size:
        if fill is None:
            raise InputError(f"{missing.size} of the model's SNPs are not in the cohort and no fill frequencies "
                             "were given; pass the public model's frequencies")
        rng = np.random.default_rng(seed)
        p = np.asarray(fill() if callable(fill) else fill, dtype=np.float64)[missing]  # (M,)
        draws = rng.random((a.shape[0], missing.size, top)) < p[None, :, None]  # (rows, M, top)
        a[:, missing] = draws.sum(axis=2).astype(np.int8)
    out = Cohort(alleles=np.ascontiguousarray(a), variants=model_variants.reset_index(drop=True),
                 samples=cohort.samples, phased=cohort.phased, ploidy=cohort.ploidy, meta=dict(cohort.meta))
    report = {"model_snps": v_model, "matched": matched, "flipped": int(flip.sum()), "filled": int(missing.size)}
    if log is not None:
        log(f"Aligned to the public model: {matched} of {v_model} SNPs matched ({report['flipped']} with REF/ALT "
            f"swapped, flipped); {missing.size} model SNPs missing from the cohort, filled from the public model")
    return out, report


def public_frequencies(payload: dict, *, n: int = 1000, seed: int = 0) -> np.ndarray:
    """ALT frequencies of ``n`` people sampled from the public model: float64, shape (V_model,) (public)."""
    from genosynth.sampling.generator import Generator  # a public model's own sampler: no private input

    return np.asarray(Generator.from_payload(payload).sample(n, seed=seed).allele_frequencies(), dtype=np.float64)


def public_label_frequencies(payload: dict, vocabulary: list[str], *, n_per_label: int = 500,
                             seed: int = 0) -> np.ndarray:
    """ALT frequencies per label of ``vocabulary`` sampled from the public model: float64 (L, V), NaN rows for
    labels it lacks (public: the public model's own samples)."""
    from genosynth.sampling.generator import Generator

    model = Generator.from_payload(payload)
    out = np.full((len(vocabulary), len(model.variants)), np.nan)
    have = [lab for lab in vocabulary if lab in model.vocabulary]
    if have:
        syn = model.sample(labels={lab: n_per_label for lab in have}, seed=seed)
        labels = syn.samples[model.config.label_column].to_numpy()
        g = syn.genotypes().astype(np.float64)  # (N, V)
        for lab in have:
            out[vocabulary.index(lab)] = g[labels == lab].mean(axis=0) / 2.0
    return out


#: Correlation-guided decoding an adapted model samples with by default (``adapt_config``): the copula alone.
#: Latent guidance on top of it (the plain default) gave the same or lower within-population LD and a higher
#: AATS on the issue-19 benchmark (RESULTS.md "Adapted model: ancestry spread and AATS").
ADAPTED_CORR_GUIDANCE = "copula"


def adapt_config(config: GeneratorConfig, payload: dict) -> GeneratorConfig:
    """The public model's architecture (mode, VAE, DiT, diffusion) with ``config``'s training, sampling and label column.

    A ``sampling.corr_guidance`` left at the default (``"auto"``) becomes
    :data:`ADAPTED_CORR_GUIDANCE`; any other choice is kept (and ``genosynth sample --corr-guidance``
    overrides it at sampling).
    """
    d = dict(payload["config"])
    mine = config.to_dict()
    sampling = dict(mine["sampling"])
    if sampling.get("corr_guidance") == SamplingConfig().corr_guidance:
        sampling["corr_guidance"] = ADAPTED_CORR_GUIDANCE
    d.update(training=mine["training"], sampling=sampling, label_column=config.label_column,
             phenotype_column=None)
    return GeneratorConfig.from_dict(d)


def _extend_rows(public: torch.Tensor, mapping: list[int | None], null_row: int, *, new: str = "mean") -> torch.Tensor:
    """Rows of a label table for a new vocabulary: copied where the label is public, else the mean of the
    public labels' rows (``new="mean"``) or the null row (``new="null"``).

    public : (L_pub + 1, ...) with the null row last; mapping : public index of each new label (or None)
    -> (L + 1, ...) with the public null row last.
    """
    mean = public[:null_row].mean(dim=0) if null_row > 0 and new == "mean" else public[null_row]
    rows = [public[i] if i is not None else mean for i in mapping] + [public[null_row]]
    return torch.stack(rows).to(public.dtype)


def adopt_public_weights(vae: GenotypeVAE, dit: DiT1D, payload: dict, vocabulary: list[str]) -> None:
    """Load the public VAE and DiT (EMA weights as released) into freshly built networks for ``vocabulary``.

    The DiT's label embedding gets a row per label of ``vocabulary``: the public row where the
    public panel has the label, the mean of the public labels' rows otherwise; the null (unconditional)
    row stays. The VAE's per-label decoder biases: the public row where the public panel has the label,
    the public null (unconditional) row otherwise (the trainer may re-set them from the DP frequency
    release, ``PrivacyConfig.public_biases=False``). A parent-label table the private DiT lacks is dropped.
    """
    public_labels = list(payload["labels"])
    mapping = [public_labels.index(lab) if lab in public_labels else None for lab in vocabulary]
    st = payload["state"]
    vae_state = dict(st["vae"])
    if vae.label_bias is not None and "label_bias" in vae_state:
        vae_state["label_bias"] = _extend_rows(vae_state["label_bias"], mapping, len(public_labels),
                                               new="null")  # (L + 1, Vp, K)
    try:
        vae.load_state_dict(vae_state)
    except RuntimeError as exc:
        raise InputError(f"the public model's VAE does not fit this run ({exc}); adapt with the model's own "
                         "architecture (--from-model takes it from the checkpoint)") from None
    dit_state = {**st["dit"], **((st.get("ema") or {}).get("shadow") or {})}  # EMA weights where averaged
    own = dit.state_dict()
    for key in list(dit_state):
        if key not in own:
            dit_state.pop(key)  # e.g. a parent-label table the private run does not use
        elif key.endswith("embedding_table.weight") and dit_state[key].shape != own[key].shape:
            dit_state[key] = _extend_rows(dit_state[key], mapping, len(public_labels))
    try:
        dit.load_state_dict(dit_state)
    except RuntimeError as exc:
        raise InputError(f"the public model's DiT does not fit this run ({exc}); adapt with the model's own "
                         "architecture") from None


def public_band(payload: dict, vocabulary: list[str], n_variants: int) -> np.ndarray | None:
    """The public LD baseline per label of ``vocabulary``: float64, shape (L, V, W_pub), or None.

    A label the public panel has gets its own public band; a new label gets the public
    label-weighted mean band (:meth:`CorrelationPrior.band` with ``None``).
    """
    state = payload.get("correlation_prior")
    if state is None:
        return None
    prior = CorrelationPrior.from_state_dict(state)
    if prior.n_variants != n_variants:
        return None
    return np.stack([prior.band(prior.labels.index(lab) if lab in prior.labels else None) for lab in vocabulary])


def correct_public_prior(public: np.ndarray, private: np.ndarray, freq: np.ndarray, counts: np.ndarray, *,
                         noise_multiplier: float, clip: float) -> tuple[np.ndarray, list[float]]:
    """Public band plus the shrunk private correction: ``r = clip(r_pub + shrink(r_dp - r_pub), -1, 1)``.

    The deviation of each DP entry from the public one carries the release's known noise
    (:func:`~genosynth.training.ld_fit.shrink_correlation_bands` computes it from the DP
    frequencies and counts); adaptive shrinkage keeps only deviations the noise cannot explain.
    Post-processing of the DP release and public values only.

    public : float, shape (L, V, W_pub); private : float, shape (L, V, W) raw DP bands;
    freq : float, shape (L, V) DP frequencies; counts : float, shape (L,) DP counts
    -> float32, shape (L, V, max(W, W_pub)), and the fraction of ``sum |deviation|`` kept per label.
    """
    n_labels, v, w = private.shape
    width = max(w, public.shape[2])
    base = np.zeros((n_labels, v, width))
    base[:, :, :public.shape[2]] = public
    dev = np.asarray(private, dtype=np.float64) - base[:, :, :w]  # (L, V, W)
    valid = private != 0  # entries the release covers (pairs inside the cohort)
    shrunk, kept = shrink_correlation_bands(np.where(valid, dev, 0.0), freq, counts,
                                            noise_multiplier=noise_multiplier, clip=clip)
    out = base.copy()
    out[:, :, :w] += np.where(valid, shrunk, 0.0)
    return np.clip(out, -1.0, 1.0).astype(np.float32), kept
