"""Training the generator under a differential-privacy budget (``genosynth train --epsilon E``).

:func:`train_private` is the DP counterpart of :func:`genosynth.training.plain.train_generator`.
It builds the same models (:func:`~genosynth.models.checkpoint.build_models`) and writes a
checkpoint that :class:`~genosynth.sampling.generator.Generator` loads unchanged, but every
access to the private cohort goes through one mechanism recorded in one
:class:`~genosynth.privacy.PrivacyAccountant`:

====================  =============================================================================
event                 what is released (``docs/privacy.md`` §2 has sensitivities and assumptions)
====================  =============================================================================
``allele_frequencies``  per-label ALT dosage sums and per-label counts, one Gaussian release,
                      denoised with its known noise level (low-rank shrinkage): the decoder's
                      label biases, the label mix and the allele-frequency calibration are
                      post-processing of it. With a phenotype (``config.phenotype_column``) the
                      same release is made per (label, case/control) group (same sensitivity,
                      same ε); per-label values, case fractions and the per-group calibration
                      targets are post-processing of it
``vae/dpsgd``         DP-SGD on the VAE, one person per clipped gradient (skipped when the VAE is
                      trained on a public reference cohort)
``diffusion/stage1``  each person's latent clipped to ``latent_clip`` and released once, noised at
                      level ``S - 1``; the unconditional stage-1 training (t >= S) uses only it
``diffusion/stage2``  DP-SGD on the DiT for t < S, label-conditional (and phenotype-conditional:
                      the case/control label is part of each person's clipped gradient)
``correlation_prior`` the banded per-label SNP correlation (Gaussian), for correlation-guided decoding
====================  =============================================================================

The plan (:func:`~genosynth.training.dp_plan.plan_private`) is calibrated **before** any training,
so an impossible budget raises :class:`~genosynth.errors.PrivacyError` without touching the data
beyond its size. The unit of privacy is a person: in haplotype mode a person's two haplotype rows
share one clipped gradient and one clipped latent pair.

Never stored, logged or returned: training losses and accuracies of private data, per-sample
gradients or norms, latents, exact label counts, exact allele frequencies or correlations. Data-
dependent preprocessing (MAF filter, SNP selection) is not done here: it must be done on public
data or by an accounted mechanism (``genosynth select --epsilon``), whose privacy report, carried
in ``cohort.meta["privacy"]``, is composed into this run's accountant.

:func:`train_private` reads as its stages: 0. plan and start (:func:`start_run`); 1. release the
frequencies and the ancestry spread (:func:`release_frequencies`); 2. fit the VAE under DP-SGD
(:func:`fit_vae`); 3. release the stage-1 latents once and fit stage 1 on them
(:func:`fit_stage1`); 4. fit stage 2 under DP-SGD (:func:`fit_stage2`); 5. release the LD prior
(:func:`release_correlation_prior`); 6. calibrate the frequencies (:func:`calibrate_released`)
and write the checkpoint (:func:`finish`). With a released public model (``public_model``,
``--from-model``; :mod:`genosynth.training.transfer`) stage 2 is skipped (the public VAE, no budget),
the DiT starts from the public one, every label's frequencies are denoised towards the public model's
(its own label's, or for a new label the best mix of them), stage 5 corrects the public LD band and stage 6
iterates the calibration (:data:`PUBLIC_CALIBRATION_ROWS`, :data:`PUBLIC_CALIBRATION_BOUND`). The noise seed is secret
(:func:`genosynth.seeds.noise_seed`) unless a test asks for ``deterministic_noise``.

References
----------
Abadi M. et al. (2016) Deep learning with differential privacy. CCS.
Wang H. et al. (2024) dp-promise: differentially private diffusion probabilistic models for image
synthesis. USENIX Security (two-stage split; see ``docs/privacy.md`` §3 for what we changed).
Daras G., Dimakis A., Daskalakis C. (2024) Consistent diffusion meets Tweedie. ICML (training
from noisy data).
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
import numpy as np
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from genosynth.cohort import Cohort
from genosynth.errors import InputError, PrivacyError
from genosynth.models.checkpoint import (build_models, checkpoint_head, checkpoint_payload, load_state_dicts,
                                         load_tagged, save_checkpoint, state_dicts)
from genosynth.models.config import GeneratorConfig
from genosynth.models.diffusion import GaussianDiffusion
from genosynth.models.dit import DiT1D, DiTConfig
from genosynth.models.ema import EMA
from genosynth.models.vae import GenotypeVAE
from genosynth.sampling.factors import payload_factors
from genosynth.privacy import DPSGD, PrivacyAccountant, release_stage1_latents, stage1_training_pair
from genosynth.privacy.releases import (release_ancestry_spread, release_label_frequencies,
                                        release_phenotype_frequencies)
from genosynth.runtime import progress_bar, deterministic
from genosynth.sampling.generator import Generator
from genosynth.seeds import noise_seed
from genosynth.training.calibration import calibrate_frequencies
from genosynth.training.data import TrainingData, label_parents, person_dosages, prepare_data
from genosynth.training.dp_plan import PrivacyConfig, plan_private, spread_dims
from genosynth.training.ld_fit import fit_prior, shrink_correlation_bands
from genosynth.training.plain import encode_posterior, latent_scale_of
from genosynth.training.transfer import (adapt_config, adopt_public_weights, correct_public_prior,
                                         public_band, public_label_frequencies)


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
                        t: torch.Tensor, noise: torch.Tensor, drop: torch.Tensor, pheno: torch.Tensor | None = None,
                        pheno_drop: torch.Tensor | None = None) -> torch.Tensor:
    """:meth:`GaussianDiffusion.training_loss` per person, with every random draw passed in.

    Written out because that method checks the range of ``t`` by reading values, which
    ``torch.func.vmap`` cannot do (``t`` is drawn in ``[0, S)`` outside).

    x0, noise : float, shape (B, P, C, T); y : int64, shape (B,); t : int64, shape (B, P);
    drop : bool, shape (B,) (both labels null); pheno : int64, shape (B,), 0 control / 1 case, and
    pheno_drop : bool, shape (B,) (the phenotype alone null), for a phenotype model
    -> float, shape (B,): the loss of each person's ``P`` rows, summed.
    """
    b, per, c, tok = x0.shape
    x0r, nr, tr = x0.reshape(b * per, c, tok), noise.reshape(b * per, c, tok), t.reshape(b * per)
    x_t = diffusion.q_sample(x0r, tr, nr)  # (B*P, C, T)
    cond = {}
    if pheno is not None:
        cond = {"pheno": pheno.repeat_interleave(per), "pheno_drop_ids": pheno_drop.repeat_interleave(per)}  # (B*P,)
    out = model(x_t, tr, y.repeat_interleave(per), force_drop_ids=drop.repeat_interleave(per), **cond)  # (B*P, C, T)
    rows = (out - diffusion.target(x0r, nr, tr)).pow(2).flatten(1).mean(dim=1)  # (B*P,)
    return rows.reshape(b, per).sum(dim=1)


#: Suffix of the private resume file beside the checkpoint (``PREFIX.pt.private-resume``).
RESUME_SUFFIX = ".private-resume"


RESUME_FORMAT = "genosynth-dp-resume"

#: The iterated calibration of an adapted public model (``--from-model``; RESULTS.md "Adapted model: ancestry
#: spread and AATS"): at least this many rows per label (with 256 its 30 iterations fit their Monte Carlo noise,
#: ~0.03 per SNP), and logit corrections up to this bound (at the plain bound 3, 40-80 SNPs per label could not
#: reach their released frequency from the sharp public decoder: generated-vs-released RMSE 0.025-0.035 per label,
#: 0.013-0.014 at 8, the Monte Carlo level).
PUBLIC_CALIBRATION_ROWS = 2048
PUBLIC_CALIBRATION_BOUND = 8.0


def resume_path(checkpoint: str) -> str:
    """The private resume file of a DP run writing ``checkpoint``.

    It holds what an exact resume needs (model/optimiser/EMA state, the accountant, the stage-1
    release, the DP frequency release and the **noise generator states**); with those states the
    DP noise could be recomputed and removed, so the file is as secret as the cohort: it stays with
    the custodian and is deleted when the final checkpoint has been written.
    """
    return f"{checkpoint}{RESUME_SUFFIX}"


def _data_digest(alleles: torch.Tensor, labels: torch.Tensor, phenotypes: torch.Tensor | None = None) -> str:
    """SHA-256 of the training rows, labels and phenotypes (kept only in the private resume file)."""
    h = hashlib.sha256()
    h.update(alleles.numpy().tobytes())
    h.update(labels.numpy().tobytes())
    if phenotypes is not None:
        h.update(phenotypes.numpy().tobytes())
    return h.hexdigest()


def _load_resume(path: str, *, checkpoint: str, expect: dict) -> dict:
    """Read and check a private resume file; raise :class:`InputError` naming the fix."""
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
    public_model: dict | None = None,
    seed: int | None = None,
    deterministic_noise: bool = False,
    checkpoint: str | None = None,
    resume: bool = False,
    log: Callable[[str], None] | None = None,
    callback: Callable[[str, int], None] | None = None,
    progress: bool = False,
) -> Generator:
    """Train the generator on ``cohort`` with (ε, δ)-DP for the whole run; return the :class:`Generator`.

    Parameters
    ----------
    cohort : Cohort
        The private training people (complete genotypes; labels in ``config.label_column``).
    config : GeneratorConfig, optional
        Model and optimisation; ``training.vae_epochs`` / ``dit_epochs`` are the DP-SGD epochs of
        the VAE and of stage 2 (each epoch = ``ceil(n / batch_size)`` Poisson steps). With
        ``phenotype_column`` (nobody missing) the DiT is case/control conditional, at no extra ε.
    privacy : PrivacyConfig, optional
        Budget and DP options (default ε = 10, δ = 1e-5).
    public_reference : Cohort, optional
        Public people (same variants) to train the VAE on, non-privately; the VAE then costs no
        budget. Their labels are not used (the VAE is trained with the null label).
    public_model : dict, optional
        A released public model to adapt (``cohort`` aligned to it): its architecture, VAE, DiT start and
        LD band are used, at no budget (:mod:`genosynth.training.transfer`).
    seed : int, optional
        Used only with ``deterministic_noise``. Every random draw, DP noise and Poisson sampling
        included, comes from one seed, which is a **secret**: whoever knows it can recompute the
        noise. By default it is drawn from the OS (:func:`genosynth.seeds.noise_seed`) and written
        nowhere, whatever ``seed`` says.
    deterministic_noise : bool
        Take ``seed`` as the noise seed (tests comparing runs; no guarantee against whoever knows it).
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
    progress : bool
        tqdm bars of the VAE and DiT epochs (counts only).

    Returns
    -------
    Generator : ``meta["privacy"]`` is the accountant's report (ε, δ, breakdown, events).

    Raises
    ------
    PrivacyError
        Impossible budget (before any training), or missing genotypes.
    InputError
        ``resume`` without a matching resume file; a resume file left by an interrupted run when
        ``resume`` is False; ``deterministic_noise`` without a ``seed``; an unaligned cohort.
    """
    config, privacy = config or GeneratorConfig(), privacy or PrivacyConfig()
    say, t_start = log or (lambda message: None), time.perf_counter()
    private_file = _check_run(cohort, public_reference, checkpoint=checkpoint, resume=resume, public_model=public_model,
                              config=config)  # before anything is planned or built
    config = config if public_model is None else adapt_config(config, public_model)
    public_vae = public_reference is not None or public_model is not None  # no VAE budget
    z_mult, plan, prior = plan_private(cohort, config=config, privacy=privacy, public_reference=public_vae)
    say(f"DP plan: target epsilon={privacy.epsilon:g}, delta={privacy.delta:g}; noise multipliers "
        + ", ".join(f"{k} {v:.3g}" for k, v in z_mult.items()))
    say("planned " + plan.summary(privacy.delta))
    secret = noise_seed(seed, deterministic=deterministic_noise)  # never recorded
    run = start_run(cohort, config, privacy, z_mult=z_mult, prior=prior, seed=secret, public_model=public_model,
                    public_reference=public_reference is not None, private_file=private_file, callback=callback)
    run.progress = progress
    if resume:
        resume_run(run, checkpoint, say)
    with deterministic():
        release_frequencies(run, cohort, say)  # 1. frequencies, label counts, ancestry spread (Gaussian)
        rows = public_rows(public_reference, run)  # (R_pub, V) or None
        fit_vae(run, rows, say)  # 2. VAE (DP-SGD, or public reference)
        mu, sd = private_latents(run, rows)  # (N, P, C, T) each, in memory only
        s1_s = fit_stage1(run, mu, sd)  # 3. stage-1 latent release (once) + its training
        s2_s = fit_stage2(run, mu, sd)  # 4. stage 2 (DP-SGD)
        del mu, sd
        say(f"DiT: stage 1 {privacy.stage1_epochs if run.S < run.T else 0} epochs on the release ({s1_s:.1f} s), "
            f"stage 2 {config.training.dit_epochs} DP-SGD epochs ({s2_s:.1f} s)")
        corr_state = release_correlation_prior(run, cohort)  # 5. LD prior (Gaussian)
        calibration = calibrate_released(run)  # 6. allele-frequency calibration (post-processing)
    payload = finish(run, cohort, corr_state=corr_state, calibration=calibration, checkpoint=checkpoint, say=say)
    model = Generator.from_payload(payload)
    model.meta["train_seconds"] = round(time.perf_counter() - t_start, 1)
    return model


def _check_run(cohort: Cohort, public_reference: Cohort | None, *, checkpoint: str | None,
               resume: bool, public_model: dict | None = None, config: GeneratorConfig) -> str | None:
    """Check the inputs and run files at the door; return the private resume file (None without a checkpoint)."""
    phenotype_column, fine_labels = config.phenotype_column, config.training.fine_labels
    if fine_labels != "off":
        raise InputError(f"training.fine_labels={fine_labels!r} stores exact per-population frequencies, which a DP "
                         "run cannot release; set it to \"off\" with --epsilon (the DP model draws each person's "
                         "ancestry from its released spread instead)")
    if public_model is not None:
        if phenotype_column:
            raise InputError("adapting a public model (--from-model) with a phenotype is not supported yet: the public "
                             "DiT has no phenotype embedding; drop --phenotype-column or --from-model")
        if public_reference is not None:
            raise InputError("give either a public reference cohort or a public model (--from-model), not both")
        if list(public_model["variants"]["id"]) != list(cohort.variants["id"]):
            raise InputError("the cohort must be aligned to the public model's variants first "
                             "(genosynth.training.transfer.align_to_model; the CLI does it for --from-model)")
        if bool(public_model["phased"]) != bool(cohort.phased) and public_model["n_classes"] == 2:
            raise InputError("the public model is a haplotype model and the cohort is unphased; phase the cohort "
                             "or use a genotype-mode public model")
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
    return private_file


@dataclass
class PrivateRun:
    """A DP run between its stages; :meth:`save_resume` writes what an exact resume needs.

    Holds private data (``x_person``, ``dosages``, ``released``) in memory only.
    """

    config: GeneratorConfig
    privacy: PrivacyConfig
    data: TrainingData
    x_person: torch.Tensor  # (N, P, V) int8, private
    y_person: torch.Tensor  # (N,) label index
    dosages: np.ndarray  # (N, V) float64 ALT dosages, private
    parents: dict[str, dict[str, str]]  # the panel's label hierarchy, public like the vocabulary
    z_mult: dict[str, float]  # event -> noise multiplier (the plan)
    vae: GenotypeVAE
    dit: DiT1D
    dit_cfg: DiTConfig
    diffusion: GaussianDiffusion
    vae_opt: torch.optim.Optimizer
    dit_opt: torch.optim.Optimizer
    s1_opt: torch.optim.Optimizer  # stage 1 (post-processing of the release): not in the checkpoint
    ema: EMA
    gen: torch.Generator  # Poisson sampling, DP-SGD and stage-1 noise, every torch draw: secret
    rng: np.random.Generator  # noise of the Gaussian releases: secret
    acc: PrivacyAccountant
    expect: dict  # what a resume must match: the plan depends on all of it
    private_file: str | None
    callback: Callable[[str, int], None] | None
    stage: str = "vae"  # "vae", "release" or "dit"
    epoch: int = 0
    rel: dict | None = None  # the frequency release (with the ancestry spread)
    released: torch.Tensor | None = None  # (R, C, T) the stage-1 latent release
    latent_scale: float = 1.0
    public_scale: float | None = None  # latent scale of an adapted public model (public)
    public_band: np.ndarray | None = None  # (L, V, W_pub) the public model's LD band per label (public)
    public_freq: np.ndarray | None = None  # (L, V) the public model's frequencies per label, NaN rows (public)
    progress: bool = False  # tqdm bars of epochs and steps (counts only: no loss or other private value)
    p_person: torch.Tensor | None = None  # (N,) int64 phenotype, 0 control / 1 case, private; None = no phenotype

    def bar(self, total: int, desc: str, initial: int = 0):
        """A progress bar of ``total`` epochs, or None when bars are off."""
        return progress_bar(total, desc, self.progress, initial)

    @property
    def parts(self) -> dict:
        """What the resume file restores; the released checkpoint holds the same less ``s1_opt``."""
        return {"vae": self.vae, "vae_opt": self.vae_opt, "dit": self.dit, "dit_opt": self.dit_opt,
                "s1_opt": self.s1_opt, "ema": self.ema}

    @property
    def n(self) -> int:
        return self.x_person.shape[0]

    @property
    def per(self) -> int:
        """Rows per person (2 haplotypes, or 1 genotype row)."""
        return self.x_person.shape[1]

    @property
    def T(self) -> int:
        return self.config.diffusion.timesteps

    @property
    def S(self) -> int:
        """Stage split: stage 1 trains ``t >= S`` from the release, stage 2 ``t < S``."""
        return self.privacy.split(self.T)

    @property
    def q(self) -> float:
        """Poisson sampling rate of both DP-SGD stages."""
        return self.privacy.batch_size / self.n

    @property
    def steps_per_epoch(self) -> int:
        return int(math.ceil(1.0 / self.q))

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """``(P, C, T)`` of one person's latents."""
        return self.per, self.config.vae.latent_channels, self.vae.n_tokens

    def class_freqs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Allele-class frequencies of the release: overall (V, K) and per label (L, V, K)."""
        k = self.data.n_classes
        return _class_frequencies(self.rel["overall"], k), _class_frequencies(self.rel["freq"], k)

    @property
    def by_phenotype(self) -> bool:
        """Calibrate per (label, phenotype) group, to the released group frequencies."""
        return self.p_person is not None and self.config.phenotype_calibration

    def calibration_target(self) -> torch.Tensor:
        """What the calibration matches: released class frequencies per label (L, V, K) or per group (2L, V, K)."""
        if self.by_phenotype:
            return _class_frequencies(self.rel["group_freq"], self.data.n_classes)
        return self.class_freqs()[1]

    def save_resume(self, at_stage: str, at_epoch: int) -> None:
        """Write the private resume file (atomically), then call ``callback``."""
        if self.private_file:
            blob = {"format": RESUME_FORMAT, **self.expect, "stage": at_stage, "epoch": at_epoch,
                    "warning": "PRIVATE: holds the DP noise-generator states and per-person noisy latents; "
                               "never release this file (genosynth deletes it when training ends)",
                    "accountant": self.acc.state_dict(), "rel": self.rel, "released": self.released,
                    "latent_scale": self.latent_scale, **state_dicts(self.parts), "gen": self.gen.get_state(),
                    "rng": self.rng.bit_generator.state, "torch_rng": torch.get_rng_state()}
            save_checkpoint(self.private_file, blob)
        if self.callback is not None:
            self.callback(at_stage, at_epoch)


def start_run(cohort: Cohort, config: GeneratorConfig, privacy: PrivacyConfig, *, z_mult: dict[str, float],
              prior: PrivacyAccountant | None, seed: int, public_reference: bool, private_file: str | None,
              callback: Callable | None, public_model: dict | None = None) -> PrivateRun:
    """0. Training rows, noise generators seeded with the (secret) ``seed``, accountant, models, optimisers."""
    data = prepare_data(cohort, label_column=config.label_column, mode=config.mode,
                        phenotype_column=config.phenotype_column)
    data.case_fraction = None  # exact, so private: under DP the case fractions come from the frequency release
    tc = config.training
    n, v = cohort.n_samples, cohort.n_variants
    per = 2 if data.phased else 1  # rows per person
    x_person = data.alleles.reshape(n, per, v)  # (N, P, V) int8
    y_person = data.labels.reshape(n, per)[:, 0].clone()  # (N,)
    p_person = None if data.phenotypes is None else data.phenotypes.reshape(n, per)[:, 0].clone()  # (N,) private
    if p_person is not None and (p_person > 1).any():
        raise InputError(f"under --epsilon every person needs a {config.phenotype_column!r} value (whether it is "
                         "missing is itself private): remove the people without one (--remove) or drop "
                         "--phenotype-column")
    dosages = person_dosages(data.alleles, per)  # (N, V), private, in memory only
    parents = label_parents(cohort, config.label_column, data.vocabulary)
    gen = torch.Generator().manual_seed(int(seed))
    rng = np.random.default_rng([int(seed), 1])
    torch.manual_seed(int(seed))
    acc = PrivacyAccountant()
    if prior is not None:
        acc.extend(prior)
    vae, dit, dit_cfg = build_models(config, n_variants=v, n_classes=data.n_classes, n_labels=len(data.vocabulary),
                                     n_phenotypes=0 if p_person is None else 2)
    if public_model is not None:
        adopt_public_weights(vae, dit, public_model, data.vocabulary)  # public: no budget
    diffusion = GaussianDiffusion(config.diffusion)
    vae_opt = torch.optim.AdamW(vae.parameters(), lr=tc.vae_lr, weight_decay=tc.weight_decay)
    dit_opt = torch.optim.AdamW(dit.parameters(), lr=tc.dit_lr, weight_decay=tc.weight_decay)
    s1_opt = torch.optim.AdamW(dit.parameters(), lr=tc.dit_lr, weight_decay=tc.weight_decay)
    ema = EMA(dit, decay=tc.ema_decay, warmup=True)
    expect = {"config": config.to_dict(), "privacy_config": privacy.to_dict(), "n": n,
              "public_reference": public_reference, "digest": _data_digest(data.alleles, data.labels, p_person)}
    if public_model is not None:
        expect["public_model"] = _public_digest(public_model)
    run = PrivateRun(config=config, privacy=privacy, data=data, x_person=x_person, y_person=y_person,
                     dosages=dosages, parents=parents, z_mult=z_mult, vae=vae, dit=dit, dit_cfg=dit_cfg,
                     diffusion=diffusion, vae_opt=vae_opt, dit_opt=dit_opt, s1_opt=s1_opt, ema=ema, gen=gen,
                     rng=rng, acc=acc, expect=expect, private_file=private_file, callback=callback, p_person=p_person)
    if public_model is not None:  # the VAE is the public one: no VAE stage
        run.stage, run.public_scale = "release", float(public_model["latent_scale"])
        run.public_band = public_band(public_model, data.vocabulary, v)
        if privacy.public_frequencies:
            run.public_freq = public_label_frequencies(public_model, data.vocabulary)
    return run


def _public_digest(payload: dict) -> dict:
    """What identifies an adapted public model in the checkpoint: its labels and a SHA-256 of its weights."""
    h = hashlib.sha256()
    for part in ("vae", "dit"):
        for key, value in sorted(payload["state"][part].items()):
            h.update(key.encode())
            h.update(value.detach().cpu().numpy().tobytes())
    return {"labels": list(payload["labels"]), "sha256": h.hexdigest()}


def resume_run(run: PrivateRun, checkpoint: str, say: Callable[[str], None]) -> None:
    """Restore ``run`` from its private resume file: stage, accountant, releases, models, noise generators."""
    st = _load_resume(run.private_file, checkpoint=checkpoint, expect=run.expect)
    run.stage, run.epoch = st["stage"], int(st["epoch"])
    run.acc = PrivacyAccountant()
    run.acc.load_state_dict(st["accountant"])
    run.rel, run.released, run.latent_scale = st["rel"], st["released"], float(st["latent_scale"])
    load_state_dicts(run.parts, st)
    run.gen.set_state(st["gen"])
    run.rng.bit_generator.state = st["rng"]
    torch.set_rng_state(st["torch_rng"])
    say(f"Resumed the DP run from {run.private_file}: stage {run.stage}, epoch {run.epoch} (noise generators and "
        f"accountant restored: epsilon spent so far {run.acc.get_epsilon(run.privacy.delta):.4g})")


def release_frequencies(run: PrivateRun, cohort: Cohort, say: Callable[[str], None]) -> None:
    """1. Release per-label frequencies and counts, then the ancestry spread; set the VAE's biases from them.

    Done once: a resumed run has the release (and the VAE state) already.
    """
    if run.rel is not None:
        return
    privacy, vocabulary = run.privacy, run.data.vocabulary
    parent_index = None
    if "super_pop" in run.parents:
        names = sorted(set(run.parents["super_pop"].values()))
        parent_index = np.array([names.index(run.parents["super_pop"][lab]) for lab in vocabulary])
    if run.p_person is None:
        rel = release_label_frequencies(run.dosages, run.y_person.numpy(), len(vocabulary),
                                        noise_multiplier=run.z_mult["allele_frequencies"], rng=run.rng,
                                        accountant=run.acc, name="allele_frequencies", parents=parent_index,
                                        denoiser=privacy.frequency_denoiser, clip_fraction=privacy.frequency_clip,
                                        public_freq=run.public_freq, centre=privacy.frequency_centre)
    else:  # the same one release over (label, phenotype) groups: same sensitivity, same event
        rel = release_phenotype_frequencies(run.dosages, run.y_person.numpy(), run.p_person.numpy(), len(vocabulary),
                                            noise_multiplier=run.z_mult["allele_frequencies"], rng=run.rng,
                                            accountant=run.acc, name="allele_frequencies", parents=parent_index,
                                            denoiser=privacy.frequency_denoiser, clip_fraction=privacy.frequency_clip)
    if "rank" in rel:  # a function of the release only
        say(f"Frequency release denoised to rank {rel['rank']} of {len(vocabulary)} labels")
    if run.p_person is not None:  # likewise
        say(f"Frequency release over {2 * len(vocabulary)} (label, phenotype) groups: case/control contrast pooled "
            f"over labels, empirical-Bayes weight {rel['contrast_weight']:.3f}")
    k_spread = spread_dims(cohort, run.config.label_column, privacy)
    if k_spread > 0:  # directions and centres from the release above; one more Gaussian release
        rel["spread"] = release_ancestry_spread(
            run.dosages, run.y_person.numpy(), freq=rel["freq"], counts=rel["counts"], dims=k_spread,
            clip=privacy.ancestry_clip, noise_multiplier=run.z_mult["ancestry_spread"], rng=run.rng,
            accountant=run.acc, name="ancestry_spread", ploidy=2)
    run.rel = rel
    if run.public_scale is None or not privacy.public_biases:  # else the public decoder's own biases
        run.vae.init_biases(*run.class_freqs())  # (V, K), (L, V, K)


def public_rows(public_reference: Cohort | None, run: PrivateRun) -> torch.Tensor | None:
    """Training rows of the public reference cohort, int8 shape (R_pub, V) (None without one)."""
    if public_reference is None:
        return None
    config = run.config
    if config.label_column in public_reference.samples.columns:
        return prepare_data(public_reference, label_column=config.label_column, mode=config.mode).alleles
    g = public_reference.alleles if run.data.phased else public_reference.genotypes()
    return torch.from_numpy(np.ascontiguousarray(g, dtype=np.int8))


def fit_vae(run: PrivateRun, rows: torch.Tensor | None, say: Callable[[str], None]) -> None:
    """2. The VAE: DP-SGD, one person per clipped gradient, or plain training on public ``rows``."""
    tc = run.config.training
    t0 = time.perf_counter()
    if run.stage == "vae":
        run.vae.train()
        dp_vae = None
        if rows is None:
            dp_vae = DPSGD(_VAEPersonLoss(run.vae), run.vae_opt, noise_multiplier=run.z_mult["vae/dpsgd"],
                           max_grad_norm=run.privacy.max_grad_norm, expected_batch_size=run.privacy.batch_size,
                           rng=run.gen, accountant=run.acc, sample_rate=run.q, name="vae/dpsgd", n_samples=run.n,
                           max_physical_batch_size=run.privacy.max_physical_batch_size)
        every = max(1, int(tc.checkpoint_every))
        bar = run.bar(tc.vae_epochs, "VAE (DP-SGD)" if dp_vae is not None else "VAE (public)", run.epoch)
        while run.epoch < tc.vae_epochs:
            if dp_vae is not None:
                _vae_dp_epoch(run, dp_vae)
            else:
                _vae_public_epoch(run, rows)
            run.epoch += 1
            if bar is not None:
                bar.update(1)
            if run.epoch < tc.vae_epochs and run.epoch % every == 0:
                run.save_resume("vae", run.epoch)
        if bar is not None:
            bar.close()
        run.stage, run.epoch = "release", 0
    run.vae.eval()
    if run.public_scale is not None:
        say("VAE: the public model's (no training, no budget)")
        return
    say(f"VAE: {tc.vae_epochs} epochs ({'public reference' if rows is not None else 'DP-SGD'}), "
        f"{time.perf_counter() - t0:.1f} s")


def _vae_dp_epoch(run: PrivateRun, dp_vae: DPSGD) -> None:
    """One VAE epoch of DP-SGD steps on Poisson batches of people (labels dropped at random)."""
    null = len(run.data.vocabulary)
    for idx in dp_vae.batches(run.steps_per_epoch):
        b = idx.numel()
        yb = run.y_person[idx]
        drop = torch.rand(b, generator=run.gen) < run.config.vae.label_dropout
        yb = torch.where(drop, torch.full_like(yb, null), yb)
        eps = torch.randn(b, *run.latent_shape, generator=run.gen)  # (b, P, C, T)
        dp_vae.step(lambda fwd, x, y_, e: fwd(x, y_, e).mean(), (run.x_person[idx], yb, eps))


def _vae_public_epoch(run: PrivateRun, rows: torch.Tensor) -> None:
    """One plain VAE epoch over the shuffled public rows (null label)."""
    tc = run.config.training
    order = torch.randperm(rows.shape[0], generator=run.gen)
    for start in range(0, rows.shape[0], tc.vae_batch_size):
        xb = rows[order[start:start + tc.vae_batch_size]]
        yb = torch.full((xb.shape[0],), len(run.data.vocabulary), dtype=torch.long)
        out = run.vae(xb, yb, rng=run.gen)
        run.vae_opt.zero_grad(set_to_none=True)
        out["loss"].mean().backward()
        if tc.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(run.vae.parameters(), tc.grad_clip)
        run.vae_opt.step()


def private_latents(run: PrivateRun, rows: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and sd of every person's rows, scaled: float, shape (N, P, C, T) each (private).

    The scale comes from the public latents, or is 1 (a public choice: the KL term pulls latents
    towards N(0, I)).
    """
    cpu = torch.device("cpu")
    if rows is not None:
        run.latent_scale = latent_scale_of(*encode_posterior(run.vae, rows, cpu))
    else:  # the public model's scale, or 1
        run.latent_scale = run.public_scale if run.public_scale is not None else 1.0
    mu, sd = encode_posterior(run.vae, run.data.alleles, cpu)  # (R, C, T) each
    shape = (run.n, *run.latent_shape)
    return mu.reshape(shape) * run.latent_scale, sd.reshape(shape) * run.latent_scale


