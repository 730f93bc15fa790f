"""The generator pipeline: configuration, training (VAE then latent DiT), checkpoints, sampling.

Training is two plain stages run by :func:`train_generator`:

1. a categorical VAE (:mod:`genosynth.models.vae`) learns rows of alleles (haplotypes when the
   input is phased, else genotype counts) -> latent ``(C, T)``;
2. the latents of the training rows are computed **in-process** (never stored), scaled by one
   aggregate factor to unit variance, and a label-conditioned 1D DiT
   (:mod:`genosynth.models.dit`) learns them with the Gaussian diffusion loss
   (:mod:`genosynth.diffusion`), dropping labels at random for classifier-free guidance.

Every optimiser step goes through :func:`optimizer_step` with the per-row loss, the one place a
DP-SGD optimiser plugs in. All randomness comes from one seeded ``torch.Generator`` whose state is
checkpointed, so a run resumed from a checkpoint ends bit-identical to an uninterrupted one (on
the same device and thread count).

A checkpoint holds the config, seed, package versions, variant table, label vocabulary and
training mix, training curves, aggregate latent scale, model/optimizer/EMA weights and the RNG
state: never genotypes, per-person latents or any other per-person value.

Sampling (:class:`Generator`) draws latents with DDIM, decodes them to allele probabilities and
**draws** alleles from them (argmax only on request); in haplotype mode two haplotypes of the
same label make one person.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from genosynth import __version__
from genosynth.cohort import Cohort, make_samples
from genosynth.diffusion import DiffusionConfig, GaussianDiffusion
from genosynth.ema import EMA
from genosynth.errors import InputError
from genosynth.io.atomic import atomic_outputs
from genosynth.models.dit import DiT1D, DiTConfig
from genosynth.corrguide import CorrelationPrior, CorrGuideConfig, guided_decode
from genosynth.models.vae import GenotypeVAE, VAEConfig, sample_alleles
from genosynth.privacy.ancestry import person_logit_shift

DIT_LR_SCHEDULES = ("constant", "cosine")
DIT_TARGETS = ("sample", "mean")
CHECKPOINT_FORMAT = "genosynth-generator"
CHECKPOINT_VERSION = 1
STAGES = ("vae", "dit", "done")


# ---------------------------------------------------------------------------------- config
@dataclass
class TrainingConfig:
    """Optimisation of both stages."""

    vae_epochs: int = 20  # passes over the training rows for the VAE
    vae_batch_size: int = 128  # rows per VAE step
    vae_lr: float = 2e-3  # AdamW learning rate of the VAE
    dit_epochs: int = 100  # passes over the training latents for the DiT
    dit_batch_size: int = 256  # latents per DiT step
    dit_lr: float = 1e-3  # AdamW learning rate of the DiT
    weight_decay: float = 0.0  # AdamW weight decay (both stages)
    grad_clip: float = 1.0  # clip the batch gradient norm (0 = off); DP replaces this by per-row clipping
    ema_decay: float = 0.995  # EMA of the DiT weights used for sampling
    dit_lr_schedule: str = "constant"  # DiT learning rate over its optimiser steps: "constant" or "cosine" (decays to ~0 at the last step)
    dit_warmup: int = 0  # DiT optimiser steps of linear learning-rate warm-up (0 = off)
    dit_target: str = "sample"  # latents the DiT learns: "sample" (fresh posterior draws mu + sd*eps each epoch) or "mean" (posterior means mu)
    pseudo_count: float = 0.5  # smoothing of the allele frequencies that initialise the decoder biases
    calibration_rows: int = 512  # rows per label drawn after training to calibrate allele frequencies (0 = off)
    calibration_steps: int = 20  # DDIM steps of those draws
    checkpoint_every: int = 10  # epochs between periodic checkpoints (when a path is given)

    def __post_init__(self) -> None:
        if self.dit_lr_schedule not in DIT_LR_SCHEDULES:
            raise InputError(f"training.dit_lr_schedule={self.dit_lr_schedule!r}: use one of {', '.join(DIT_LR_SCHEDULES)}")
        if self.dit_target not in DIT_TARGETS:
            raise InputError(f"training.dit_target={self.dit_target!r}: use one of {', '.join(DIT_TARGETS)}")
        if self.dit_warmup < 0:
            raise InputError(f"training.dit_warmup={self.dit_warmup} must be >= 0 (optimiser steps; 0 = no warm-up)")


@dataclass
class SamplingConfig:
    """Defaults of :meth:`Generator.sample` (each can be overridden per call)."""

    steps: int = 20  # DDIM steps
    guidance: float = 1.0  # classifier-free guidance scale (1 = plain conditional)
    pheno_guidance: float | None = None  # phenotype models: separate CFG scale of case/control given ancestry (None = joint)
    eta: float = 0.0  # DDIM eta (0 deterministic given the starting noise)
    batch_size: int = 2048  # people per sampling batch
    argmax: bool = False  # take the most likely allele instead of drawing (loses diversity)
    temperature: float = 1.0  # decoder logit temperature
    pairing: str = "random"  # haplotype mode: "matched" pairs haplotypes close in latent PCs within a label, "random"
    corr_guidance: str = "latent+copula"  # correlation-guided decoding (genosynth.corrguide): none|copula|latent|latent+copula
    corr_window: int = 64  # training: copula band (SNPs) of the stored correlation prior
    corr_latent_window: int = 768  # training: latent-guidance band (SNPs, pairs <= 1 Mb) stored in the checkpoint
    ancestry_spread: bool = True  # DP models: each person draws its own ancestry from the released within-label spread


@dataclass
class GeneratorConfig:
    """The one configuration of the generator, saved (resolved) in every checkpoint."""

    label_column: str = "super_pop"  # sample-table column the generator conditions on
    phenotype_column: str | None = None  # binary trait column (1 case, 0 control, NaN missing) the DiT also conditions on; None = off
    phenotype_calibration: bool = True  # phenotype models: calibrate allele frequencies per (label, phenotype) group
    mode: str = "auto"  # "haplotype" (phased input, 2 classes), "genotype" (3 classes) or "auto"
    vae: VAEConfig = field(default_factory=VAEConfig)
    dit: DiTConfig = field(default_factory=lambda: DiTConfig(hidden=64, depth=3, heads=4, patch_size=2))
    diffusion: DiffusionConfig = field(default_factory=lambda: DiffusionConfig(schedule="cosine"))
    training: TrainingConfig = field(default_factory=TrainingConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GeneratorConfig":
        return cls(
            label_column=d["label_column"], mode=d["mode"], phenotype_column=d.get("phenotype_column"),
            phenotype_calibration=d.get("phenotype_calibration", True), vae=VAEConfig(**d["vae"]),
            dit=DiTConfig(**d["dit"]), diffusion=DiffusionConfig(**d["diffusion"]),
            training=TrainingConfig(**d["training"]), sampling=SamplingConfig(**d["sampling"]),
        )

    def replace(self, **sections) -> "GeneratorConfig":
        """A copy with fields of sections changed: ``cfg.replace(training={"vae_epochs": 5})``."""
        out = GeneratorConfig.from_dict(self.to_dict())
        for name, changes in sections.items():
            if isinstance(changes, dict):
                setattr(out, name, dataclasses.replace(getattr(out, name), **changes))
            else:
                setattr(out, name, changes)
        return out


def tiny_config(**sections) -> GeneratorConfig:
    """A very small configuration for tests and smoke runs (seconds on a CPU)."""
    cfg = GeneratorConfig(
        vae=VAEConfig(patch=8, snp_dim=4, width=32, latent_channels=4, blocks=1),
        dit=DiTConfig(hidden=32, depth=1, heads=2, patch_size=1),
        diffusion=DiffusionConfig(timesteps=50, schedule="cosine"),
        training=TrainingConfig(vae_epochs=2, dit_epochs=2, vae_batch_size=32, dit_batch_size=32,
                                checkpoint_every=1, calibration_rows=16, calibration_steps=3),
        sampling=SamplingConfig(steps=5, batch_size=64),
    )
    return cfg.replace(**sections) if sections else cfg


def versions() -> dict[str, str]:
    """Versions of the software that trained a model."""
    return {"genosynth": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


# ---------------------------------------------------------------------------------- data
@dataclass
class TrainingData:
    """Training rows prepared from a cohort (held in memory only, never saved).

    alleles : int8, shape (n_rows, V) - haplotypes (0/1) or ALT counts (0/1/2), -1 missing
    labels : int64, shape (n_rows,) - label index per row
    """

    alleles: torch.Tensor
    labels: torch.Tensor
    vocabulary: list[str]
    label_mix: dict[str, float]
    n_classes: int
    phased: bool
    phenotypes: torch.Tensor | None = None  # int64, shape (n_rows,): 0 control, 1 case, 2 missing (null); None = off
    case_fraction: dict[str, float] | None = None  # per label: cases / people with a phenotype (aggregate)


def phenotype_codes(cohort: Cohort, column: str) -> np.ndarray:
    """A binary trait as DiT phenotype indices: int64, shape (n_samples,), 0 control, 1 case, 2 missing.

    Accepts 0/1 numbers (what ``.fam`` column 6 becomes when read: PLINK 1/2 -> 0/1) or
    ``case``/``control`` strings; NaN or empty is missing (it trains the null phenotype).
    """
    if column not in cohort.samples.columns:
        raise InputError(f"no {column!r} column in the sample table; give --samples with a case/control (or 0/1) "
                         f"{column!r} column, a .fam with the phenotype in column 6, or another --phenotype-column")
    raw = cohort.samples[column]
    if not pd.api.types.is_numeric_dtype(raw):
        words = raw.astype(object).where(raw.notna(), "").astype(str).str.strip().str.lower()
        known = {"case": 1.0, "control": 0.0, "1": 1.0, "0": 0.0, "": np.nan, "na": np.nan, "nan": np.nan}
        unknown = sorted(set(words) - set(known))
        if unknown:
            raise InputError(f"phenotype column {column!r} has values {unknown[:5]}; use case/control or 1/0 "
                             "(empty or NA for missing)")
        raw = words.map(known)
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)  # (N,)
    bad = np.isfinite(values) & ~np.isin(values, (0.0, 1.0))
    if bad.any():
        raise InputError(f"phenotype column {column!r} must be binary (1 case, 0 control, missing allowed); found "
                         f"{sorted(set(values[bad].tolist()))[:5]}. Quantitative traits are not supported: "
                         "dichotomise the trait first")
    codes = np.where(np.isfinite(values), values, 2).astype(np.int64)
    n_case, n_control = int((codes == 1).sum()), int((codes == 0).sum())
    if n_case == 0 or n_control == 0:
        raise InputError(f"phenotype column {column!r} has {n_case} cases and {n_control} controls; conditioning "
                         "needs both (check the coding: .fam uses 2 case / 1 control, tables case/control or 1/0)")
    return codes


def prepare_data(cohort: Cohort, *, label_column: str, mode: str = "auto",
                 phenotype_column: str | None = None) -> TrainingData:
    """Turn a cohort into training rows, label indices and (optionally) phenotype indices; check it at the door."""
    if mode not in ("auto", "haplotype", "genotype"):
        raise InputError(f"mode must be auto, haplotype or genotype, got {mode!r}")
    if cohort.ploidy != 2:
        raise InputError(f"the generator models diploid cohorts; this one has ploidy {cohort.ploidy}")
    if cohort.n_samples < 2:
        raise InputError(f"need at least 2 training people, got {cohort.n_samples}")
    labels = cohort.labels(label_column)
    if (labels == "").any():
        n_missing = int((labels == "").sum())
        raise InputError(
            f"{n_missing} samples have no {label_column!r} label; give a --samples table that labels "
            f"everyone, remove them (--keep/--remove), or choose another --label-column"
        )
    vocabulary, index = np.unique(labels, return_inverse=True)
    haplotype = cohort.phased if mode == "auto" else mode == "haplotype"
    if haplotype and not cohort.phased:
        raise InputError("mode 'haplotype' needs phased input; use mode 'genotype' (or auto) for unphased data")
    if haplotype:
        alleles = cohort.alleles  # (2N, V) rows 2i, 2i+1 = person i
        row_labels = np.repeat(index, 2)
    else:
        alleles = cohort.genotypes()  # (N, V)
        row_labels = index
    counts = np.bincount(index, minlength=len(vocabulary))
    mix = {str(v): float(c / counts.sum()) for v, c in zip(vocabulary, counts)}
    pheno_rows = case_fraction = None
    if phenotype_column is not None:
        codes = phenotype_codes(cohort, phenotype_column)  # (N,)
        pheno_rows = torch.from_numpy(np.repeat(codes, 2) if haplotype else codes)
        overall_cases = float((codes == 1).sum() / (codes < 2).sum())
        case_fraction = {}
        for j, v in enumerate(vocabulary):
            known = codes[(index == j) & (codes < 2)]
            case_fraction[str(v)] = float(known.mean()) if len(known) else overall_cases
    return TrainingData(
        alleles=torch.from_numpy(np.ascontiguousarray(alleles, dtype=np.int8)),
        labels=torch.from_numpy(row_labels.astype(np.int64)),
        vocabulary=[str(v) for v in vocabulary], label_mix=mix,
        n_classes=2 if haplotype else 3, phased=haplotype,
        phenotypes=pheno_rows, case_fraction=case_fraction,
    )


def class_frequencies(alleles: torch.Tensor, labels: torch.Tensor, n_labels: int, n_classes: int,
                      *, pseudo_count: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Smoothed allele-class frequencies overall and per label.

    Returns
    -------
    overall : float, shape (V, K)
    per_label : float, shape (n_labels, V, K)
    """
    a = alleles.long()
    ok = (a >= 0).float()  # (R, V)
    onehot = torch.stack([(a == k).float() for k in range(n_classes)], dim=2)  # (R, V, K)
    overall = (onehot.sum(0) + pseudo_count) / (ok.sum(0)[:, None] + n_classes * pseudo_count)
    per = []
    for j in range(n_labels):
        m = labels == j
        per.append((onehot[m].sum(0) + pseudo_count) / (ok[m].sum(0)[:, None] + n_classes * pseudo_count))
    return overall, torch.stack(per)


