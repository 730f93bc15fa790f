"""Plain (non-private) training: the VAE, then the latent DiT, then frequency calibration.

:func:`train_generator` reads as its stages (nanoGPT ``train.py`` style):

0. :func:`start_run` - seed, build the models and optimisers, the checkpoint head
   (:func:`~genosynth.models.checkpoint.checkpoint_head`); :func:`resume_run` restores a checkpoint;
1. :func:`fit_vae` - a categorical VAE (:mod:`genosynth.models.vae`) learns rows of alleles
   (haplotypes when the input is phased, else genotype counts) -> latent ``(C, T)``; then the
   latents of the training rows are computed **in-process** (never stored) and scaled by one
   aggregate factor to unit variance;
2. :func:`fit_dit` - a label-conditioned 1D DiT (:mod:`genosynth.models.dit`) learns them with the
   Gaussian diffusion loss (:mod:`genosynth.models.diffusion`), dropping labels at random for
   classifier-free guidance; then :func:`~genosynth.training.calibration.calibrate_frequencies`.

Every optimiser step goes through :func:`optimizer_step` with the per-row loss, the one place a
DP-SGD optimiser plugs in; a plain VAE step in micro-batches (``training.vae_micro_batch``, the chromosome
configuration) goes through :func:`accumulated_step`, the same step with one micro-batch's activations alive at
a time, and its epochs keep glibc's freed memory (``training.heap_reuse``, :func:`~genosynth.runtime.heap_reuse`). ``training.precision="bf16"`` runs the training forward passes under
``torch.autocast(..., dtype=torch.bfloat16)`` (:func:`forward_precision`); the losses, the
optimiser state and the inference passes (latents, metrics, calibration) stay in float32. Under
``torchrun`` the same stages run as DistributedDataParallel over shards of each epoch's rows
(:mod:`genosynth.training.distributed`); only rank 0 writes the checkpoint. All randomness comes
from one seeded ``torch.Generator`` whose state is checkpointed (under torchrun it orders the
rows, and each rank's noise is derived from the seed, stage and epoch), so a run resumed from a
checkpoint ends bit-identical to an uninterrupted one (on the same device and thread count).
``seed=None`` draws a seed (:func:`genosynth.seeds.resolve_seed`), which the checkpoint records.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
import numpy as np
import torch
from genosynth.cohort import Cohort
from genosynth.errors import InputError
from genosynth.models.checkpoint import (build_models, checkpoint_head, checkpoint_payload, load_checkpoint,
                                         load_state_dicts, save_checkpoint, state_dicts)
from genosynth.models.config import GeneratorConfig, TrainingConfig
from genosynth.models.diffusion import GaussianDiffusion
from genosynth.models.dit import DiT1D
from genosynth.models.ema import EMA
from genosynth.models.vae import GenotypeVAE
from genosynth.runtime import deterministic, heap_reuse, progress_bar, resolve_device
from genosynth.sampling.factors import payload_factors
from genosynth.sampling.generator import Generator
from genosynth.seeds import resolve_seed
from genosynth.training.calibration import (calibrate_frequencies, fine_label_corrections, fit_temperature,
                                            label_ancestry_spread)
from genosynth.training.data import (TrainingData, chunk_rows, class_counts, group_frequencies, label_groups,
                                     label_parents, parent_index, prepare_data, shrink_label_frequencies,
                                     smoothed_frequencies)
from genosynth.training.distributed import Shards, agree, is_main
from genosynth.training.ld_fit import plain_correlation_prior


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


def forward_precision(dev: torch.device, precision: str):
    """Context of a training forward pass: nothing for ``"fp32"``, bfloat16 autocast for ``"bf16"``."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=dev.type, dtype=torch.bfloat16)