def fit_stage1(run: PrivateRun, mu: torch.Tensor, sd: torch.Tensor) -> float:
    """3. Release each person's latent once (noised at level ``S - 1``) and train stage 1 on it; seconds taken.

    mu, sd : float, shape (N, P, C, T).
    """
    privacy, tc = run.privacy, run.config.training
    run.dit.train()
    t0 = time.perf_counter()
    if run.stage == "release":
        if run.S < run.T and privacy.stage1_epochs > 0:
            z0 = mu + sd * torch.randn(mu.shape, generator=run.gen)  # (N, P, C, T)
            released = release_stage1_latents(z0, latent_clip=privacy.latent_clip,
                                              alpha_bar=float(run.diffusion.alphas_cumprod[run.S - 1]),
                                              rng=run.gen, accountant=run.acc, name="diffusion/stage1")
            run.released = released.reshape(run.n * run.per, *run.latent_shape[1:])  # (R, C, T): only the release now
            del z0
            bar = run.bar(privacy.stage1_epochs, "DiT stage 1 (release)")
            for _ in range(privacy.stage1_epochs):
                order = torch.randperm(run.released.shape[0], generator=run.gen)
                for start in range(0, run.released.shape[0], tc.dit_batch_size):
                    stage1_step(run, run.released[order[start:start + tc.dit_batch_size]])
                if bar is not None:
                    bar.update(1)
            if bar is not None:
                bar.close()
        run.stage, run.epoch = "dit", 0
        run.save_resume("dit", 0)
    return time.perf_counter() - t0