def group_frequencies(data: TrainingData, per_label: torch.Tensor, *, pseudo_count: float) -> torch.Tensor:
    """Smoothed allele-class frequencies per (label, phenotype) group, group index ``2 * label + phenotype``.

    Rows with a missing phenotype are left out; a group with nobody in it (e.g. no controls of
    one ancestry) takes its label's frequencies.

    per_label : float, shape (n_labels, V, K) -> float, shape (2 * n_labels, V, K)
    """
    n_labels = per_label.shape[0]
    known = data.phenotypes < 2  # (R,)
    groups = data.labels[known] * 2 + data.phenotypes[known]  # (R',)
    _, per_group = class_frequencies(data.alleles[known], groups, 2 * n_labels, data.n_classes,
                                     pseudo_count=pseudo_count)  # (2L, V, K)
    empty = torch.bincount(groups, minlength=2 * n_labels) == 0  # (2L,)
    per_group[empty] = per_label.repeat_interleave(2, dim=0)[empty]
    return per_group


# ---------------------------------------------------------------------------------- helpers
def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``cpu``, ``cuda`` or ``auto`` (CUDA when present)."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu or auto")
    if device not in ("cpu", "cuda"):
        raise InputError(f"--device must be cpu, cuda or auto, got {device!r}")
    return torch.device(device)


