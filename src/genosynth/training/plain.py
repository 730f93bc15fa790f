"""Plain (non-private) training: the VAE, then the latent DiT, then frequency calibration.

Training is two plain stages run by :func:`train_generator`:

1. a categorical VAE (:mod:`genosynth.models.vae`) learns rows of alleles (haplotypes when the
   input is phased, else genotype counts) -> latent ``(C, T)``;
2. the latents of the training rows are computed **in-process** (never stored), scaled by one
   aggregate factor to unit variance, and a label-conditioned 1D DiT
   (:mod:`genosynth.models.dit`) learns them with the Gaussian diffusion loss
   (:mod:`genosynth.models.diffusion`), dropping labels at random for classifier-free guidance.

Every optimiser step goes through :func:`optimizer_step` with the per-row loss, the one place a
DP-SGD optimiser plugs in. All randomness comes from one seeded ``torch.Generator`` whose state is
checkpointed, so a run resumed from a checkpoint ends bit-identical to an uninterrupted one (on
the same device and thread count).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from typing import Any
import numpy as np
import torch
from genosynth.cohort import Cohort
from genosynth.models.diffusion import GaussianDiffusion
from genosynth.models.ema import EMA
from genosynth.errors import InputError
from genosynth.models.vae import GenotypeVAE
from genosynth.models.checkpoint import CHECKPOINT_FORMAT
from genosynth.models.checkpoint import CHECKPOINT_VERSION
from genosynth.sampling.generator import Generator
from genosynth.models.config import GeneratorConfig
from genosynth.models.config import TrainingConfig
from genosynth.models.checkpoint import build_models
from genosynth.training.calibration import calibrate_frequencies
from genosynth.training.data import class_frequencies
from genosynth.runtime import deterministic
from genosynth.training.data import group_frequencies
from genosynth.training.data import label_parents
from genosynth.models.checkpoint import load_checkpoint
from genosynth.models.checkpoint import load_state_dicts
from genosynth.training.ld_fit import plain_correlation_prior
from genosynth.training.data import prepare_data
from genosynth.runtime import progress_bar
from genosynth.runtime import resolve_device
from genosynth.models.checkpoint import save_checkpoint
from genosynth.models.checkpoint import state_dicts
from genosynth.models.checkpoint import variants_to_dict
from genosynth.provenance import versions


def drop_labels(labels: torch.Tensor, *, p: float, null_index: int,
                rng: torch.Generator) -> torch.Tensor:
    """Replace each label by ``null_index`` with probability ``p`` (classifier-free guidance).

    labels : int64, shape (B,) -> int64, shape (B,)
    """
    if p <= 0:
        return labels
    drop = torch.rand(labels.shape, generator=rng) < p  # (B,)
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
        "versions": versions(), "variants": variants_to_dict(cohort.variants),
        "labels": data.vocabulary, "label_column": config.label_column, "label_mix": data.label_mix,
        "label_parents": label_parents(cohort, config.label_column, data.vocabulary),
        "n_classes": data.n_classes, "phased": data.phased, "n_training_people": cohort.n_samples,
        "privacy": cohort.meta.get("privacy"),
        "phenotype_column": config.phenotype_column, "case_fraction": data.case_fraction,
        "calibration_by_phenotype": by_phenotype,
        # banded per-label LD of train for correlation-guided decoding: an un-noised aggregate, so only this
        # non-private trainer stores it; the DP trainer (private_training) stores the DP release instead
        "correlation_prior": plain_correlation_prior(cohort, config, data.vocabulary),
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
            bar = progress_bar(tc.vae_epochs, "VAE", progress, state["epoch"])
            vae.train()
            while state["stage"] == "vae":
                t0 = time.perf_counter()
                order = torch.randperm(n_rows, generator=gen)
                sums = np.zeros(3)
                for start in range(0, n_rows, tc.vae_batch_size):
                    idx = order[start:start + tc.vae_batch_size]
                    xb, yb = x_all[idx].to(dev), y_all[idx]
                    yb = drop_labels(yb, p=config.vae.label_dropout, null_index=n_labels, rng=gen).to(dev)
                    out = vae(xb, yb, rng=gen)
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
                    metrics.update(vae_metrics(vae, x_all, y_all, overall, dev))
                    posterior = encode_posterior(vae, x_all, dev)  # (R, C, T) each; in memory only, reused by the DiT stage
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
            mu, sigma = posterior if posterior is not None else encode_posterior(vae, x_all, dev)  # (R, C, T) each
            bar = progress_bar(tc.dit_epochs, "DiT", progress, state["epoch"])
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
                        dit, z0, cond=cond, reduction="none", rng=gen,
                        model_kwargs={"rng": gen})  # (B,)
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
                            calibration = calibrate_frequencies(vae, dit, diffusion, cal_target, latent_scale,
                                                     rows=tc.calibration_rows, steps=tc.calibration_steps,
                                                     rng=gen, dev=dev, by_phenotype=by_phenotype)
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
def encode_posterior(vae: GenotypeVAE, x: torch.Tensor, dev: torch.device, batch: int = 1024):
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

    ``mu``, ``sd``: posterior means and sds of the rows, float, shape (R, C, T) each (:func:`encode_posterior`).
    ``with_sd``: the latents are posterior draws ``mu + sd * eps`` (variance ``var(mu) +
    mean(sd^2)``); otherwise posterior means (variance ``var(mu)``).
    """
    var = mu.var() + (sd.pow(2).mean() if with_sd else 0.0)
    return float(1.0 / var.clamp_min(1e-8).sqrt())


@torch.no_grad()
def vae_metrics(vae: GenotypeVAE, x: torch.Tensor, y: torch.Tensor, overall: torch.Tensor,
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