def stage1_step(run: PrivateRun, batch_rows: torch.Tensor) -> None:
    """One step of the stage-1 optimiser on released latents (t >= S, unconditional), then the EMA."""
    tc = run.config.training
    t1 = torch.randint(run.S, run.T, (batch_rows.shape[0],), generator=run.gen)
    loss = _stage1_loss(run.diffusion, run.dit, batch_rows, t1, release_step=run.S - 1,
                        null_label=run.dit_cfg.n_classes, rng=run.gen)
    run.s1_opt.zero_grad(set_to_none=True)
    loss.backward()
    if tc.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(run.dit.parameters(), tc.grad_clip)
    run.s1_opt.step()
    run.ema.update(run.dit)


def fit_stage2(run: PrivateRun, mu: torch.Tensor, sd: torch.Tensor) -> float:
    """4. DP-SGD on the DiT for t < S (label-conditional), with interleaved stage-1 steps; seconds taken.

    mu, sd : float, shape (N, P, C, T).
    """
    privacy, tc = run.privacy, run.config.training
    t0 = time.perf_counter()
    dp_dit = DPSGD(run.dit, run.dit_opt, noise_multiplier=run.z_mult["diffusion/stage2"],
                   max_grad_norm=privacy.max_grad_norm, expected_batch_size=privacy.batch_size, rng=run.gen,
                   accountant=run.acc, sample_rate=run.q, name="diffusion/stage2", n_samples=run.n,
                   max_physical_batch_size=privacy.max_physical_batch_size)
    diffusion = run.diffusion

    def stage2_loss(fwd, x0, yb, tb, noise, drop, *pheno):  # pheno: (phenotype, its own drop) of a phenotype model
        return _stage2_person_loss(diffusion, fwd, x0, yb, tb, noise, drop, *pheno).mean()

    every = max(1, int(tc.checkpoint_every))
    bar = run.bar(tc.dit_epochs, "DiT stage 2 (DP-SGD)", run.epoch) if run.stage == "dit" else None
    while run.stage == "dit" and run.epoch < tc.dit_epochs:
        for idx in dp_dit.batches(run.steps_per_epoch):
            b = idx.numel()
            x0 = mu[idx] + sd[idx] * torch.randn(b, *run.latent_shape, generator=run.gen)  # (b, P, C, T)
            tb = torch.randint(0, run.S, (b, run.per), generator=run.gen)
            noise = torch.randn(b, *run.latent_shape, generator=run.gen)  # (b, P, C, T)
            drop = torch.rand(b, generator=run.gen) < run.dit_cfg.class_dropout
            batch = (x0, run.y_person[idx], tb, noise, drop)
            if run.p_person is not None:  # the phenotype alone dropped too (ancestry-only condition for CFG),
                p_drop = run.dit_cfg.pheno_dropout if run.dit_cfg.class_dropout > 0 else 0.0  # as DiT1D's own drops
                batch += (run.p_person[idx], torch.rand(b, generator=run.gen) < p_drop)
            # per-sample gradients: the math attention batches under vmap (the fused CPU kernel has no
            # batching rule and falls back to a loop over samples)
            with sdpa_kernel([SDPBackend.MATH]):
                dp_dit.step(stage2_loss, batch)
            run.ema.update(run.dit)
            if run.released is not None and privacy.stage1_interleave:
                pick = torch.randint(0, run.released.shape[0], (tc.dit_batch_size,), generator=run.gen)
                stage1_step(run, run.released[pick])
        run.epoch += 1
        if bar is not None:
            bar.update(1)
        if run.epoch % every == 0 or run.epoch == tc.dit_epochs:
            run.save_resume("dit", run.epoch)
    if bar is not None:
        bar.close()
    run.dit.eval()
    run.released = None
    return time.perf_counter() - t0