@contextlib.contextmanager
def deterministic():
    """Deterministic torch algorithms inside the block (restored after)."""
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def label_parents(cohort: Cohort, label_column: str, vocabulary: list[str]) -> dict[str, dict[str, str]]:
    """Coarser label columns that the training label determines, e.g. ``{"super_pop": {"CEU": "EUR", ...}}``.

    A model conditioned on ``pop`` then also writes each synthetic person's ``super_pop``. Only the
    ``pop``/``super_pop`` columns are considered, and only when every training label maps to one
    non-empty value (the panel's label hierarchy, not a per-person value).
    """
    out: dict[str, dict[str, str]] = {}
    labels = cohort.labels(label_column)
    for column in ("pop", "super_pop"):
        if column == label_column or column not in cohort.samples:
            continue
        other = cohort.labels(column)
        mapping = {}
        for lab in vocabulary:
            values = set(other[labels == lab]) - {""}
            if len(values) != 1:
                break
            mapping[lab] = values.pop()
        else:
            out[column] = mapping
    return out


def drop_labels(labels: torch.Tensor, *, p: float, null_index: int,
                generator: torch.Generator) -> torch.Tensor:
    """Replace each label by ``null_index`` with probability ``p`` (classifier-free guidance).

    labels : int64, shape (B,) -> int64, shape (B,)
    """
    if p <= 0:
        return labels
    drop = torch.rand(labels.shape, generator=generator) < p  # (B,)
    return torch.where(drop.to(labels.device), torch.full_like(labels, null_index), labels)


def optimizer_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, per_row_loss: torch.Tensor,
                   *, grad_clip: float) -> float:
    """The one optimiser step of both stages: mean of the per-row losses, clip, step.

    per_row_loss : float, shape (B,). A DP-SGD variant replaces this function (per-row clipping
    and noise); everything else in the loop stays unchanged. Returns the mean loss.
    """
    loss = per_row_loss.mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return float(loss.detach())


def dit_learning_rate(step: int, total: int, config: TrainingConfig) -> float:
    """Learning rate of DiT optimiser step ``step`` (0-based) out of ``total``.

    ``dit_lr`` times a linear warm-up factor ``min(1, (step + 1) / dit_warmup)`` and, for the
    ``"cosine"`` schedule, ``(1 + cos(pi * step / total)) / 2`` (Loshchilov & Hutter 2017). A pure
    function of the step counter, which :func:`train_generator` derives from the checkpointed
    epoch (``epoch * steps_per_epoch + batch``), so a resumed run follows the same schedule.
    ``"constant"`` with no warm-up is ``dit_lr`` at every step.
    """
    lr = config.dit_lr
    if config.dit_warmup > 0:
        lr *= min(1.0, (step + 1) / config.dit_warmup)
    if config.dit_lr_schedule == "cosine":
        lr *= 0.5 * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))
    return lr


def _progress(total: int, desc: str, enabled: bool, initial: int = 0):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="epoch", dynamic_ncols=True, leave=True)


# ---------------------------------------------------------------------------------- models
def build_models(config: GeneratorConfig, *, n_variants: int, n_classes: int,
                 n_labels: int, n_phenotypes: int = 0) -> tuple[GenotypeVAE, DiT1D, DiTConfig]:
    """The VAE and the DiT sized for the data (DiT shape fields filled from the VAE latent).

    ``n_phenotypes`` 2 gives the DiT a case/control embedding (0 = no phenotype conditioning).
    """
    vae = GenotypeVAE(n_variants, n_classes, n_labels, config.vae)
    dit_cfg = dataclasses.replace(config.dit, in_channels=config.vae.latent_channels,
                                  n_tokens=vae.n_tokens, n_classes=n_labels, n_phenotypes=n_phenotypes,
                                  learn_sigma=False)
    return vae, DiT1D(dit_cfg), dit_cfg


# ---------------------------------------------------------------------------------- checkpoint
def save_checkpoint(path: str, payload: dict) -> None:
    """Write a checkpoint atomically (an interruption never leaves a half-written file)."""
    with atomic_outputs([path]) as (tmp,):
        torch.save(payload, tmp)


def state_dicts(parts: dict[str, Any]) -> dict[str, dict]:
    """``{name: obj.state_dict()}`` of models, optimisers and EMAs, for a checkpoint or resume file."""
    return {name: obj.state_dict() for name, obj in parts.items()}


def load_state_dicts(parts: dict[str, Any], blob: dict) -> None:
    """Restore each object of ``parts`` from ``blob[name]`` (the inverse of :func:`state_dicts`)."""
    for name, obj in parts.items():
        obj.load_state_dict(blob[name])


