"""Training the generator under a differential-privacy budget (``genosynth train --epsilon E``).

:func:`train_private` is the DP counterpart of :func:`genosynth.generator.train_generator`. It
builds the same models (:func:`~genosynth.generator.build_models`) and writes a checkpoint that
:class:`~genosynth.generator.Generator` loads unchanged, but every access to the private cohort
goes through one mechanism recorded in one :class:`~genosynth.privacy.PrivacyAccountant`:

====================  =============================================================================
event                 what is released (``docs/privacy.md`` §2 has sensitivities and assumptions)
====================  =============================================================================
``allele_frequencies``  per-label ALT dosage sums and per-label counts, one Gaussian release,
                      denoised with its known noise level (low-rank shrinkage): the decoder's
                      label biases, the label mix and the allele-frequency calibration are
                      post-processing of it
``vae/dpsgd``         DP-SGD on the VAE, one person per clipped gradient (skipped when the VAE is
                      trained on a public reference cohort)
``diffusion/stage1``  each person's latent clipped to ``latent_clip`` and released once, noised at
                      level ``S - 1``; the unconditional stage-1 training (t >= S) uses only it
``diffusion/stage2``  DP-SGD on the DiT for t < S, label-conditional
``correlation_prior`` the banded per-label SNP correlation (Gaussian), for correlation-guided decoding
====================  =============================================================================

The plan (:func:`~genosynth.privacy.plan_for_training`) is calibrated **before** any training,
so an impossible budget raises :class:`~genosynth.errors.PrivacyError` without touching the data
beyond its size. The unit of privacy is a person: in haplotype mode a person's two haplotype rows
share one clipped gradient and one clipped latent pair.

Never stored, logged or returned: training losses and accuracies of private data, per-sample
gradients or norms, latents, exact label counts, exact allele frequencies or correlations. Data-
dependent preprocessing (MAF filter, SNP selection) is not done here: it must be done on public
data or by an accounted mechanism (``genosynth select --epsilon``), whose privacy report, carried
in ``cohort.meta["privacy"]``, is composed into this run's accountant.

References
----------
Abadi M. et al. (2016) Deep learning with differential privacy. CCS.
Wang H. et al. (2024) dp-promise: differentially private diffusion probabilistic models for image
synthesis. USENIX Security (two-stage split; see ``docs/privacy.md`` §3 for what we changed).
Daras G., Dimakis A., Daskalakis C. (2024) Consistent diffusion meets Tweedie. ICML (training
from noisy data).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
import numpy as np
import torch
from torch import nn
from genosynth.cohort import Cohort
from genosynth.models.diffusion import GaussianDiffusion
from genosynth.models.ema import EMA
from genosynth.errors import InputError, PrivacyError
from genosynth.models.checkpoint import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, variants_to_dict, build_models, load_state_dicts, load_tagged, save_checkpoint, state_dicts
from genosynth.sampling.generator import Generator
from genosynth.models.config import GeneratorConfig
from genosynth.training.calibration import calibrate_frequencies
from genosynth.training.plain import encode_posterior, latent_scale_of
from genosynth.runtime import deterministic
from genosynth.training.data import label_parents, prepare_data
from genosynth.provenance import versions
from genosynth.models.vae import GenotypeVAE
from genosynth.privacy import (
    DPSGD,
    PrivacyAccountant,
    release_stage1_latents,
    stage1_training_pair,
)
from genosynth.privacy.releases import release_ancestry_spread
from genosynth.training.dp_plan import PrivacyConfig
from genosynth.training.data import person_dosages
from genosynth.training.dp_plan import plan_private
from genosynth.privacy.releases import release_label_frequencies
from genosynth.training.ld_fit import shrink_correlation_bands
from genosynth.training.dp_plan import spread_dims


def _class_frequencies(p: np.ndarray, n_classes: int) -> torch.Tensor:
    """Allele-class frequencies from ALT frequencies: (..., V) -> float32 (..., V, K).

    Haplotypes (K = 2): ``(1-p, p)``; genotypes (K = 3): Hardy-Weinberg ``((1-p)², 2p(1-p), p²)``.
    """
    p = torch.as_tensor(p, dtype=torch.float32)
    if n_classes == 2:
        return torch.stack([1 - p, p], dim=-1)
    return torch.stack([(1 - p) ** 2, 2 * p * (1 - p), p ** 2], dim=-1)


class _VAEPersonLoss(nn.Module):
    """Per-person VAE loss with all randomness passed in (for per-sample gradients under vmap).

    forward(x (B, P, V) int, y (B,) int64 label or null, eps (B, P, C, T)) -> (B,) loss summed
    over the person's ``P`` rows (``nll + kl_weight * kl`` as :class:`GenotypeVAE`).
    """

    def __init__(self, vae: GenotypeVAE):
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        b, p, v = x.shape
        rows = x.reshape(b * p, v)  # (B*P, V)
        mu, logvar = self.vae.encode(rows)  # (B*P, C, T)
        z = mu + eps.reshape(mu.shape) * (0.5 * logvar).exp()
        logits = self.vae.decode(z, y.repeat_interleave(p))  # (B*P, K, V)
        nll = nn.functional.cross_entropy(logits, rows.long(), reduction="none").sum(dim=1)  # (B*P,)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=(1, 2))  # (B*P,)
        return (nll + self.vae.config.kl_weight * kl).reshape(b, p).sum(dim=1)  # (B,)


def _stage1_loss(diffusion: GaussianDiffusion, model: Callable, released: torch.Tensor, t: torch.Tensor,
                 *, release_step: int, null_label: int, rng: torch.Generator) -> torch.Tensor:
    """Ambient denoising loss on released latents (unconditional), mean over the batch.

    With ``s = release_step``, ``x_t`` is drawn from the release ``y = x_s``
    (:func:`~genosynth.privacy.stage1_training_pair`); the network's prediction (v, eps or x0, as
    configured) is turned into ``x0_hat`` and then into ``E[x_s | x_t] ≈ a x0_hat + b x_t``,
    regressed on ``y``. The minimiser is the true posterior mean ``E[x0 | x_t]``, so the network
    is trained for the same target as in ordinary training, from released data only. The weight
    ``1 / ((1-ᾱ_t) max(a², 0.01))`` puts the loss on the scale of the usual v-loss.

    released : float, shape (B, C, L); t : int64, shape (B,) with t > s -> scalar
    """
    ab = diffusion.alphas_cumprod
    x_t, _ = stage1_training_pair(released, t, alphas_cumprod=ab, release_step=release_step, rng=rng)
    y = torch.full((released.shape[0],), null_label, dtype=torch.long)
    out = model(x_t, t, y, force_drop_ids=torch.ones_like(y, dtype=torch.bool))  # (B, C, L)
    _, x0_hat = diffusion.predict_eps_x0(out, x_t, t)  # (B, C, L)
    a_s = float(ab[release_step])
    a_t = ab[t].to(released.dtype).reshape(-1, 1, 1)  # (B, 1, 1)
    a = (a_s - a_t) / (math.sqrt(a_s) * (1 - a_t))
    b = (1 - a_s) * torch.sqrt(a_t / a_s) / (1 - a_t)
    x_s_hat = a * x0_hat + b * x_t  # (B, C, L)
    w = 1.0 / ((1 - a_t) * torch.clamp(a * a, min=0.01))
    return (w * (x_s_hat - released).pow(2)).flatten(1).mean(dim=1).mean()


def _stage2_person_loss(diffusion: GaussianDiffusion, model: Callable, x0: torch.Tensor, y: torch.Tensor,
                        t: torch.Tensor, noise: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
    """:meth:`GaussianDiffusion.training_loss` per person, with every random draw passed in.

    Written out because that method checks the range of ``t`` by reading values, which
    ``torch.func.vmap`` cannot do (``t`` is drawn in ``[0, S)`` outside).

    x0, noise : float, shape (B, P, C, T); y : int64, shape (B,); t : int64, shape (B, P);
    drop : bool, shape (B,) -> float, shape (B,): the loss of each person's ``P`` rows, summed.
    """
    b, per, c, tok = x0.shape
    x0r, nr, tr = x0.reshape(b * per, c, tok), noise.reshape(b * per, c, tok), t.reshape(b * per)
    x_t = diffusion.q_sample(x0r, tr, nr)  # (B*P, C, T)
    out = model(x_t, tr, y.repeat_interleave(per), force_drop_ids=drop.repeat_interleave(per))  # (B*P, C, T)
    rows = (out - diffusion.target(x0r, nr, tr)).pow(2).flatten(1).mean(dim=1)  # (B*P,)
    return rows.reshape(b, per).sum(dim=1)


#: Suffix of the private resume file beside the checkpoint (``PREFIX.pt.private-resume``).
RESUME_SUFFIX = ".private-resume"


RESUME_FORMAT = "genosynth-dp-resume"


def resume_path(checkpoint: str) -> str:
    """The private resume file of a DP run writing ``checkpoint``.

    It holds what an exact resume needs (model/optimiser/EMA state, the accountant, the stage-1
    release, the DP frequency release and the **noise generator states**); with those states the
    DP noise could be recomputed and removed, so the file is as secret as the cohort: it stays with
    the custodian and is deleted when the final checkpoint has been written.
    """
    return f"{checkpoint}{RESUME_SUFFIX}"


def _data_digest(alleles: torch.Tensor, labels: torch.Tensor) -> str:
    """SHA-256 of the training rows and labels (kept only in the private resume file)."""
    import hashlib

    h = hashlib.sha256()
    h.update(alleles.numpy().tobytes())
    h.update(labels.numpy().tobytes())
    return h.hexdigest()


def _load_resume(path: str, *, checkpoint: str, expect: dict) -> dict:
    """Read and check a private resume file; raise :class:`InputError` naming the fix."""
    import os

    if not os.path.exists(path):
        if os.path.exists(checkpoint):
            raise InputError(
                f"{checkpoint} is a finished run and there is no interrupted DP run to resume ({path} does not "
                "exist); drop --resume (a new run is a new release and spends its own budget)"
            )
        raise InputError(f"no interrupted DP run to resume: {path} does not exist; drop --resume and train afresh")
    st = load_tagged(path, tag=RESUME_FORMAT, what="genosynth DP resume file", fix="delete it and train afresh")
    for key, value in expect.items():
        if st[key] != value:
            detail = ""
            if isinstance(value, dict):
                diff = sorted(k for k in set(value) | set(st[key]) if value.get(k) != st[key].get(k))
                detail = f" (fields {', '.join(diff)})"
            raise InputError(
                f"{path} belongs to a run with a different {key}{detail}; resume with the same input and options "
                "(they fix the privacy plan), or delete the file and train afresh"
            )
    return st


def train_private(
    cohort: Cohort,
    *,
    config: GeneratorConfig | None = None,
    privacy: PrivacyConfig | None = None,
    public_reference: Cohort | None = None,
    seed: int = 0,
    checkpoint: str | None = None,
    resume: bool = False,
    log: Callable[[str], None] | None = None,
    callback: Callable[[str, int], None] | None = None,
) -> Generator:
    """Train the generator on ``cohort`` with (ε, δ)-DP for the whole run; return the :class:`Generator`.

    Parameters
    ----------
    cohort : Cohort
        The private training people (complete genotypes; labels in ``config.label_column``).
    config : GeneratorConfig, optional
        Model and optimisation; ``training.vae_epochs`` / ``dit_epochs`` are the DP-SGD epochs of
        the VAE and of stage 2 (each epoch = ``ceil(n / batch_size)`` Poisson steps).
    privacy : PrivacyConfig, optional
        Budget and DP options (default ε = 10, δ = 1e-5).
    public_reference : Cohort, optional
        Public people (same variants) to train the VAE on, non-privately; the VAE then costs no
        budget. Their labels are not used (the VAE is trained with the null label).
    seed : int
        Seeds every random draw, DP noise and Poisson sampling included. It is a **secret**: whoever
        knows it can recompute the noise. It is never written to the checkpoint or the log (the
        CLI draws it from the OS when ``--seed`` is not given).
    checkpoint : str, optional
        Where to write the final checkpoint (``Generator.load`` reads it). Nothing is written
        before the plan has been calibrated, so a refused budget leaves no file. Every
        ``config.training.checkpoint_every`` epochs the run state goes to the private file
        :func:`resume_path` (deleted at the end).
    resume : bool
        Continue the interrupted run from :func:`resume_path` ``(checkpoint)`` with the restored
        noise-generator states and accountant: the result is bit-identical to an uninterrupted run,
        so nothing is released twice and no budget is spent twice. ``seed`` is then ignored.
    log : callable(str), optional
        Receives the plan and the final privacy summary; never a private statistic.
    callback : callable(stage, epoch), optional
        Called after each write of the resume file (tests interrupt the run from here).

    Returns
    -------
    Generator
        ``meta["privacy"]`` is the accountant's report (ε, δ, breakdown, events).

    Raises
    ------
    PrivacyError
        Impossible budget (before any training), or missing genotypes.
    InputError
        ``resume`` without a matching resume file; a resume file left by an interrupted run when
        ``resume`` is False.
    """
    import os

    config = config or GeneratorConfig()
    privacy = privacy or PrivacyConfig()
    say = log or (lambda message: None)
    t_start = time.perf_counter()
    if public_reference is not None and list(public_reference.variants["id"]) != list(cohort.variants["id"]):
        raise InputError("the public reference cohort must have the same variants, in the same order, as the input")
    if resume and not checkpoint:
        raise InputError("resume needs the checkpoint path of the interrupted run (--out PREFIX of that run)")
    private_file = resume_path(checkpoint) if checkpoint else None
    if private_file and not resume and os.path.exists(private_file):
        raise InputError(
            f"{private_file} holds an interrupted DP run of this --out; continue it with --resume (same input and "
            "options), or delete that file to start afresh"
        )
    z_mult, plan, prior = plan_private(cohort, config=config, privacy=privacy,
                                       public_reference=public_reference is not None)  # raises before training
    say(f"DP plan: target epsilon={privacy.epsilon:g}, delta={privacy.delta:g}; noise multipliers "
        + ", ".join(f"{k} {v:.3g}" for k, v in z_mult.items()))
    say("planned " + plan.summary(privacy.delta))

    data = prepare_data(cohort, label_column=config.label_column, mode=config.mode)
    tc = config.training
    n = cohort.n_samples
    per = 2 if data.phased else 1  # rows per person
    n_labels = len(data.vocabulary)
    v = cohort.n_variants
    x_person = data.alleles.reshape(n, per, v)  # (N, P, V) int8
    y_person = data.labels.reshape(n, per)[:, 0].clone()  # (N,)
    dosages = person_dosages(data.alleles, per)  # (N, V), private, in memory only
    # the panel's label hierarchy (e.g. pop -> super_pop), treated as public like the label vocabulary
    parents = label_parents(cohort, config.label_column, data.vocabulary)
    parent_index = None
    if "super_pop" in parents:
        names = sorted(set(parents["super_pop"].values()))
        parent_index = np.array([names.index(parents["super_pop"][lab]) for lab in data.vocabulary])
    gen = torch.Generator().manual_seed(int(seed))
    rng = np.random.default_rng([int(seed), 1])
    torch.manual_seed(int(seed))
    acc = PrivacyAccountant()
    if prior is not None:
        acc.extend(prior)

    vae, dit, dit_cfg = build_models(config, n_variants=v, n_classes=data.n_classes, n_labels=n_labels)
    diffusion = GaussianDiffusion(config.diffusion)
    T = config.diffusion.timesteps
    S = privacy.split(T)
    q = privacy.batch_size / n
    steps_per_epoch = int(math.ceil(1.0 / q))
    c, tok = config.vae.latent_channels, vae.n_tokens
    vae_opt = torch.optim.AdamW(vae.parameters(), lr=tc.vae_lr, weight_decay=tc.weight_decay)
    dit_opt = torch.optim.AdamW(dit.parameters(), lr=tc.dit_lr, weight_decay=tc.weight_decay)
    s1_opt = torch.optim.AdamW(dit.parameters(), lr=tc.dit_lr, weight_decay=tc.weight_decay)
    ema = EMA(dit, decay=tc.ema_decay, warmup=True)
    # what the resume file restores; the released checkpoint holds the same less the stage-1 optimiser
    parts = {"vae": vae, "vae_opt": vae_opt, "dit": dit, "dit_opt": dit_opt, "s1_opt": s1_opt, "ema": ema}
    null = dit_cfg.n_classes
    every = max(1, int(tc.checkpoint_every))

    # what a resume must match: the plan depends on all of it
    expect = {"config": config.to_dict(), "privacy_config": privacy.to_dict(), "n": n,
              "public_reference": public_reference is not None,
              "digest": _data_digest(data.alleles, data.labels)}
    stage, epoch = "vae", 0
    rel = released = None
    latent_scale = 1.0
    if resume:
        st = _load_resume(private_file, checkpoint=checkpoint, expect=expect)
        stage, epoch = st["stage"], int(st["epoch"])
        acc = PrivacyAccountant()
        acc.load_state_dict(st["accountant"])
        rel, released, latent_scale = st["rel"], st["released"], float(st["latent_scale"])
        load_state_dicts(parts, st)
        gen.set_state(st["gen"])
        rng.bit_generator.state = st["rng"]
        torch.set_rng_state(st["torch_rng"])
        say(f"Resumed the DP run from {private_file}: stage {stage}, epoch {epoch} (noise generators and "
            f"accountant restored: epsilon spent so far {acc.get_epsilon(privacy.delta):.4g})")

    def save_resume(at_stage: str, at_epoch: int) -> None:
        """Write the private resume file (atomically), then call ``callback``."""
        if private_file:
            blob = {"format": RESUME_FORMAT, **expect, "stage": at_stage, "epoch": at_epoch,
                    "warning": "PRIVATE: holds the DP noise-generator states and per-person noisy latents; "
                               "never release this file (genosynth deletes it when training ends)",
                    "accountant": acc.state_dict(), "rel": rel, "released": released, "latent_scale": latent_scale,
                    **state_dicts(parts), "gen": gen.get_state(), "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state()}
            save_checkpoint(private_file, blob)
        if callback is not None:
            callback(at_stage, at_epoch)

    def class_freqs() -> tuple[torch.Tensor, torch.Tensor]:
        return _class_frequencies(rel["overall"], data.n_classes), _class_frequencies(rel["freq"], data.n_classes)

    with deterministic():
        # ------------------------------------------------ 1. frequencies + label counts (Gaussian)
        if rel is None:
            rel = release_label_frequencies(dosages, y_person.numpy(), n_labels,
                                            noise_multiplier=z_mult["allele_frequencies"], rng=rng,
                                            accountant=acc, name="allele_frequencies", parents=parent_index,
                                            denoiser=privacy.frequency_denoiser,
                                            clip_fraction=privacy.frequency_clip)
            if "rank" in rel:  # a function of the release only
                say(f"Frequency release denoised to rank {rel['rank']} of {n_labels} labels")
            k_spread = spread_dims(cohort, config.label_column, privacy)
            if k_spread > 0:  # directions and centres from the release above; one more Gaussian release
                rel["spread"] = release_ancestry_spread(
                    dosages, y_person.numpy(), freq=rel["freq"], counts=rel["counts"], dims=k_spread,
                    clip=privacy.ancestry_clip, noise_multiplier=z_mult["ancestry_spread"], rng=rng,
                    accountant=acc, name="ancestry_spread", ploidy=2)
            overall_k, per_label_k = class_freqs()  # (V, K), (L, V, K)
            vae.init_biases(overall_k, per_label_k)
        overall_k, per_label_k = class_freqs()
        label_mix = {lab: float(m) for lab, m in zip(data.vocabulary, rel["mix"])}

        # ------------------------------------------------ 2. VAE (DP-SGD, or public reference)
        t0 = time.perf_counter()
        rows = None
        if public_reference is not None:
            pub = prepare_data(public_reference, label_column=config.label_column, mode=config.mode) \
                if config.label_column in public_reference.samples.columns else None
            rows = (pub.alleles if pub is not None else torch.from_numpy(
                np.ascontiguousarray(public_reference.alleles if data.phased else public_reference.genotypes(),
                                     dtype=np.int8)))  # (R_pub, V)
        if stage == "vae":
            vae.train()
            dp_vae = None
            if public_reference is None:
                dp_vae = DPSGD(_VAEPersonLoss(vae), vae_opt, noise_multiplier=z_mult["vae/dpsgd"],
                               max_grad_norm=privacy.max_grad_norm, expected_batch_size=privacy.batch_size,
                               rng=gen, accountant=acc, sample_rate=q, name="vae/dpsgd", n_samples=n,
                               max_physical_batch_size=privacy.max_physical_batch_size)
            while epoch < tc.vae_epochs:
                if dp_vae is not None:
                    for idx in dp_vae.batches(steps_per_epoch):
                        b = idx.numel()
                        yb = y_person[idx]
                        drop = torch.rand(b, generator=gen) < config.vae.label_dropout
                        yb = torch.where(drop, torch.full_like(yb, n_labels), yb)
                        eps = torch.randn(b, per, c, tok, generator=gen)
                        dp_vae.step(lambda fwd, x, y_, e: fwd(x, y_, e).mean(), (x_person[idx], yb, eps))
                else:
                    order = torch.randperm(rows.shape[0], generator=gen)
                    for start in range(0, rows.shape[0], tc.vae_batch_size):
                        xb = rows[order[start:start + tc.vae_batch_size]]
                        yb = torch.full((xb.shape[0],), n_labels, dtype=torch.long)
                        out = vae(xb, yb, rng=gen)
                        vae_opt.zero_grad(set_to_none=True)
                        out["loss"].mean().backward()
                        if tc.grad_clip > 0:
                            torch.nn.utils.clip_grad_norm_(vae.parameters(), tc.grad_clip)
                        vae_opt.step()
                epoch += 1
                if epoch < tc.vae_epochs and epoch % every == 0:
                    save_resume("vae", epoch)
            stage, epoch = "release", 0
        vae.eval()
        say(f"VAE: {tc.vae_epochs} epochs ({'public reference' if public_reference is not None else 'DP-SGD'}), "
            f"{time.perf_counter() - t0:.1f} s")

        # ------------------------------------------------ 3. latents (in memory only)
        if public_reference is not None:
            latent_scale = latent_scale_of(*encode_posterior(vae, rows, torch.device("cpu")))
        else:
            latent_scale = 1.0  # public choice: the KL term pulls latents towards N(0, I)
        mu, sd = encode_posterior(vae, data.alleles, torch.device("cpu"))  # (R, C, T) each, private
        mu = mu.reshape(n, per, c, tok) * latent_scale
        sd = sd.reshape(n, per, c, tok) * latent_scale

        # ------------------------------------------------ 4. stage-1 release (once) + DiT training
        def stage1_step(batch_rows: torch.Tensor) -> None:
            t1 = torch.randint(S, T, (batch_rows.shape[0],), generator=gen)
            loss = _stage1_loss(diffusion, dit, batch_rows, t1, release_step=S - 1, null_label=null, rng=gen)
            s1_opt.zero_grad(set_to_none=True)
            loss.backward()
            if tc.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(dit.parameters(), tc.grad_clip)
            s1_opt.step()
            ema.update(dit)

        dit.train()
        t0 = time.perf_counter()
        if stage == "release":
            if S < T and privacy.stage1_epochs > 0:
                z0 = mu + sd * torch.randn(mu.shape, generator=gen)  # (N, P, C, T)
                released = release_stage1_latents(z0, latent_clip=privacy.latent_clip,
                                                  alpha_bar=float(diffusion.alphas_cumprod[S - 1]),
                                                  rng=gen, accountant=acc, name="diffusion/stage1")
                released = released.reshape(n * per, c, tok)  # (R, C, T): only the release from here on
                del z0
                for _ in range(privacy.stage1_epochs):
                    order = torch.randperm(released.shape[0], generator=gen)
                    for start in range(0, released.shape[0], tc.dit_batch_size):
                        stage1_step(released[order[start:start + tc.dit_batch_size]])
            stage, epoch = "dit", 0
            save_resume("dit", 0)
        s1_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        dp_dit = DPSGD(dit, dit_opt, noise_multiplier=z_mult["diffusion/stage2"], max_grad_norm=privacy.max_grad_norm,
                       expected_batch_size=privacy.batch_size, rng=gen, accountant=acc, sample_rate=q,
                       name="diffusion/stage2", n_samples=n, max_physical_batch_size=privacy.max_physical_batch_size)

        def stage2_loss(fwd, x0, yb, tb, noise, drop):
            return _stage2_person_loss(diffusion, fwd, x0, yb, tb, noise, drop).mean()

        # per-sample gradients: the math attention batches under vmap (the fused CPU kernel has no
        # batching rule and falls back to a loop over samples)
        from torch.nn.attention import SDPBackend, sdpa_kernel

        while stage == "dit" and epoch < tc.dit_epochs:
            for idx in dp_dit.batches(steps_per_epoch):
                b = idx.numel()
                x0 = mu[idx] + sd[idx] * torch.randn(b, per, c, tok, generator=gen)  # (b, P, C, T)
                tb = torch.randint(0, S, (b, per), generator=gen)
                noise = torch.randn(b, per, c, tok, generator=gen)
                drop = torch.rand(b, generator=gen) < dit_cfg.class_dropout
                with sdpa_kernel([SDPBackend.MATH]):
                    dp_dit.step(stage2_loss, (x0, y_person[idx], tb, noise, drop))
                ema.update(dit)
                if released is not None and privacy.stage1_interleave:
                    pick = torch.randint(0, released.shape[0], (tc.dit_batch_size,), generator=gen)
                    stage1_step(released[pick])
            epoch += 1
            if epoch % every == 0 or epoch == tc.dit_epochs:
                save_resume("dit", epoch)
        s2_s = time.perf_counter() - t0
        dit.eval()
        del mu, sd, released
        say(f"DiT: stage 1 {privacy.stage1_epochs if S < T else 0} epochs on the release ({s1_s:.1f} s), "
            f"stage 2 {tc.dit_epochs} DP-SGD epochs ({s2_s:.1f} s)")

        # ------------------------------------------------ 5. correlation prior (Gaussian)
        corr_state = None
        if privacy.correlation_window > 0:
            from genosynth.training.ld_fit import fit_prior

            window = int(min(privacy.correlation_window, max(1, v - 1)))
            clip = privacy.correlation_clip or math.sqrt(v * (window + 1)) / 4.0
            prior_obj = fit_prior(cohort, label_column=config.label_column, labels=data.vocabulary, window=window,
                                  noise_multiplier=z_mult["correlation_prior"], clip=clip,
                                  center=2.0 * rel["freq"], accountant=acc, rng=rng, name="correlation_prior")
            prior_obj.info["n_per_label"] = {lab: float(cnt) for lab, cnt in zip(data.vocabulary, rel["counts"])}
            if privacy.shrink_correlations:
                prior_obj.bands, prior_obj.info["shrinkage"] = shrink_correlation_bands(
                    prior_obj.bands, rel["freq"], rel["counts"], noise_multiplier=z_mult["correlation_prior"], clip=clip)
            corr_state = prior_obj.state_dict()

        # ------------------------------------------------ 6. allele-frequency calibration (post-processing)
        calibration = None
        if privacy.calibrate_frequencies and tc.calibration_rows > 0:
            with ema.average_parameters(dit):
                calibration = calibrate_frequencies(vae, dit, diffusion, per_label_k, latent_scale, rows=tc.calibration_rows,
                                         steps=tc.calibration_steps, rng=gen, dev=torch.device("cpu"))

    eps_total = acc.get_epsilon(privacy.delta)
    if eps_total > privacy.epsilon * (1 + 1e-9):
        raise PrivacyError(  # cannot happen when the plan was followed; a guard against future edits
            f"the run spent epsilon={eps_total:.4g} > --epsilon {privacy.epsilon:g}; nothing was written"
        )
    report = acc.report(privacy.delta)
    report["target_epsilon"] = privacy.epsilon
    say(acc.summary(privacy.delta))
    payload = {
        "format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION,
        # the seed and the generator states would let anyone recompute (and remove) the DP noise:
        # under --epsilon neither is released
        "config": config.to_dict(), "dit_config": dit_cfg.to_dict(), "seed": None,
        "versions": versions(), "variants": variants_to_dict(cohort.variants),
        "labels": data.vocabulary, "label_column": config.label_column, "label_mix": label_mix,
        "label_parents": parents,
        "n_classes": data.n_classes, "phased": data.phased, "n_training_people": n,
        "privacy": report, "privacy_state": acc.state_dict(), "privacy_config": privacy.to_dict(),
        "privacy_noise_multipliers": dict(z_mult), "public_reference": public_reference is not None,
        "correlation_prior": corr_state,
        "ancestry_spread": rel.get("spread"),  # DP release (post-processed): directions, centres, covariances
        "curves": {"vae": [], "dit": []},  # losses of private batches are private: not recorded
        "latent_scale": latent_scale, "metrics": {}, "calibration": calibration,
        "state": {"stage": "done", "epoch": tc.dit_epochs,
                  **state_dicts({k: v for k, v in parts.items() if k != "s1_opt"}), "rng": None},
    }
    if checkpoint:
        save_checkpoint(checkpoint, payload)
        if private_file and os.path.exists(private_file):
            os.remove(private_file)  # the secret noise state must not outlive the run
    model = Generator.from_payload(payload)
    model.meta["train_seconds"] = round(time.perf_counter() - t_start, 1)
    return model