def release_correlation_prior(run: PrivateRun, cohort: Cohort) -> dict | None:
    """5. The banded per-label SNP correlation, released (Gaussian) and shrunk by its known noise; a state dict.

    None when ``privacy.correlation_window`` is 0 (nothing released).
    """
    privacy, rel = run.privacy, run.rel
    if not privacy.correlation_window > 0:
        return None
    v = cohort.n_variants
    z = run.z_mult["correlation_prior"]
    window = int(min(privacy.correlation_window, max(1, v - 1)))
    clip = privacy.correlation_clip or math.sqrt(v * (window + 1)) / 4.0
    prior = fit_prior(cohort, label_column=run.config.label_column, labels=run.data.vocabulary, window=window,
                      noise_multiplier=z, clip=clip, center=2.0 * rel["freq"], accountant=run.acc, rng=run.rng,
                      name="correlation_prior")
    prior.info["n_per_label"] = {lab: float(cnt) for lab, cnt in zip(run.data.vocabulary, rel["counts"])}
    if run.public_band is not None:  # public baseline + shrunk DP correction (post-processing)
        prior.bands, prior.info["shrinkage"] = correct_public_prior(
            run.public_band, prior.bands, rel["freq"], rel["counts"], noise_multiplier=z, clip=clip)
        prior.window = int(prior.bands.shape[2])
        prior.info.update(public_baseline=True, copula_window=window)
    elif privacy.shrink_correlations:
        prior.bands, prior.info["shrinkage"] = shrink_correlation_bands(
            prior.bands, rel["freq"], rel["counts"], noise_multiplier=z, clip=clip)
    return prior.state_dict()