def load_tagged(path: str, *, tag: str, what: str, fix: str) -> dict:
    """``torch.load`` a dict whose ``"format"`` is ``tag``; otherwise an :class:`InputError` naming ``fix``."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means "not that file"
        raise InputError(f"{path}: not a readable {what} ({exc}); {fix}") from None
    if not isinstance(payload, dict) or payload.get("format") != tag:
        raise InputError(f"{path}: not a {what}; {fix}")
    return payload


def load_checkpoint(path: str) -> dict:
    """Read a generator checkpoint; raise :class:`InputError` naming the fix when it is not one."""
    if not os.path.exists(path):
        raise InputError(f"{path}: checkpoint not found; train one with `genosynth train --out PREFIX`")
    ck = load_tagged(path, tag=CHECKPOINT_FORMAT, what="genosynth generator checkpoint",
                     fix="give PREFIX.pt from `genosynth train`")
    if ck.get("format_version", 0) > CHECKPOINT_VERSION:
        raise InputError(f"{path}: written by a newer genosynth (format {ck['format_version']}); upgrade genosynth")
    return ck


def _variants_to_dict(variants: pd.DataFrame) -> dict:
    return {c: [x.item() if hasattr(x, "item") else x for x in variants[c].tolist()] for c in variants.columns}


def _variants_from_dict(d: dict) -> pd.DataFrame:
    from genosynth.cohort import make_variants

    return make_variants(chrom=d["chrom"], pos=d["pos"], ref=d["ref"], alt=d["alt"], id=d["id"],
                         cm=d.get("cm"))


def _plain_correlation_prior(cohort: Cohort, config: GeneratorConfig, vocabulary: list[str]) -> dict | None:
    """The un-noised banded per-label correlation prior (state dict), or None when guidance is off.

    The band is ``corr_latent_window`` SNPs wide, or narrower when no SNP has that many others
    within ``max_bp`` (1 Mb) before it on its chromosome (sparse panels store only what decoding
    can use); the copula uses its first ``corr_window`` lags (``info["copula_window"]``).
    """
    sc = config.sampling
    if sc.corr_guidance == "none":
        return None
    from genosynth.corrguide import fit_prior, previous_counts

    wide = max(sc.corr_window, sc.corr_latent_window)
    v = cohort.variants
    used = previous_counts(len(v), wide, chrom=v["chrom"].to_numpy(), pos=v["pos"].to_numpy(),
                           max_bp=CorrGuideConfig().max_bp)  # (V,) partners of each SNP within the band
    window = max(1, min(wide, int(used.max(initial=0))))
    prior = fit_prior(cohort, label_column=config.label_column, labels=vocabulary, window=window)
    prior.info["copula_window"] = int(min(sc.corr_window, prior.window))
    return prior.state_dict()


# ---------------------------------------------------------------------------------- training
def train_generator(
    cohort: Cohort,
    *,
    config: GeneratorConfig | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    checkpoint: str | None = None,
    resume: bool = False,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    callback: Callable[[str, int], None] | None = None,
) -> "Generator":
    """Train the VAE then the latent DiT on ``cohort``; return the trained :class:`Generator`.

    Parameters
    ----------
    cohort : Cohort
        Training people (phased -> haplotype mode, unless ``config.mode`` says otherwise).
    config : GeneratorConfig, optional
    seed : int
        The only source of randomness (initialisation, shuffling, reparameterisation noise,
        label dropout, diffusion noise). Same seed, device and threads -> identical checkpoint.
    device : {"cpu", "cuda", "auto"}
    checkpoint : str, optional
        Path of the checkpoint, rewritten atomically every ``training.checkpoint_every`` epochs
        and at the end of each stage.
    resume : bool
        Continue from ``checkpoint`` (which must exist and match the data and config).
    progress : bool
        tqdm bars with loss and rate.
    log : callable(str), optional
        Receives one summary line per stage and checkpoint.
    callback : callable(stage, epoch), optional
        Called after every epoch (after any checkpoint of that epoch); may raise to stop.

    Returns
    -------
    Generator
    """
    config = config or GeneratorConfig()
    if min(config.training.vae_epochs, config.training.dit_epochs) < 1:
        raise InputError("vae_epochs and dit_epochs must be >= 1")
    say = log or (lambda message: None)
    dev = resolve_device(device)
    data = prepare_data(cohort, label_column=config.label_column, mode=config.mode,
                        phenotype_column=config.phenotype_column)
    n_labels = len(data.vocabulary)
    tc = config.training
    gen = torch.Generator().manual_seed(int(seed))
    torch.manual_seed(int(seed))
    vae, dit, dit_cfg = build_models(config, n_variants=cohort.n_variants, n_classes=data.n_classes,
                                     n_labels=n_labels, n_phenotypes=0 if data.phenotypes is None else 2)
    overall, per_label = class_frequencies(data.alleles, data.labels, n_labels, data.n_classes,
                                           pseudo_count=tc.pseudo_count)
    by_phenotype = data.phenotypes is not None and config.phenotype_calibration
    cal_target = (group_frequencies(data, per_label, pseudo_count=tc.pseudo_count)
                  if by_phenotype else per_label)  # (2L or L, V, K) frequencies the calibration matches
    vae.init_biases(overall, per_label)
    vae.to(dev)
    dit.to(dev)
    vae_opt = torch.optim.AdamW(vae.parameters(), lr=tc.vae_lr, weight_decay=tc.weight_decay)
    dit_opt = torch.optim.AdamW(dit.parameters(), lr=tc.dit_lr, weight_decay=tc.weight_decay)
    ema = EMA(dit, decay=tc.ema_decay, warmup=True)
    diffusion = GaussianDiffusion(config.diffusion)
    state = {"stage": "vae", "epoch": 0}
    curves: dict[str, list] = {"vae": [], "dit": []}
    latent_scale = 1.0
    calibration: torch.Tensor | None = None  # (n_labels, V, K) logit correction, aggregate
    metrics: dict[str, Any] = {}
    seconds: dict[str, list[float]] = {"vae": [], "dit": []}  # wall time per epoch (not checkpointed)

    base = {
        "format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION,
        "config": config.to_dict(), "dit_config": dit_cfg.to_dict(), "seed": int(seed),
        "versions": versions(), "variants": _variants_to_dict(cohort.variants),
        "labels": data.vocabulary, "label_column": config.label_column, "label_mix": data.label_mix,
        "label_parents": label_parents(cohort, config.label_column, data.vocabulary),
        "n_classes": data.n_classes, "phased": data.phased, "n_training_people": cohort.n_samples,
        "privacy": cohort.meta.get("privacy"),
        "phenotype_column": config.phenotype_column, "case_fraction": data.case_fraction,
        "calibration_by_phenotype": by_phenotype,
        # banded per-label LD of train for correlation-guided decoding: an un-noised aggregate, so only this
        # non-private trainer stores it; the DP trainer (private_training) stores the DP release instead
        "correlation_prior": _plain_correlation_prior(cohort, config, data.vocabulary),
    }

    parts = {"vae": vae, "vae_opt": vae_opt, "dit": dit, "dit_opt": dit_opt, "ema": ema}  # what a checkpoint restores
    posterior = None  # the VAE posterior of the training rows once the VAE is done (a resumed DiT stage recomputes it)

    def payload() -> dict:
        return {**base, "curves": curves, "latent_scale": latent_scale, "metrics": metrics, "calibration": calibration,
                "state": {**state, **state_dicts(parts), "rng": gen.get_state()}}

    if resume:
        if not checkpoint or not os.path.exists(checkpoint):
            raise InputError(f"--resume needs an existing checkpoint; {checkpoint} not found. Drop --resume to start afresh")
        ck = load_checkpoint(checkpoint)
        ck["config"] = GeneratorConfig.from_dict(ck["config"]).to_dict()  # fields added since take their defaults
        for key in ("config", "seed", "labels", "n_classes"):
            if ck[key] != base[key]:
                raise InputError(
                    f"{checkpoint} was trained with a different {key} ({ck[key]!r} vs {base[key]!r}); "
                    "resume with the same input, options and --seed, or train afresh without --resume"
                )
        if ck["variants"]["id"] != base["variants"]["id"]:
            raise InputError(f"{checkpoint} was trained on other variants; resume with the same input")
        st = ck["state"]
        load_state_dicts(parts, st)
        gen.set_state(st["rng"])
        state = {"stage": st["stage"], "epoch": st["epoch"]}
        curves, latent_scale, metrics = ck["curves"], ck["latent_scale"], ck["metrics"]
        calibration = ck.get("calibration")
        say(f"Resumed from {checkpoint}: stage {state['stage']}, epoch {state['epoch']}")

    x_all = data.alleles  # (R, V) int8 on the CPU
    y_all = data.labels  # (R,)
    p_all = data.phenotypes  # (R,) or None
    n_rows = x_all.shape[0]

    with deterministic():
        # ---------------------------------------------------------------- stage 1: VAE
        if state["stage"] == "vae":
            bar = _progress(tc.vae_epochs, "VAE", progress, state["epoch"])
            vae.train()
            while state["stage"] == "vae":
                t0 = time.perf_counter()
                order = torch.randperm(n_rows, generator=gen)
                sums = np.zeros(3)
                for start in range(0, n_rows, tc.vae_batch_size):
                    idx = order[start:start + tc.vae_batch_size]
                    xb, yb = x_all[idx].to(dev), y_all[idx]
                    yb = drop_labels(yb, p=config.vae.label_dropout, null_index=n_labels, generator=gen).to(dev)
                    out = vae(xb, yb, generator=gen)
                    optimizer_step(vae, vae_opt, out["loss"], grad_clip=tc.grad_clip)
                    sums += [float(out["loss"].detach().sum()), float(out["nll"].detach().sum()),
                             float(out["kl"].detach().sum())]
                state["epoch"] += 1
                row = {"epoch": state["epoch"], "loss": sums[0] / n_rows, "nll": sums[1] / n_rows,
                       "kl": sums[2] / n_rows}
                curves["vae"].append(row)
                seconds["vae"].append(time.perf_counter() - t0)
                if bar is not None:
                    bar.set_postfix(loss=f"{row['loss']:.1f}", nll=f"{row['nll']:.1f}", kl=f"{row['kl']:.0f}",
                                    rows_s=f"{n_rows / (time.perf_counter() - t0):.0f}")
                    bar.update(1)
                done = state["epoch"] == tc.vae_epochs
                if done:
                    vae.eval()
                    metrics.update(_vae_metrics(vae, x_all, y_all, overall, dev))
                    posterior = _posterior(vae, x_all, dev)  # (R, C, T) each; in memory only, reused by the DiT stage
                    latent_scale = latent_scale_of(*posterior, with_sd=tc.dit_target == "sample")
                    metrics["latent_scale"] = latent_scale
                    state = {"stage": "dit", "epoch": 0}
                if checkpoint and (done or state["epoch"] % tc.checkpoint_every == 0):
                    save_checkpoint(checkpoint, payload())
                if callback:
                    callback("vae" if not done else "vae_done", tc.vae_epochs if done else state["epoch"])
            if bar is not None:
                bar.close()
            say(f"VAE: {tc.vae_epochs} epochs, reconstruction accuracy {metrics['vae_accuracy']:.4f} "
                f"(majority allele {metrics['majority_accuracy']:.4f}, majority per label "
                f"{metrics['label_majority_accuracy']:.4f}), latent scale {latent_scale:.4f}")

        # ---------------------------------------------------------------- stage 2: DiT
        vae.eval()
        if state["stage"] == "dit":
            mu, sigma = posterior if posterior is not None else _posterior(vae, x_all, dev)  # (R, C, T) each
            bar = _progress(tc.dit_epochs, "DiT", progress, state["epoch"])
            dit.train()
            steps_per_epoch = -(-n_rows // tc.dit_batch_size)
            total_steps = steps_per_epoch * tc.dit_epochs
            while state["stage"] == "dit":
                t0 = time.perf_counter()
                order = torch.randperm(n_rows, generator=gen)
                total = 0.0
                for k, start in enumerate(range(0, n_rows, tc.dit_batch_size)):
                    step = state["epoch"] * steps_per_epoch + k  # a function of the checkpointed epoch: resume is exact
                    for group in dit_opt.param_groups:
                        group["lr"] = dit_learning_rate(step, total_steps, tc)
                    idx = order[start:start + tc.dit_batch_size]
                    if tc.dit_target == "mean":
                        z0 = (mu[idx] * latent_scale).to(dev)  # (B, C, T)
                    else:
                        eps = torch.randn(mu[idx].shape, generator=gen)
                        z0 = ((mu[idx] + sigma[idx] * eps) * latent_scale).to(dev)  # (B, C, T)
                    cond = {"y": y_all[idx].to(dev)}
                    if p_all is not None:
                        cond["pheno"] = p_all[idx].to(dev)  # missing phenotype = the null index
                    per_row = diffusion.training_loss(
                        dit, z0, cond=cond, reduction="none", generator=gen,
                        model_kwargs={"generator": gen})  # (B,)
                    optimizer_step(dit, dit_opt, per_row, grad_clip=tc.grad_clip)
                    ema.update(dit)
                    total += float(per_row.detach().sum())
                state["epoch"] += 1
                row = {"epoch": state["epoch"], "loss": total / n_rows}
                curves["dit"].append(row)
                seconds["dit"].append(time.perf_counter() - t0)
                if bar is not None:
                    bar.set_postfix(loss=f"{row['loss']:.4f}", rows_s=f"{n_rows / (time.perf_counter() - t0):.0f}")
                    bar.update(1)
                done = state["epoch"] == tc.dit_epochs
                if done:
                    state = {"stage": "done", "epoch": tc.dit_epochs}
                    if tc.calibration_rows > 0:
                        with ema.average_parameters(dit):
                            calibration = _calibrate(vae, dit, diffusion, cal_target, latent_scale,
                                                     rows=tc.calibration_rows, steps=tc.calibration_steps,
                                                     generator=gen, dev=dev, by_phenotype=by_phenotype)
                        metrics["calibration_max_abs_logit"] = float(calibration.abs().max())
                    dit.train()
                if checkpoint and (done or state["epoch"] % tc.checkpoint_every == 0):
                    save_checkpoint(checkpoint, payload())
                if callback:
                    callback("dit" if not done else "dit_done", tc.dit_epochs if done else state["epoch"])
            if bar is not None:
                bar.close()
            del mu, sigma
            say(f"DiT: {tc.dit_epochs} epochs, final loss {curves['dit'][-1]['loss']:.4f}")
    model = Generator.from_payload(payload())
    model.meta["epoch_seconds"] = seconds
    return model


@torch.no_grad()
def _calibrate(vae: GenotypeVAE, dit: DiT1D, diffusion: GaussianDiffusion, per_label: torch.Tensor,
               latent_scale: float, *, rows: int, steps: int, generator: torch.Generator,
               dev: torch.device, bound: float = 3.0, by_phenotype: bool = False) -> torch.Tensor:
    """Per-label per-SNP logit corrections that match generated allele frequencies to training ones.

    With ``by_phenotype`` the groups are (label, phenotype) pairs, index ``2 * label +
    phenotype``: rows of group ``g`` are drawn with ancestry ``g // 2`` and phenotype ``g % 2``
    and matched to that group's case (or control) allele frequencies.

    Draws ``rows`` latents per label with the trained DiT, decodes them, and compares the mean
    decoded class probabilities with the (smoothed) training frequencies of that label:
    ``correction = log f_train - log mean p``, clipped to ``[-bound, bound]``. Only aggregate
    per-label frequencies enter; a DP run must pass noised frequencies.

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
        noise = torch.randn(shape, generator=generator).to(dev)  # (rows, C, T)
        z = diffusion.ddim_sample(dit, shape, cond=cond, steps=steps, noise=noise, device=dev)
        p = torch.softmax(vae.decode(z / latent_scale, y), dim=1).mean(dim=0).T.cpu()  # (V, K)
        out.append((per_label[j].log() - p.clamp_min(1e-6).log()).clamp(-bound, bound))
    dit.train(was)
    return torch.stack(out)


