"""The checkpoint format of a trained generator: building the models it holds, saving and loading it.

A checkpoint holds the config, seed, package versions, variant table, label vocabulary and
training mix, training curves, aggregate latent scale, model/optimizer/EMA weights and the RNG
state: never genotypes, per-person latents or any other per-person value.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any
import pandas as pd
import torch
from genosynth.errors import InputError
from genosynth.io.atomic import atomic_outputs
from genosynth.models.dit import DiT1D, DiTConfig
from genosynth.models.vae import GenotypeVAE
from genosynth.models.config import GeneratorConfig
from genosynth.provenance import versions


CHECKPOINT_FORMAT = "genosynth-generator"


CHECKPOINT_VERSION = 1


STAGES = ("vae", "dit", "done")


def build_models(config: GeneratorConfig, *, n_variants: int, n_classes: int, n_labels: int,
                 n_phenotypes: int = 0, parents: tuple[int, ...] | None = None) -> tuple[GenotypeVAE, DiT1D, DiTConfig]:
    """The VAE and the DiT sized for the data (DiT shape fields filled from the VAE latent).

    ``n_phenotypes`` 2 gives the DiT a case/control embedding (0 = no phenotype conditioning);
    ``parents`` (parent index per label) gives it hierarchical labels when ``dit.label_parents``.
    """
    vae = GenotypeVAE(n_variants, n_classes, n_labels, config.vae)
    dit_cfg = dataclasses.replace(config.dit, in_channels=config.vae.latent_channels,
                                  n_tokens=vae.n_tokens, n_classes=n_labels, n_phenotypes=n_phenotypes,
                                  learn_sigma=False, parents=parents if config.dit.label_parents else None)
    return vae, DiT1D(dit_cfg), dit_cfg


def checkpoint_head(*, config: GeneratorConfig, dit_config: DiTConfig, seed: int | None, variants: pd.DataFrame,
                    labels: list[str], label_mix: dict[str, float], label_parents: dict, n_classes: int,
                    phased: bool, n_training_people: int, privacy: dict | None, **extra: Any) -> dict:
    """The facts of a training run that every checkpoint it writes repeats (both trainers).

    ``extra`` follows ``privacy`` in the order given: the plain trainer's phenotype fields and LD
    prior, or the DP trainer's accountant, plan and releases. The key order is part of the file
    (``torch.save`` bytes follow it), so a trainer passes its extras always in the same order.
    """
    return {
        "format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION,
        "config": config.to_dict(), "dit_config": dit_config.to_dict(), "seed": seed,
        "versions": versions(), "variants": variants_to_dict(variants),
        "labels": labels, "label_column": config.label_column, "label_mix": label_mix,
        "label_parents": label_parents,
        "n_classes": n_classes, "phased": phased, "n_training_people": n_training_people,
        "privacy": privacy, **extra,
    }


def checkpoint_payload(head: dict, *, curves: dict, latent_scale: float, metrics: dict,
                       calibration: torch.Tensor | None, state: dict) -> dict:
    """A checkpoint: ``head`` (:func:`checkpoint_head`) then the training state.

    state : ``{"stage", "epoch", <model/optimiser/EMA state dicts>, "rng"}``; ``"rng"`` is the
    torch generator state of a plain run (exact resume) and ``None`` under DP (it would let
    anyone recompute the noise).
    """
    return {**head, "curves": curves, "latent_scale": latent_scale, "metrics": metrics,
            "calibration": calibration, "state": state}


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


def variants_to_dict(variants: pd.DataFrame) -> dict:
    return {c: [x.item() if hasattr(x, "item") else x for x in variants[c].tolist()] for c in variants.columns}


def variants_from_dict(d: dict) -> pd.DataFrame:
    from genosynth.cohort import make_variants

    return make_variants(chrom=d["chrom"], pos=d["pos"], ref=d["ref"], alt=d["alt"], id=d["id"],
                         cm=d.get("cm"))