def calibrate_released(run: PrivateRun) -> torch.Tensor | None:
    """6. Logit corrections matching generated frequencies to the released ones (post-processing; EMA weights)."""
    tc = run.config.training
    if not (run.privacy.calibrate_frequencies and tc.calibration_rows > 0):
        return None
    target = run.calibration_target()  # (L, V, K), or (2L, V, K) per (label, phenotype) group
    public = run.public_scale is not None
    with run.ema.average_parameters(run.dit):
        # a sharp public decoder (--from-model): the correction is iterated, with a wider logit bound (a new label's
        # alleles the public panel hardly carries), on enough rows that it does not fit their Monte Carlo noise
        return calibrate_frequencies(run.vae, run.dit, run.diffusion, target, run.latent_scale,
                                     rows=max(tc.calibration_rows, PUBLIC_CALIBRATION_ROWS) if public else
                                     tc.calibration_rows, steps=tc.calibration_steps, rng=run.gen,
                                     dev=torch.device("cpu"), iters=30 if public else 1, by_phenotype=run.by_phenotype,
                                     bound=PUBLIC_CALIBRATION_BOUND if public else 3.0,
                                     sampler=run.config.sampling.sampler, eta=run.config.sampling.eta)


def _phenotype_head(run: PrivateRun) -> dict:
    """The checkpoint's phenotype fields (none without a phenotype): the case fractions are the DP release's."""
    if run.p_person is None:
        return {}
    vocabulary = run.data.vocabulary
    return {"phenotype_column": run.config.phenotype_column,
            "case_fraction": {lab: float(f) for lab, f in zip(vocabulary, run.rel["case_fraction"])},
            "calibration_by_phenotype": run.by_phenotype}