@torch.no_grad()
def _posterior(vae: GenotypeVAE, x: torch.Tensor, dev: torch.device, batch: int = 1024):
    """Posterior mean and sd of all rows, on the CPU: float, shape (R, C, T) each."""
    mus, sds = [], []
    for start in range(0, x.shape[0], batch):
        mu, logvar = vae.encode(x[start:start + batch].to(dev))
        mus.append(mu.cpu())
        sds.append((0.5 * logvar).exp().cpu())
    return torch.cat(mus), torch.cat(sds)


@torch.no_grad()
def latent_scale_of(mu: torch.Tensor, sd: torch.Tensor, *, with_sd: bool = True) -> float:
    """One aggregate factor that brings the latents to unit variance (Rombach et al. 2022).

    ``mu``, ``sd``: posterior means and sds of the rows, float, shape (R, C, T) each (:func:`_posterior`).
    ``with_sd``: the latents are posterior draws ``mu + sd * eps`` (variance ``var(mu) +
    mean(sd^2)``); otherwise posterior means (variance ``var(mu)``).
    """
    var = mu.var() + (sd.pow(2).mean() if with_sd else 0.0)
    return float(1.0 / var.clamp_min(1e-8).sqrt())


@torch.no_grad()
def _vae_metrics(vae: GenotypeVAE, x: torch.Tensor, y: torch.Tensor, overall: torch.Tensor,
                 dev: torch.device) -> dict:
    """Aggregate reconstruction accuracy (argmax of decode(mean latent)) vs majority baselines."""
    correct = observed = maj = lab_maj = 0
    majority = overall.argmax(dim=1)  # (V,)
    per_label = vae.label_bias is not None
    for start in range(0, x.shape[0], 1024):
        xb, yb = x[start:start + 1024].to(dev), y[start:start + 1024].to(dev)
        mu, _ = vae.encode(xb)
        pred = vae.decode(mu, yb).argmax(dim=1)  # (B, V)
        ok = xb >= 0
        correct += int(((pred == xb) & ok).sum())
        observed += int(ok.sum())
        maj += int(((majority.to(dev)[None] == xb) & ok).sum())
        if per_label:
            lm = (vae.snp_bias[: vae.n_variants][None] + vae.label_bias[yb][:, : vae.n_variants]).argmax(dim=2)
            lab_maj += int(((lm == xb) & ok).sum())
    return {"vae_accuracy": correct / max(observed, 1), "majority_accuracy": maj / max(observed, 1),
            "label_majority_accuracy": lab_maj / max(observed, 1) if per_label else float("nan")}