def dit_learning_rate(step: int, total: int, config: TrainingConfig) -> float:
    """Learning rate of DiT optimiser step ``step`` (0-based) out of ``total``.

    ``dit_lr`` times a linear warm-up factor ``min(1, (step + 1) / dit_warmup)`` and, for the
    ``"cosine"`` schedule, ``(1 + cos(pi * step / total)) / 2`` (Loshchilov & Hutter 2017). A pure
    function of the step counter, which :func:`dit_epoch` derives from the checkpointed
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
    seed: int | None = None,
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
    seed : int, optional
        The only source of randomness (initialisation, shuffling, reparameterisation noise,
        label dropout, diffusion noise). Same seed, device and threads -> identical checkpoint.
        ``None`` draws one (with ``resume``: the checkpoint's); the checkpoint (and
        ``model.meta["seed"]``) records it. Under torchrun every process uses rank 0's seed.
    device : {"cpu", "cuda", "auto"}
    checkpoint : str, optional
        Path of the checkpoint, rewritten atomically every ``training.checkpoint_every`` epochs
        and at the end of each stage (by rank 0 alone under torchrun).
    resume : bool
        Continue from ``checkpoint`` (which must exist and match the data, config and seed).
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
    seed = agree(resume_seed(checkpoint) if resume and seed is None else resolve_seed(seed))  # rank 0's under torchrun
    run = start_run(cohort, data, config, seed=seed, dev=dev)
    run.shards = Shards.current(seed)  # None: one process, the plain path
    writes = is_main()  # other torchrun ranks stay quiet and write nothing
    if not writes:
        say, progress = (lambda message: None), False
    if resume:
        resume_run(run, checkpoint, say)
    saving = dict(checkpoint=checkpoint if writes else None, callback=callback,
                  every=config.training.checkpoint_every)
    with deterministic():
        if run.stage == "vae":  # 1. the VAE, then the latents of the training rows
            fit_vae(run, data, config, dev, progress=progress, say=say, **saving)
        run.vae.eval()
        if run.stage == "dit":  # 2. the latent DiT, then the frequency calibration
            fit_dit(run, data, config, dev, progress=progress, say=say, **saving)
    model = Generator.from_payload(run.payload())
    model.meta["epoch_seconds"] = run.seconds
    return model


@dataclass
class PlainRun:
    """What a plain run carries from stage to stage; :meth:`payload` is its checkpoint."""

    vae: GenotypeVAE
    dit: DiT1D
    vae_opt: torch.optim.Optimizer
    dit_opt: torch.optim.Optimizer
    ema: EMA
    diffusion: GaussianDiffusion
    gen: torch.Generator  # the one source of randomness; its state is checkpointed
    head: dict  # checkpoint_head of the run: config, seed, variants, labels, LD prior, ...
    overall: torch.Tensor  # (V, K) smoothed training frequencies (the VAE's majority baseline)
    cal_target: torch.Tensor  # (2L or L, V, K) frequencies the calibration matches
    by_phenotype: bool  # calibrate per (label, phenotype) group
    stage: str = "vae"  # "vae", "dit" or "done"
    epoch: int = 0  # epochs done in ``stage``
    curves: dict[str, list] = field(default_factory=lambda: {"vae": [], "dit": []})
    latent_scale: float = 1.0
    metrics: dict = field(default_factory=dict)
    calibration: torch.Tensor | None = None  # (n_labels, V, K) logit correction, aggregate
    seconds: dict[str, list[float]] = field(default_factory=lambda: {"vae": [], "dit": []})  # not checkpointed
    posterior: tuple[torch.Tensor, torch.Tensor] | None = None  # (R, C, T) each once the VAE is done; memory only
    shards: Shards | None = None  # under torchrun: this process's share of each epoch; not checkpointed
    wrapped: dict[str, torch.nn.Module] = field(default_factory=dict)  # DDP wrappers of vae / dit; not checkpointed

    def net(self, name: str, dev: torch.device) -> torch.nn.Module:
        """The network ``name`` ("vae" or "dit") to call in training: itself, or its DDP wrapper under torchrun."""
        module = getattr(self, name)
        if self.shards is None:
            return module
        if name not in self.wrapped:
            self.wrapped[name] = self.shards.wrap(module, dev)
        return self.wrapped[name]

    def epoch_rows(self, n_rows: int, batch: int, stage: str) -> tuple[torch.Tensor, torch.Generator, int]:
        """This epoch's rows in training order (int64, shape (S,)), the noise generator and the batch size.

        One process: a permutation of all rows from :attr:`gen`, which also draws the noise. Under
        torchrun: this process's shard (:meth:`Shards.rows`), its own noise generator and batch share.
        """
        if self.shards is None:
            return torch.randperm(n_rows, generator=self.gen), self.gen, batch
        return (self.shards.rows(n_rows, self.gen), self.shards.noise(stage, self.epoch),
                self.shards.batch_size(batch))

    def totals(self, sums: np.ndarray, seen: int, dev: torch.device) -> tuple[np.ndarray, int]:
        """Loss sums and rows of an epoch over all processes (this process's alone without torchrun)."""
        if self.shards is None:
            return sums, seen
        return self.shards.total(sums, dev), seen * self.shards.world

    @property
    def parts(self) -> dict:
        """What a checkpoint restores."""
        return {"vae": self.vae, "vae_opt": self.vae_opt, "dit": self.dit, "dit_opt": self.dit_opt, "ema": self.ema}

    def payload(self) -> dict:
        state = {"stage": self.stage, "epoch": self.epoch, **state_dicts(self.parts), "rng": self.gen.get_state()}
        return checkpoint_payload(self.head, curves=self.curves, latent_scale=self.latent_scale,
                                  metrics=self.metrics, calibration=self.calibration, state=state)


def start_run(cohort: Cohort, data: TrainingData, config: GeneratorConfig, *, seed: int,
              dev: torch.device) -> PlainRun:
    """0. Seed the generators; build the models (biases from the training frequencies), optimisers and head."""
    tc = config.training
    n_labels = len(data.vocabulary)
    gen = torch.Generator().manual_seed(int(seed))
    torch.manual_seed(int(seed))
    parents = label_parents(cohort, config.label_column, data.vocabulary)
    groups = label_groups(data.vocabulary, parents)
    vae, dit, dit_cfg = build_models(config, n_variants=cohort.n_variants, n_classes=data.n_classes,
                                     n_labels=n_labels, n_phenotypes=0 if data.phenotypes is None else 2,
                                     parents=parent_index(groups, n_labels))
    count, seen = class_counts(data.alleles, data.labels, n_labels, data.n_classes)  # (L+1, V, K), (L+1, V)
    overall, per_label = smoothed_frequencies(count, seen, pseudo_count=tc.pseudo_count)  # (V, K), (L, V, K)
    shrinkage = None
    if tc.label_shrinkage:
        _, raw = smoothed_frequencies(count, seen, pseudo_count=1e-3)  # (L, V, K): F from (almost) raw counts
        per_label, shrinkage = shrink_label_frequencies(per_label, seen[:n_labels], groups, raw=raw,
                                                        alleles_per_row=1 if data.n_classes == 2 else 2)  # (L, V, K)
    by_phenotype = data.phenotypes is not None and config.phenotype_calibration
    cal_target = (group_frequencies(data, per_label, pseudo_count=tc.pseudo_count)
                  if by_phenotype else per_label)  # (2L or L, V, K)
    vae.init_biases(overall, per_label)
    vae.to(dev)
    dit.to(dev)
    # torch's fused AdamW kernel (one pass over each tensor; the same update): at 100,000 SNPs the DiT's step took
    # 0.12-0.15 s of the for-loop form's 1.1 s per batch on 2 threads, 0.05 s fused (benchmarks/RESULTS.md, session 19)
    fused = dev.type in ("cpu", "cuda")
    vae_opt = torch.optim.AdamW(vae.parameters(), lr=tc.vae_lr, weight_decay=tc.weight_decay, fused=fused)
    dit_opt = torch.optim.AdamW(dit.parameters(), lr=tc.dit_lr, weight_decay=tc.weight_decay, fused=fused)
    ema = EMA(dit, decay=tc.ema_decay, warmup=True)
    diffusion = GaussianDiffusion(config.diffusion)
    head = checkpoint_head(
        config=config, dit_config=dit_cfg, seed=int(seed), variants=cohort.variants, labels=data.vocabulary,
        label_mix=data.label_mix, label_parents=parents,
        n_classes=data.n_classes, phased=data.phased, n_training_people=cohort.n_samples,
        privacy=cohort.meta.get("privacy"),
        phenotype_column=config.phenotype_column, case_fraction=data.case_fraction,
        calibration_by_phenotype=by_phenotype,
        # banded per-label LD of train for correlation-guided decoding: an un-noised aggregate, so only this
        # non-private trainer stores it; the DP trainer (training.private) stores the DP release instead
        correlation_prior=plain_correlation_prior(cohort, config, data.vocabulary))
    head["label_shrinkage"] = shrinkage  # per label group: divergence F and prior alleles kappa (None = off)
    head["fine_labels"] = fine_label_corrections(cohort, data, per_label, label_column=config.label_column,
                                                 setting=tc.fine_labels, max_people=tc.fine_label_max_people,
                                                 exponent=tc.fine_label_exponent,
                                                 rank=tc.fine_label_rank)  # populations in super_pop (None = off)
    # with thin populations also each label's individual ancestry spread, drawn per person at sampling
    head["ancestry_spread"] = None if head["fine_labels"] is None else label_ancestry_spread(
        cohort, data, per_label, fine=head["fine_labels"])  # around each person's population (not counted twice)
    return PlainRun(vae=vae, dit=dit, vae_opt=vae_opt, dit_opt=dit_opt, ema=ema, diffusion=diffusion, gen=gen,
                    head=head, overall=overall, cal_target=cal_target, by_phenotype=by_phenotype)


def resume_seed(checkpoint: str | None) -> int:
    """The seed recorded in ``checkpoint``: what a resumed run given no seed continues with."""
    if not checkpoint or not os.path.exists(checkpoint):
        raise InputError(f"--resume needs an existing checkpoint; {checkpoint} not found. Drop --resume to start afresh")
    return int(load_checkpoint(checkpoint)["seed"])


def resume_run(run: PlainRun, checkpoint: str | None, say: Callable[[str], None]) -> None:
    """Restore ``run`` from ``checkpoint``, which must hold the same config, seed, labels and variants."""
    if not checkpoint or not os.path.exists(checkpoint):
        raise InputError(f"--resume needs an existing checkpoint; {checkpoint} not found. Drop --resume to start afresh")
    ck = load_checkpoint(checkpoint)
    ck["config"] = GeneratorConfig.from_dict(ck["config"]).to_dict()  # fields added since take their defaults
    for key in ("config", "seed", "labels", "n_classes"):
        if ck[key] != run.head[key]:
            raise InputError(
                f"{checkpoint} was trained with a different {key} ({ck[key]!r} vs {run.head[key]!r}); "
                "resume with the same input, options and --seed, or train afresh without --resume"
            )
    if ck["variants"]["id"] != run.head["variants"]["id"]:
        raise InputError(f"{checkpoint} was trained on other variants; resume with the same input")
    st = ck["state"]
    load_state_dicts(run.parts, st)
    run.gen.set_state(st["rng"])
    run.stage, run.epoch = st["stage"], st["epoch"]
    run.curves, run.latent_scale, run.metrics = ck["curves"], ck["latent_scale"], ck["metrics"]
    run.calibration = ck.get("calibration")
    for key in ("decoder_temperature", "copula_factors"):  # written once the DiT is done
        if key in ck:
            run.head[key] = ck[key]
    say(f"Resumed from {checkpoint}: stage {run.stage}, epoch {run.epoch}")


def fit_vae(run: PlainRun, data: TrainingData, config: GeneratorConfig, dev: torch.device, *, progress: bool,
            say: Callable[[str], None], checkpoint: str | None, callback: Callable | None, every: int) -> None:
    """1. The VAE from ``run.epoch`` to ``vae_epochs``; then its metrics, the posterior and the latent scale."""
    tc = config.training
    n_rows = data.alleles.shape[0]
    bar = progress_bar(tc.vae_epochs, "VAE", progress, run.epoch)
    run.vae.train()
    while run.stage == "vae":
        t0 = time.perf_counter()
        with heap_reuse(tc.heap_reuse and dev.type == "cpu"):  # freed memory kept for the epoch, given back after it
            row = vae_epoch(run, data, config, dev)
        run.curves["vae"].append(row)
        run.seconds["vae"].append(time.perf_counter() - t0)
        _show_epoch(bar, n_rows, t0, loss=f"{row['loss']:.1f}", nll=f"{row['nll']:.1f}", kl=f"{row['kl']:.0f}")
        done = run.epoch == tc.vae_epochs
        if done:
            run.vae.eval()
            run.metrics.update(vae_metrics(run.vae, data.alleles, data.labels, run.overall, dev))
            run.posterior = encode_posterior(run.vae, data.alleles, dev)  # (R, C, T) each; reused by the DiT stage
            run.latent_scale = latent_scale_of(*run.posterior, with_sd=tc.dit_target == "sample")
            run.metrics["latent_scale"] = run.latent_scale
            run.stage, run.epoch = "dit", 0
        _end_epoch(run, "vae", done=done, total=tc.vae_epochs, checkpoint=checkpoint, callback=callback, every=every)
    if bar is not None:
        bar.close()
    m = run.metrics
    say(f"VAE: {tc.vae_epochs} epochs, reconstruction accuracy {m['vae_accuracy']:.4f} "
        f"(majority allele {m['majority_accuracy']:.4f}, majority per label "
        f"{m['label_majority_accuracy']:.4f}), latent scale {run.latent_scale:.4f}")


def vae_epoch(run: PlainRun, data: TrainingData, config: GeneratorConfig, dev: torch.device) -> dict:
    """One VAE epoch over shuffled rows (labels dropped at random); its curve row (mean loss, nll, kl)."""
    tc = config.training
    x_all, y_all = data.alleles, data.labels  # (R, V) int8, (R,) on the CPU
    order, rng, batch = run.epoch_rows(x_all.shape[0], tc.vae_batch_size, "vae")  # (S,)
    vae = run.net("vae", dev)
    sums = np.zeros(3)
    for start in range(0, len(order), batch):
        idx = order[start:start + batch]
        yb = drop_labels(y_all[idx], p=config.vae.label_dropout, null_index=len(data.vocabulary), rng=rng)
        micro = micro_batch_rows(tc.vae_micro_batch, len(idx))
        if micro == len(idx):  # the whole batch in one pass
            with forward_precision(dev, tc.precision):
                out = vae(x_all[idx].to(dev), yb.to(dev), rng=rng)
            optimizer_step(run.vae, run.vae_opt, out["loss"].float(), grad_clip=tc.grad_clip)
            outs = [out]
        else:
            outs = accumulated_step(run, vae, [(x_all[idx[s:s + micro]].to(dev), yb[s:s + micro].to(dev))
                                               for s in range(0, len(idx), micro)], rows=len(idx), rng=rng,
                                    precision=tc.precision, grad_clip=tc.grad_clip)
        sums += [sum(float(out[key].detach().float().sum()) for out in outs) for key in ("loss", "nll", "kl")]
    run.epoch += 1
    sums, seen = run.totals(sums, len(order), dev)
    return {"epoch": run.epoch, "loss": sums[0] / seen, "nll": sums[1] / seen, "kl": sums[2] / seen}


def micro_batch_rows(setting: int, rows: int) -> int:
    """Rows per backward pass of a ``rows``-row VAE batch under ``training.vae_micro_batch`` = ``setting``
    (0 or at least ``rows``: the whole batch in one pass).

    >>> micro_batch_rows(0, 128), micro_batch_rows(32, 128), micro_batch_rows(32, 20)
    (128, 32, 20)
    """
    return setting if 0 < setting < rows else rows


def accumulated_step(run: PlainRun, vae: torch.nn.Module, parts: list[tuple[torch.Tensor, torch.Tensor]], *,
                     rows: int, rng: torch.Generator, precision: str, grad_clip: float) -> list[dict]:
    """One VAE optimiser step over a batch in micro-batches (``training.vae_micro_batch``): each part's per-row
    loss, summed and divided by the batch's ``rows``, is back-propagated before the next part runs, so only one
    part's activations live at a time; then one clip and step, as :func:`optimizer_step` does: the gradient of
    the batch's mean loss, to rounding (its reparameterisation noise is drawn part by part). At 10^5 SNPs
    parts of 32 rows keep every per-SNP temporary under glibc's mmap threshold (RESULTS.md, session 20).
    Under torchrun gradients are averaged once, at the last part. parts: [(x (b, V), y (b,))] -> their outputs."""
    run.vae_opt.zero_grad(set_to_none=True)
    outs = []
    for k, (xb, yb) in enumerate(parts):
        sync = k == len(parts) - 1 or not hasattr(vae, "no_sync")
        with contextlib.nullcontext() if sync else vae.no_sync():
            with forward_precision(xb.device, precision):
                out = vae(xb, yb, rng=rng)
            (out["loss"].float().sum() / rows).backward()
        outs.append(out)
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(run.vae.parameters(), grad_clip)
    run.vae_opt.step()
    return outs


def fit_dit(run: PlainRun, data: TrainingData, config: GeneratorConfig, dev: torch.device, *, progress: bool,
            say: Callable[[str], None], checkpoint: str | None, callback: Callable | None, every: int) -> None:
    """2. The latent DiT from ``run.epoch`` to ``dit_epochs``; then the frequency calibration (EMA weights)."""
    tc = config.training
    n_rows = data.alleles.shape[0]
    mu, sigma = run.posterior if run.posterior is not None else encode_posterior(run.vae, data.alleles, dev)
    bar = progress_bar(tc.dit_epochs, "DiT", progress, run.epoch)
    run.dit.train()
    while run.stage == "dit":
        t0 = time.perf_counter()
        row = dit_epoch(run, data, config, dev, mu, sigma)
        run.curves["dit"].append(row)
        run.seconds["dit"].append(time.perf_counter() - t0)
        _show_epoch(bar, n_rows, t0, loss=f"{row['loss']:.4f}")
        done = run.epoch == tc.dit_epochs
        if done:
            run.stage, run.epoch = "done", tc.dit_epochs
            if tc.calibration_rows > 0:
                with run.ema.average_parameters(run.dit):
                    run.calibration = calibrate_frequencies(
                        run.vae, run.dit, run.diffusion, run.cal_target, run.latent_scale,
                        rows=tc.calibration_rows, steps=tc.calibration_steps, rng=run.gen, dev=dev,
                        by_phenotype=run.by_phenotype, sampler=config.sampling.sampler, eta=config.sampling.eta)
                run.metrics["calibration_max_abs_logit"] = float(run.calibration.abs().max())
            if tc.fit_temperature:
                decoder_temperature(run, data, config, dev, mu, say)
            # the default request's copula factors, solved once (by the process that writes the checkpoint)
            run.head["copula_factors"] = payload_factors(run.payload(), say, progress=progress) if is_main() else None
            run.dit.train()
        _end_epoch(run, "dit", done=done, total=tc.dit_epochs, checkpoint=checkpoint, callback=callback, every=every)
    if bar is not None:
        bar.close()
    run.posterior = None
    say(f"DiT: {tc.dit_epochs} epochs, final loss {run.curves['dit'][-1]['loss']:.4f}")


def decoder_temperature(run: PlainRun, data: TrainingData, config: GeneratorConfig, dev: torch.device,
                        mu: torch.Tensor, say: Callable[[str], None]) -> None:
    """The model's default decoder temperature (``training.fit_temperature``), stored in the head before the
    copula factors are solved for it: :func:`~genosynth.training.calibration.fit_temperature`, EMA weights."""
    tc = config.training
    with run.ema.average_parameters(run.dit):
        fit = fit_temperature(run.vae, run.dit, run.diffusion, mu, data.labels, run.latent_scale,
                              rows=min(128, max(tc.calibration_rows, 16)), steps=tc.calibration_steps,
                              sampler=config.sampling.sampler, eta=config.sampling.eta, rng=run.gen, dev=dev)
    run.head["decoder_temperature"] = fit["temperature"]
    say(f"decoder temperature {fit['temperature']:.2f} (DiT draws decode with entropy {fit['entropy_draws']:.4f} "
        f"at 1, the training rows' latents {fit['entropy_train']:.4f})")


def dit_epoch(run: PlainRun, data: TrainingData, config: GeneratorConfig, dev: torch.device,
              mu: torch.Tensor, sigma: torch.Tensor) -> dict:
    """One DiT epoch over shuffled rows; its curve row (mean loss).

    mu, sigma : float, shape (R, C, T), the VAE posterior of the training rows.
    """
    tc = config.training
    order, rng, batch = run.epoch_rows(data.alleles.shape[0], tc.dit_batch_size, "dit")  # (S,)
    steps_per_epoch = -(-len(order) // batch)
    total_steps = steps_per_epoch * tc.dit_epochs
    dit = run.net("dit", dev)
    total = 0.0
    for k, start in enumerate(range(0, len(order), batch)):
        step = run.epoch * steps_per_epoch + k  # a function of the checkpointed epoch: resume is exact
        for group in run.dit_opt.param_groups:
            group["lr"] = dit_learning_rate(step, total_steps, tc)
        idx = order[start:start + batch]
        if tc.dit_target == "mean":
            z0 = (mu[idx] * run.latent_scale).to(dev)  # (B, C, T)
        else:
            eps = torch.randn(mu[idx].shape, generator=rng)
            z0 = ((mu[idx] + sigma[idx] * eps) * run.latent_scale).to(dev)  # (B, C, T)
        cond = {"y": data.labels[idx].to(dev)}
        if data.phenotypes is not None:
            cond["pheno"] = data.phenotypes[idx].to(dev)  # missing phenotype = the null index
        with forward_precision(dev, tc.precision):
            per_row = run.diffusion.training_loss(dit, z0, cond=cond, reduction="none", rng=rng,
                                                  model_kwargs={"rng": rng},
                                                  t_power=tc.dit_timestep_power).float()  # (B,)
        optimizer_step(run.dit, run.dit_opt, per_row, grad_clip=tc.grad_clip)
        run.ema.update(run.dit)
        total += float(per_row.detach().sum())
    run.epoch += 1
    sums, seen = run.totals(np.array([total]), len(order), dev)
    return {"epoch": run.epoch, "loss": float(sums[0]) / seen}


def _show_epoch(bar, n_rows: int, t0: float, **postfix: str) -> None:
    """Advance the progress bar (if any) by one epoch, showing ``postfix`` and rows per second."""
    if bar is not None:
        bar.set_postfix(**postfix, rows_s=f"{n_rows / (time.perf_counter() - t0):.0f}")
        bar.update(1)


def _end_epoch(run: PlainRun, stage: str, *, done: bool, total: int, checkpoint: str | None,
               callback: Callable | None, every: int) -> None:
    """Write the checkpoint every ``every`` epochs and when ``stage`` is done; then call ``callback``."""
    if checkpoint and (done or run.epoch % every == 0):
        save_checkpoint(checkpoint, run.payload())
    if callback:
        callback(f"{stage}_done" if done else stage, total if done else run.epoch)


#: bytes of a (rows, K, V) float chunk in the VAE's passes over all rows (80 rows at 10^5 SNPs): 1,024-row
#: chunks spent more system time than compute there, 20-row ones twice the CPU time on 2 threads
VAE_PASS_BYTES = 64 << 20


@torch.no_grad()
def encode_posterior(vae: GenotypeVAE, x: torch.Tensor, dev: torch.device, batch: int | None = None):
    """Posterior mean and sd of all rows, on the CPU: float, shape (R, C, T) each.

    Rows go in chunks of ``batch`` (default: :data:`VAE_PASS_BYTES` of (K, V) floats per chunk), written into
    preallocated outputs.
    """
    batch = batch or chunk_rows(vae.n_classes * vae.padded, itemsize=4, budget=VAE_PASS_BYTES)
    shape = (x.shape[0], vae.config.latent_channels, vae.n_tokens)
    mus, sds = torch.empty(shape), torch.empty(shape)  # (R, C, T) each
    for start in range(0, x.shape[0], batch):
        mu, logvar = vae.encode(x[start:start + batch].to(dev))  # (B, C, T) each
        mus[start:start + batch] = mu.cpu()
        sds[start:start + batch] = (0.5 * logvar).exp().cpu()
    return mus, sds


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
    """Aggregate reconstruction accuracy (argmax of decode(mean latent)) vs majority baselines.

    Rows go in chunks of :data:`VAE_PASS_BYTES` of (K, V) logits; the per-label majority allele is
    found once per label, not per row.
    """
    correct = observed = maj = lab_maj = 0
    majority = overall.argmax(dim=1).to(dev)  # (V,)
    per_label = vae.label_bias is not None
    if per_label:  # (L+1, V) most likely class of each label's biases
        label_major = (vae.snp_bias[: vae.n_variants][None] + vae.label_bias[:, : vae.n_variants]).argmax(dim=2)
    batch = chunk_rows(vae.n_classes * vae.padded, itemsize=4, budget=VAE_PASS_BYTES)
    for start in range(0, x.shape[0], batch):
        xb, yb = x[start:start + batch].to(dev), y[start:start + batch].to(dev)  # (B, V), (B,)
        mu, _ = vae.encode(xb)
        pred = vae.decode(mu, yb).argmax(dim=1)  # (B, V)
        ok = xb >= 0
        correct += int(((pred == xb) & ok).sum())
        observed += int(ok.sum())
        maj += int(((majority[None] == xb) & ok).sum())
        if per_label:
            lab_maj += int(((label_major[yb] == xb) & ok).sum())
    return {"vae_accuracy": correct / max(observed, 1), "majority_accuracy": maj / max(observed, 1),
            "label_majority_accuracy": lab_maj / max(observed, 1) if per_label else float("nan")}