def finish(run: PrivateRun, cohort: Cohort, *, corr_state: dict | None, calibration: torch.Tensor | None,
           checkpoint: str | None, say: Callable[[str], None]) -> dict:
    """Check the spend, write the checkpoint (releases and weights only), delete the resume file; the payload."""
    privacy, acc, data = run.privacy, run.acc, run.data
    eps_total = acc.get_epsilon(privacy.delta)
    if eps_total > privacy.epsilon * (1 + 1e-9):
        raise PrivacyError(  # cannot happen when the plan was followed; a guard against future edits
            f"the run spent epsilon={eps_total:.4g} > --epsilon {privacy.epsilon:g}; nothing was written"
        )
    report = acc.report(privacy.delta)
    report["target_epsilon"] = privacy.epsilon
    say(acc.summary(privacy.delta))
    head = checkpoint_head(
        # the seed and the generator states would let anyone recompute (and remove) the DP noise:
        # under --epsilon neither is released
        config=run.config, dit_config=run.dit_cfg, seed=None, variants=cohort.variants, labels=data.vocabulary,
        label_mix={lab: float(m) for lab, m in zip(data.vocabulary, run.rel["mix"])},
        label_parents=run.parents, n_classes=data.n_classes, phased=data.phased, n_training_people=run.n,
        privacy=report, privacy_state=acc.state_dict(), privacy_config=privacy.to_dict(),
        privacy_noise_multipliers=dict(run.z_mult), public_reference=run.expect["public_reference"],
        correlation_prior=corr_state,
        ancestry_spread=run.rel.get("spread"),  # DP release (post-processed): directions, centres, covariances
        public_model=run.expect.get("public_model"),  # labels and weight digest of the adapted public model
        **_phenotype_head(run))
    state = {"stage": "done", "epoch": run.config.training.dit_epochs,
             **state_dicts({k: v for k, v in run.parts.items() if k != "s1_opt"}), "rng": None}
    payload = checkpoint_payload(head, curves={"vae": [], "dit": []},  # losses of private batches are private
                                 latent_scale=run.latent_scale, metrics={}, calibration=calibration, state=state)
    payload["copula_factors"] = payload_factors(payload, say, progress=run.progress)  # post-processing of the released model
    if checkpoint:
        save_checkpoint(checkpoint, payload)
        if run.private_file and os.path.exists(run.private_file):
            os.remove(run.private_file)  # the secret noise state must not outlive the run
    return payload