# ---------------------------------------------------------------------------------- sampling
def parse_label_counts(spec: str | dict | None, *, n: int | None, vocabulary: list[str],
                       mix: dict[str, float]) -> dict[str, int]:
    """People per label from ``"EUR=500,AFR=500"`` (or a dict), or ``n`` split by the training mix.

    The training mix is split by largest remainders so the counts sum to ``n`` exactly.
    """
    if spec:
        if isinstance(spec, str):
            counts = {}
            for part in spec.split(","):
                if not part.strip():
                    continue
                if "=" not in part:
                    raise InputError(f"--labels entry {part!r} must look like LABEL=COUNT, e.g. EUR=500,AFR=500")
                key, value = part.split("=", 1)
                try:
                    counts[key.strip()] = int(value)
                except ValueError:
                    raise InputError(f"--labels count {value!r} for {key!r} is not an integer") from None
        else:
            counts = {str(k): int(v) for k, v in spec.items()}
        unknown = [k for k in counts if k not in vocabulary]
        if unknown:
            raise InputError(f"--labels names {unknown}, which the model was not trained on; choose among {vocabulary}")
        if any(v < 0 for v in counts.values()):
            raise InputError("--labels counts must be >= 0")
        if n is not None and sum(counts.values()) != n:
            raise InputError(f"--labels counts sum to {sum(counts.values())} but --n is {n}; make them agree or drop --n")
        return counts
    if n is None or n < 1:
        raise InputError("give --n (people to generate, >= 1) or --labels LABEL=COUNT,...")
    fractions = np.array([mix.get(v, 0.0) for v in vocabulary])
    raw = fractions / fractions.sum() * n
    base = np.floor(raw).astype(int)
    rest = n - base.sum()
    order = np.argsort(-(raw - base), kind="stable")
    base[order[:rest]] += 1
    return {v: int(c) for v, c in zip(vocabulary, base)}


def _largest_remainder(weights: dict[str, float], n: int) -> dict[str, int]:
    """Split ``n`` by ``weights`` into integers that sum to ``n`` (largest remainders)."""
    keys = list(weights)
    w = np.array([max(weights[k], 0.0) for k in keys], dtype=np.float64)
    if n == 0 or w.sum() == 0:
        return {k: 0 for k in keys}
    raw = w / w.sum() * n
    base = np.floor(raw).astype(int)
    order = np.argsort(-(raw - base), kind="stable")
    base[order[: n - base.sum()]] += 1
    return {k: int(c) for k, c in zip(keys, base)}


def plan_counts(spec: str | dict | None, *, n: int | None, cases: int | None, controls: int | None,
                vocabulary: list[str], mix: dict[str, float],
                case_fraction: dict[str, float] | None) -> tuple[dict[str, int], dict[str, int] | None]:
    """People per label and cases per label (``None`` for a model without a phenotype).

    * ``cases``/``controls`` without ``spec``: cases are split over labels as in the training
      cases (label mix x case fraction of the label), controls as in the training controls;
    * with ``spec`` (``--labels``) too: the counts per label come from ``spec`` and every label
      gets the same case share ``cases / (cases + controls)`` (largest remainders);
    * neither: :func:`parse_label_counts`, then each label's people are split by its training
      case fraction (a phenotype model always writes a phenotype).
    """
    if cases is not None or controls is not None:
        if case_fraction is None:
            raise InputError("--cases/--controls need a phenotype-conditional model, and this one was trained "
                             "without a phenotype; retrain with `genosynth train ... --phenotype-column phenotype`")
        cases, controls = int(cases or 0), int(controls or 0)
        if min(cases, controls) < 0:
            raise InputError("--cases and --controls must be >= 0")
        total = cases + controls
        if total < 1:
            raise InputError("nothing to generate: --cases + --controls is 0")
        if n is not None and n != total:
            raise InputError(f"--n {n} disagrees with --cases + --controls = {total}; drop --n")
        if spec:
            counts = parse_label_counts(spec, n=total, vocabulary=vocabulary, mix=mix)
            return counts, _largest_remainder({v: c * cases / total for v, c in counts.items()}, cases)
        per_case = _largest_remainder({v: mix.get(v, 0.0) * case_fraction[v] for v in vocabulary}, cases)
        per_control = _largest_remainder({v: mix.get(v, 0.0) * (1 - case_fraction[v]) for v in vocabulary}, controls)
        if cases and not sum(per_case.values()) or controls and not sum(per_control.values()):
            raise InputError("the training cohort had no cases (or no controls) to take the label mix from; "
                             "give --labels too")
        return {v: per_case[v] + per_control[v] for v in vocabulary}, per_case
    counts = parse_label_counts(spec, n=n, vocabulary=vocabulary, mix=mix)
    if case_fraction is None:
        return counts, None
    return counts, {v: int(np.floor(c * case_fraction[v] + 0.5)) for v, c in counts.items()}


def _pair_order(z: torch.Tensor, labels: torch.Tensor, *, n_pcs: int = 8) -> torch.Tensor:
    """Reorder latents within each label so that rows 2i, 2i+1 are close in the label's top PCs.

    Real people carry two haplotypes of one ancestry (the same sub-population, or the same
    admixture proportions); pairing generated haplotypes at random would mix them. Pairs are
    matched greedily, closest first, on the top ``n_pcs`` principal components of the batch's
    generated latents of that label (only generated data enters).

    z : float, shape (B, C, T); labels : int64, shape (B,) -> int64 permutation, shape (B,)
    """
    flat = z.flatten(1).float().cpu()  # (B, C*T)
    order = torch.arange(len(labels))
    for j in torch.unique(labels):
        idx = torch.nonzero(labels == j).squeeze(1)  # (n_j,)
        n = len(idx)
        if n < 4:
            continue
        x = flat[idx] - flat[idx].mean(dim=0)
        vh = torch.linalg.svd(x, full_matrices=False).Vh[: min(n_pcs, n - 1)]  # (k, C*T)
        scores = x @ vh.T  # (n_j, k)
        d = torch.cdist(scores, scores)  # (n_j, n_j)
        iu = torch.triu_indices(n, n, offset=1)
        by_distance = torch.argsort(d[iu[0], iu[1]], stable=True)
        free = np.ones(n, dtype=bool)
        pairs: list[int] = []
        for a, b in zip(iu[0][by_distance].tolist(), iu[1][by_distance].tolist()):
            if free[a] and free[b]:
                free[a] = free[b] = False
                pairs += [a, b]
                if len(pairs) >= n - 1:
                    break
        pairs += np.flatnonzero(free).tolist()  # an odd one out keeps its place at the end
        order[idx] = idx[torch.tensor(pairs)]
    return order


class Generator:
    """A trained generator: VAE decoder + EMA DiT + diffusion, ready to sample.

    Build it with :func:`train_generator` or :meth:`Generator.load`.
    """

    def __init__(self, *, config: GeneratorConfig, vae: GenotypeVAE, dit: DiT1D, meta: dict):
        self.config = config
        self.vae = vae.eval()
        self.dit = dit.eval()
        self.diffusion = GaussianDiffusion(config.diffusion)
        self.meta = meta
        self.vocabulary: list[str] = list(meta["labels"])
        self.label_mix: dict[str, float] = dict(meta["label_mix"])
        self.variants = _variants_from_dict(meta["variants"])
        self.phased: bool = bool(meta["phased"])
        self.latent_scale: float = float(meta["latent_scale"])
        cal = meta.get("calibration")
        self.calibration: torch.Tensor | None = None if cal is None else cal.float()  # (n_labels or 2 n_labels, V, K)
        self.phenotype_column: str | None = meta.get("phenotype_column")
        self.case_fraction: dict[str, float] | None = meta.get("case_fraction")  # per label, aggregate
        self.calibration_by_phenotype: bool = bool(meta.get("calibration_by_phenotype", False))
        cp = meta.get("correlation_prior")
        self.corr_prior = None if cp is None else CorrelationPrior.from_state_dict(cp)
        self.ancestry_spread: dict | None = meta.get("ancestry_spread")  # DP models (genosynth.privacy.ancestry)
        self._corr_cache: dict = {}  # (method, steps, guidance, temperature, eta) -> per-label copula factors
        self.device = torch.device("cpu")

    @classmethod
    def from_payload(cls, ck: dict) -> "Generator":
        config = GeneratorConfig.from_dict(ck["config"])
        n_labels = len(ck["labels"])
        vae = GenotypeVAE(len(ck["variants"]["id"]), ck["n_classes"], n_labels, config.vae)
        vae.load_state_dict(ck["state"]["vae"])
        dit = DiT1D(DiTConfig(**ck["dit_config"]))
        ema = EMA(dit, decay=config.training.ema_decay)
        ema.load_state_dict(ck["state"]["ema"])
        ema.copy_to(dit)
        meta = {k: v for k, v in ck.items() if k != "state"}
        meta["stage"] = ck["state"]["stage"]
        return cls(config=config, vae=vae, dit=dit, meta=meta)

    @classmethod
    def load(cls, path: str, *, device: str | torch.device = "cpu") -> "Generator":
        """Load a checkpoint written by :func:`train_generator` (must have finished training)."""
        ck = load_checkpoint(path)
        if ck["state"]["stage"] != "done":
            raise InputError(
                f"{path} is a checkpoint of an unfinished run (stage {ck['state']['stage']}, epoch "
                f"{ck['state']['epoch']}); finish it with `genosynth train ... --resume` first"
            )
        return cls.from_payload(ck).to(device)

    def to(self, device: str | torch.device) -> "Generator":
        self.device = resolve_device(device)
        self.vae.to(self.device)
        self.dit.to(self.device)
        if self.calibration is not None:
            self.calibration = self.calibration.to(self.device)
        return self

    @property
    def privacy(self) -> dict | None:
        return self.meta.get("privacy")

    # ------------------------------------------------------------------ core draw
    @property
    def conditions_on_phenotype(self) -> bool:
        """Whether the DiT was trained with a case/control condition."""
        return self.dit.pheno_embedder is not None

    @torch.no_grad()
    def sample_rows(self, labels: torch.Tensor, *, generator: torch.Generator, steps: int | None = None,
                    guidance: float | None = None, argmax: bool | None = None,
                    temperature: float | None = None, eta: float | None = None,
                    corr_guidance: str | None = None, pheno: torch.Tensor | None = None,
                    pheno_guidance: float | None = None) -> torch.Tensor:
        """Draw allele rows (haplotypes or genotypes) for label indices (and phenotypes).

        pheno : int64, shape (B,), optional - 1 case, 0 control (phenotype models only); None
            samples the phenotype-unconditional (null) condition.
        pheno_guidance : float, optional - with ``pheno``: guide the phenotype (given the ancestry)
            with its own scale and the ancestry with ``guidance`` (see ``DiT1D.forward_with_cfg``);
            None = ``config.sampling.pheno_guidance``, and if that is None one joint scale.

        labels : int64, shape (B,) -> int8, shape (B, V) on the CPU. ``corr_guidance`` (default
        ``config.sampling.corr_guidance``) picks the decoding of :func:`genosynth.corrguide.guided_decode`;
        ``"none"`` (or a checkpoint without a correlation prior, or ``argmax``) is plain decoding.
        """
        if pheno is not None and not self.conditions_on_phenotype:
            raise InputError("this model was trained without a phenotype; retrain with "
                             "`genosynth train ... --phenotype-column phenotype` to generate cases and controls")
        sc = self.config.sampling
        steps = sc.steps if steps is None else steps
        guidance = sc.guidance if guidance is None else guidance
        pheno_guidance = sc.pheno_guidance if pheno_guidance is None else pheno_guidance
        argmax = sc.argmax if argmax is None else argmax
        temperature = sc.temperature if temperature is None else temperature
        eta = sc.eta if eta is None else eta
        b = labels.shape[0]
        shape = (b, self.vae.config.latent_channels, self.vae.n_tokens)
        noise = torch.randn(shape, generator=generator).to(self.device)  # (B, C, T)
        y = labels.to(self.device)
        cond = {"y": y}
        if pheno is not None:
            cond["pheno"] = pheno.to(self.device)  # (B,)
        net, net_guidance = self.dit, guidance
        if pheno is not None and pheno_guidance is not None:
            # the guided DiT as a plain network (guidance applied inside), run by the sampler with scale 1
            net = functools.partial(self.dit.forward_with_cfg, scale=guidance, pheno_scale=pheno_guidance)
            net_guidance = 1.0
        z = self.diffusion.ddim_sample(net, shape, cond=cond, steps=steps, eta=eta,
                                       guidance=net_guidance, noise=noise, device=self.device)  # (B, C, T)
        if self.phased and sc.pairing == "matched":
            groups = labels if pheno is None else labels * 2 + pheno  # pair within label (and phenotype)
            z = z[_pair_order(z, groups).to(self.device)]  # rows 2i, 2i+1 become similar haplotypes
        decode = functools.partial(self._logits, pheno=cond.get("pheno"))  # (z, y) -> logits
        if self.ancestry_spread is not None and sc.ancestry_spread:
            per = 2 if self.phased and b % 2 == 0 else 1  # rows 2i, 2i+1 are one person (iter_batches)
            shift = person_logit_shift(self.ancestry_spread, labels.cpu(), rows_per_person=per,
                                       n_classes=int(self.meta["n_classes"]), generator=generator).to(self.device)
            label_decode = decode
            decode = lambda z_, y_: label_decode(z_, y_) + shift  # noqa: E731  (B, K, V): each person's own ancestry
        method = sc.corr_guidance if corr_guidance is None else corr_guidance
        if method != "none" and not argmax and self.corr_prior is not None:
            # copula band: what training chose (a DP prior: its whole band); latent guidance: the whole band
            prior = self.corr_prior
            cfg = CorrGuideConfig(method=method, window=int(prior.info.get("copula_window", prior.window)),
                                  latent_window=prior.window)
            cache = self._corr_cache.setdefault((method, steps, guidance, pheno_guidance, temperature, eta), {})
            return guided_decode(decode, z / self.latent_scale, y, prior, generator=generator,
                                 config=cfg, chrom=self.variants["chrom"].to_numpy(),
                                 pos=self.variants["pos"].to_numpy(), temperature=temperature, cache=cache)
        logits = decode(z / self.latent_scale, y)  # (B, K, V)
        u_logits = logits.cpu()
        return sample_alleles(u_logits, generator=generator, argmax=argmax, temperature=temperature)

    def _logits(self, z: torch.Tensor, y: torch.Tensor, pheno: torch.Tensor | None = None) -> torch.Tensor:
        """Decoder logits of unscaled latents with the allele-frequency calibration: (B, C, T) -> (B, K, V).

        A model calibrated per (label, phenotype) group uses group ``2 y + pheno``; without
        ``pheno`` it uses the case-fraction-weighted mean of the label's two corrections.
        """
        logits = self.vae.decode(z, y)  # (B, K, V)
        if self.calibration is not None:
            cal = self.calibration.to(logits.device)
            if not self.calibration_by_phenotype:
                correction = cal[y]  # (B, V, K)
            elif pheno is not None:
                correction = cal[y * 2 + pheno]  # (B, V, K)
            else:
                cf = torch.tensor([self.case_fraction[v] for v in self.vocabulary], device=logits.device)[y]  # (B,)
                correction = (1 - cf)[:, None, None] * cal[y * 2] + cf[:, None, None] * cal[y * 2 + 1]  # (B, V, K)
            logits = logits + correction.permute(0, 2, 1)  # (B, K, V)
        return logits

    def iter_batches(self, counts: dict[str, int], *, seed: int, steps: int | None = None,
                     guidance: float | None = None, argmax: bool | None = None,
                     batch_size: int | None = None, temperature: float | None = None,
                     eta: float | None = None, id_prefix: str = "syn",
                     corr_guidance: str | None = None, cases: dict[str, int] | None = None,
                     pheno_guidance: float | None = None) -> Iterator[Cohort]:
        """Yield the synthetic cohort in batches of people (memory stays flat).

        People are in a seeded random label order; sample ids are ``{id_prefix}{k:07d}``.
        ``cases`` (phenotype models): how many of each label's people are cases, the rest
        controls; the phenotype goes to the ``phenotype`` column (1 case, 0 control).
        """
        batch_size = batch_size or self.config.sampling.batch_size
        gen = torch.Generator().manual_seed(int(seed))
        index = {v: i for i, v in enumerate(self.vocabulary)}
        people = np.concatenate([np.full(c, index[v], dtype=np.int64) for v, c in counts.items() if c > 0]
                                or [np.zeros(0, dtype=np.int64)])
        phenos = None
        if cases is not None:
            phenos = np.concatenate([np.repeat(np.array([1, 0], dtype=np.int64), [cases.get(v, 0), c - cases.get(v, 0)])
                                     for v, c in counts.items() if c > 0] or [np.zeros(0, dtype=np.int64)])
        perm = torch.randperm(len(people), generator=gen).numpy()
        people = people[perm]
        phenos = None if phenos is None else phenos[perm]
        per_person = 2 if self.phased else 1
        column = self.config.label_column
        for start in range(0, len(people), batch_size):
            lab = torch.from_numpy(people[start:start + batch_size])  # (b,)
            ph = None if phenos is None else torch.from_numpy(phenos[start:start + batch_size])  # (b,)
            rows = self.sample_rows(lab.repeat_interleave(per_person), generator=gen, steps=steps,
                                    guidance=guidance, argmax=argmax, temperature=temperature,
                                    eta=eta, corr_guidance=corr_guidance, pheno_guidance=pheno_guidance,
                                    pheno=None if ph is None else ph.repeat_interleave(per_person))  # (b*P, V)
            names = np.array(self.vocabulary, dtype=object)[lab.numpy()]
            ids = [f"{id_prefix}{k:07d}" for k in range(start + 1, start + len(lab) + 1)]
            extra = {} if column in ("pop", "super_pop") else {column: list(names)}
            trait = None if ph is None else ph.numpy().astype(np.float64)  # (b,) 1 case, 0 control
            if trait is not None and self.phenotype_column not in (None, "phenotype", column):
                extra[self.phenotype_column] = trait.tolist()
            parents = self.meta.get("label_parents") or {}
            coarse = {c: [parents[c][v] for v in names] for c in ("pop", "super_pop") if c in parents}
            samples = make_samples(ids, pop=names if column == "pop" else coarse.get("pop"),
                                   super_pop=names if column == "super_pop" else coarse.get("super_pop"),
                                   phenotype=trait, **extra)
            meta = {"synthetic": True, "seed": int(seed), "label_column": column}
            if phenos is not None:
                meta["phenotype_column"] = self.phenotype_column
            if self.privacy:
                meta["privacy"] = self.privacy
            yield Cohort(alleles=rows.numpy(), variants=self.variants, samples=samples,
                         phased=self.phased, ploidy=2, meta=meta)

    def sample(self, n: int | None = None, *, labels: str | dict | None = None, seed: int = 0,
               steps: int | None = None, guidance: float | None = None, argmax: bool | None = None,
               batch_size: int | None = None, temperature: float | None = None,
               eta: float | None = None, corr_guidance: str | None = None,
               cases: int | None = None, controls: int | None = None,
               pheno_guidance: float | None = None) -> Cohort:
        """A synthetic cohort of ``n`` people (``labels`` counts, or the training mix) in memory.

        ``cases``/``controls`` (phenotype models) ask for that many cases and controls instead of
        ``n``; see :func:`plan_counts` for how they are spread over the labels.

        Returns
        -------
        Cohort : phased when the model is a haplotype model, else genotype counts.
        """
        counts, per_case = plan_counts(labels, n=n, cases=cases, controls=controls, vocabulary=self.vocabulary,
                                       mix=self.label_mix, case_fraction=self.case_fraction)
        parts = list(self.iter_batches(counts, seed=seed, steps=steps, guidance=guidance, argmax=argmax,
                                       batch_size=batch_size, temperature=temperature, eta=eta,
                                       corr_guidance=corr_guidance, cases=per_case,
                                       pheno_guidance=pheno_guidance))
        if not parts:
            raise InputError("nothing to generate: all label counts are 0")
        return Cohort(alleles=np.concatenate([p.alleles for p in parts]), variants=self.variants,
                      samples=pd.concat([p.samples for p in parts], ignore_index=True),
                      phased=self.phased, ploidy=2, meta=parts[0].meta)


# ---------------------------------------------------------------------------------- streaming
def write_synthetic(model: Generator, prefix: str, fmt: str, *, n: int | None = None,
                    labels: str | dict | None = None, seed: int = 0, steps: int | None = None,
                    guidance: float | None = None, argmax: bool | None = None,
                    batch_size: int | None = None, progress: bool = False,
                    corr_guidance: str | None = None, cases: int | None = None,
                    controls: int | None = None, pheno_guidance: float | None = None) -> list[str]:
    """Sample and write a synthetic cohort with flat memory; return the paths written.

    ``cases``/``controls`` (phenotype models): generate that many cases and controls; their
    phenotype goes to ``.fam`` column 6 (PLINK 2 case / 1 control) and the samples table.

    Batches are drawn and written into an on-disk staging matrix (``PREFIX.staging.tmp``,
    removed afterwards), which the format writers then stream from. Writes ``PREFIX`` in
    ``fmt`` (bed, vcf -> ``PREFIX.vcf.gz``, hapt), ``PREFIX.samples.tsv`` with the labels, and
    ``PREFIX.privacy.json`` when the model carries a privacy guarantee.
    """
    from genosynth.io import FORMATS, write_cohort
    from genosynth.io.samples import write_sample_table

    if fmt not in FORMATS:
        raise InputError(f"unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "hapt" and not model.phased:
        raise InputError("this model generates genotypes (it was trained on unphased data); .hapt needs "
                         "haplotypes: choose --format bed or vcf")
    counts, per_case = plan_counts(labels, n=n, cases=cases, controls=controls, vocabulary=model.vocabulary,
                                   mix=model.label_mix, case_fraction=model.case_fraction)
    total = sum(counts.values())
    if total < 1:
        raise InputError("nothing to generate: all label counts are 0")
    phased_out = model.phased and fmt != "bed"  # .bed holds genotype counts only
    rows_per = 2 if phased_out else 1
    v = len(model.variants)
    folder = os.path.dirname(os.path.abspath(prefix))
    os.makedirs(folder, exist_ok=True)
    staging = f"{prefix}.staging.tmp"
    written: list[str] = []
    samples_parts = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="sample", unit="people", dynamic_ncols=True)
    try:
        mat = np.lib.format.open_memmap(staging, mode="w+", dtype=np.int8, shape=(total * rows_per, v))
        row = 0
        for part in model.iter_batches(counts, seed=seed, steps=steps, guidance=guidance, argmax=argmax,
                                       batch_size=batch_size, corr_guidance=corr_guidance, cases=per_case,
                                       pheno_guidance=pheno_guidance):
            block = part.alleles if phased_out else part.genotypes()  # (b*rows_per, V)
            mat[row:row + block.shape[0]] = block
            row += block.shape[0]
            samples_parts.append(part.samples)
            meta = part.meta
            if bar is not None:
                bar.update(part.n_samples)
        mat.flush()
        samples = pd.concat(samples_parts, ignore_index=True)
        cohort = Cohort(alleles=mat, variants=model.variants, samples=samples, phased=phased_out,
                        ploidy=2, meta=meta)
        written += write_cohort(cohort, prefix, fmt, tag_column=model.config.label_column)
        written += write_sample_table(cohort, f"{prefix}.samples.tsv")
        if model.privacy:
            path = f"{prefix}.privacy.json"
            with atomic_outputs([path]) as (tmp,):
                with open(tmp, "w", encoding="utf-8") as fh:
                    json.dump(model.privacy, fh, indent=2, default=str)
            written.append(path)
        del cohort, mat
    finally:
        if bar is not None:
            bar.close()
        with contextlib.suppress(FileNotFoundError):
            os.remove(staging)
    return written


__all__ = [
    "GeneratorConfig", "TrainingConfig", "SamplingConfig", "VAEConfig", "DiTConfig", "DiffusionConfig",
    "Generator", "train_generator", "write_synthetic", "parse_label_counts", "tiny_config",
    "load_checkpoint", "load_tagged", "save_checkpoint", "optimizer_step", "drop_labels", "prepare_data",
    "plan_counts", "phenotype_codes", "dit_learning_rate", "state_dicts", "load_state_dicts",
]
