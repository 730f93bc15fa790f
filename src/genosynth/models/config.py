"""The generator's one typed configuration (:class:`GeneratorConfig` and its sections), saved in every checkpoint."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from genosynth.models.diffusion import DiffusionConfig
from genosynth.errors import InputError
from genosynth.models.dit import DiTConfig
from genosynth.models.solvers import SAMPLERS
from genosynth.models.vae import VAEConfig
from genosynth.runtime import GLIBC_MMAP_THRESHOLD_MAX


DIT_LR_SCHEDULES = ("constant", "cosine")


DIT_TARGETS = ("sample", "mean")


@dataclass
class TrainingConfig:
    """Optimisation of both stages."""

    vae_epochs: int = 20  # passes over the training rows for the VAE
    vae_batch_size: int = 128  # rows per VAE step
    vae_micro_batch: int = 0  # plain VAE steps back-propagate this many rows at a time (same step, less memory; 0 = the whole batch)
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
    calibration_steps: int = 8  # sampler steps of those draws (as sampling.steps: the correction matches the sampler's latents)
    checkpoint_every: int = 10  # epochs between periodic checkpoints (when a path is given)
    label_shrinkage: bool = True  # shrink per-label allele frequencies toward their parent's by the labels' estimated divergence (few people per label)
    fine_labels: str = "off"  # populations inside the labels and each label's ancestry spread (training.calibration): "off", "auto" (the pop column, when its labels have <= fine_label_max_people people on median) or a column name (always)
    fine_label_max_people: int = 50  # "auto" stores fine-label corrections only when the fine labels are this thin (median people; 0 = always)
    fine_label_exponent: float = 0.5  # fine labels move w**exponent of the way from their parent's frequencies to their own (w: empirical-Bayes weight; 1 = posterior mean)
    fine_label_rank: int = -1  # fine labels' offsets kept along this many principal axes of the training people (-1: those above the noise edge; 0: per-SNP shrinkage by fine_label_exponent instead)
    precision: str = "fp32"  # forward passes of plain training: "fp32" or "bf16" (torch.autocast bfloat16)
    # plain training: after calibration, choose the default decoder temperature (<= 1) at which DiT draws decode as
    # sharply as the training rows' latents (training.calibration.fit_temperature; on in the chromosome configuration)
    fit_temperature: bool = False
    # plain DiT training draws timestep t with density proportional to t**power (0 = uniform; 1 = weighted towards the
    # high-noise steps, where long-range LD is decided; on in the chromosome configuration). DP training stays uniform.
    dit_timestep_power: float = 0.0
    # plain VAE training on the CPU keeps glibc's freed memory for its epochs (runtime.heap_reuse): no page zeroing of
    # its large tensors at every step (on in the chromosome configuration, with vae_micro_batch: 3x faster VAE steps at
    # 10^5 SNPs and a lower peak; alone, with whole batches, it costs about 2 GB more RSS there)
    heap_reuse: bool = False

    def __post_init__(self) -> None:
        if self.dit_lr_schedule not in DIT_LR_SCHEDULES:
            raise InputError(f"training.dit_lr_schedule={self.dit_lr_schedule!r}: use one of {', '.join(DIT_LR_SCHEDULES)}")
        if self.dit_target not in DIT_TARGETS:
            raise InputError(f"training.dit_target={self.dit_target!r}: use one of {', '.join(DIT_TARGETS)}")
        if self.dit_warmup < 0:
            raise InputError(f"training.dit_warmup={self.dit_warmup} must be >= 0 (optimiser steps; 0 = no warm-up)")
        if not 0 <= self.dit_timestep_power <= 4:
            raise InputError(f"training.dit_timestep_power={self.dit_timestep_power} must be in [0, 4] "
                             "(0 = uniform timesteps, 1 = density proportional to t)")
        if self.vae_micro_batch < 0:
            raise InputError(f"training.vae_micro_batch={self.vae_micro_batch} must be >= 0 (rows per pass; 0 = the whole batch)")
        if self.precision not in ("fp32", "bf16"):
            raise InputError(f"training.precision={self.precision!r}: use fp32 or bf16 (--precision)")


#: what checkpoints written before these sampling fields existed sampled with
LEGACY_SAMPLING = {"sampler": "ddim", "latent_steps": 24, "latent_lr": 0.05}


@dataclass
class SamplingConfig:
    """Defaults of :meth:`Generator.sample` (each can be overridden per call)."""

    steps: int = 8  # sampler steps (DiT passes); 8 DPM-Solver++ steps match 20 DDIM steps (RESULTS.md, issue 18)
    sampler: str = "dpm++2m"  # latent sampler (models.solvers.SAMPLERS): "dpm++2m" (DPM-Solver++, second order, deterministic) or "ddim"
    guidance: float = 1.0  # classifier-free guidance scale (1 = plain conditional)
    pheno_guidance: float | None = None  # phenotype models: separate CFG scale of case/control given ancestry (None = joint)
    eta: float = 0.0  # DDIM eta (0 deterministic given the starting noise)
    batch_size: int = 2048  # people per sampling batch
    argmax: bool = False  # take the most likely allele instead of drawing (loses diversity)
    temperature: float = 1.0  # decoder logit temperature
    pairing: str = "random"  # haplotype mode: "matched" pairs haplotypes close in latent PCs within a label, "random"
    corr_guidance: str = "auto"  # correlation-guided decoding (sampling.ld_guidance): auto (copula on sparse panels, else latent+copula)|none|copula|latent|latent+copula
    corr_window: int = 64  # training: copula band (SNPs) of the stored correlation prior
    corr_latent_window: int = 768  # training: latent-guidance band (SNPs, pairs <= 1 Mb) stored in the checkpoint
    latent_steps: int = 12  # latent guidance (decodings latent*): Adam steps on the latents (checkpoints before the field: 24)
    latent_lr: float = 0.1  # latent guidance: their learning rate (before: 0.05)
    ancestry_spread: bool = True  # DP models (released) and thin-population models (training.fine_labels): each person draws its own ancestry from the stored within-label spread
    fine_labels: bool = True  # models with fine-label corrections: draw people per fine label (pop) and decode them with its correction
    ancestry_spread_scale: float = 1.0  # multiplies the stored ancestry covariance when drawing each person's ancestry (thin data: 0.5 measured best, RESULTS.md)
    precision: str = "fp32"  # DiT passes while sampling: fp32 (bit-reproducible) or bf16 (autocast; faster where the CPU has AMX or on GPUs)

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise InputError(f"sampling.sampler={self.sampler!r}: use one of {', '.join(SAMPLERS)}")
        if self.precision not in ("fp32", "bf16"):
            raise InputError(f"sampling.precision={self.precision!r}: use fp32 or bf16 (--precision)")


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
            training=TrainingConfig(**d["training"]),
            sampling=SamplingConfig(**{**LEGACY_SAMPLING, **d["sampling"]}),  # fields older checkpoints lack
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


#: above this many SNPs ``size="auto"`` takes :func:`chromosome_config`
CHROMOSOME_SNPS = 10_000

#: the DiT sees at most this many tokens (its patch grows with the chromosome); attention stays cheap.
#: 400 gives 100,000 SNPs a DiT patch of 4 (was 5 with 320, 7 with 256): the DiT couples the VAE tokens
#: of one patch more tightly than real haplotypes are coupled, so pairs straddling a patch edge and pairs
#: inside one differ; a finer patch narrows that gap (40-100 kb: 0.071 at patch 5, 0.037 at patch 4 on a
#: 312-token test bed, at 1.2x its DiT training time; 0.022 for a full-length 100,000-SNP model with patch
#: 4, every other item-2 figure of issue 17 kept; benchmarks/RESULTS.md, sessions 17-18)
MAX_DIT_TOKENS = 400

def vae_micro_batch(n_variants: int, batch: int) -> int:
    """Rows per VAE backward pass of the chromosome configuration: the largest power of two whose (rows, 2, V)
    float32 tensor fits glibc's largest mmap threshold (:data:`genosynth.runtime.GLIBC_MMAP_THRESHOLD_MAX`), so
    its temporaries come from the heap (with ``training.heap_reuse``, about 3x faster VAE steps at 100,000 SNPs
    and 0.9 GiB less RSS: RESULTS.md, session 20), or 0 (the whole batch) when the batch fits.

    >>> vae_micro_batch(20_000, 128), vae_micro_batch(50_000, 128), vae_micro_batch(100_000, 128)
    (0, 64, 32)
    """
    rows = GLIBC_MMAP_THRESHOLD_MAX // (8 * max(1, n_variants))
    return 0 if rows >= batch else 2 ** max(0, int(math.log2(max(1, rows))))

SIZES = ("auto", "default", "dense", "chromosome", "tiny")


def chromosome_config(n_variants: int, **sections) -> GeneratorConfig:
    """A configuration whose cost grows linearly with the SNP count (10^4-10^5+ SNPs per model).

    Against the default: the VAE maps SNPs to tokens with per-SNP allele vectors and batched
    matmuls (``embedding="direct"``, width 64; about 1.3K multiply-adds per SNP and row), the DiT
    patch grows so that it sees at most :data:`MAX_DIT_TOKENS` tokens, training runs fewer epochs
    (each row carries many more SNPs), and decoding uses the banded copula alone over a 64-SNP band
    (latent guidance costs a decoder pass per step; ``--corr-guidance latent+copula`` still works).

    Two choices keep more LD (benchmarks/RESULTS.md, "Chromosome configuration: where LD was
    lost"): every SNP is also embedded into and read out from the adjacent token nearer to it
    (``vae.neighbour``), so SNPs either side of a 64-SNP token boundary share latents; and the DiT
    takes 64 latents per step (four times the optimiser steps of the same epochs, at about the same
    cost per epoch).

    The DiT's blocks carry a per-token MLP of width 128 that reads its token and both neighbours
    (``dit.local_mlp``, ``dit.local_window``; RESULTS.md, "Why the DiT lost LD"): shared weights
    cannot hold every window's own haplotypes, and DiT latents then decode blurred (session 11, on
    5,000 SNPs: held-out r² ratio 0.75 / 0.69 / 0.53 / 0.61 -> 0.91 / 0.91 / 0.90 / 0.73 with the
    copula, AATS 0.65 -> 0.59). Its parameters grow linearly with the SNP count.

    The decoder temperature is fitted after training (``training.fit_temperature``): the DiT's draws
    still decode more blurred than real latents, and sharpening them to the training rows' entropy
    keeps more LD (RESULTS.md, "A fitted decoder temperature", session 14). Latents are drawn with
    20 stochastic DDIM steps (``eta=1``) instead of 8 deterministic DPM-Solver++ steps: the long-range
    structure is decided at high noise, and deterministic steps of an imperfect DiT lose it (100,000
    SNPs: held-out r² ratio 0.1-1 Mb 0.74 -> 0.89; same RESULTS section), at 2.5x the DiT passes;
    ``--sampler dpm++2m --steps 8`` is the fast option. For the same reason the DiT trains with
    timesteps drawn with density proportional to t (``training.dit_timestep_power=1``), half again
    as many high-noise steps as uniform draws (5,000-SNP window, two training seeds: 0.1-1 Mb
    0.78 -> 0.82; 100,000 SNPs from scratch: 0.88 -> 0.94, the other bins and AATS kept; RESULTS.md,
    "100,000 SNPs trained from scratch with today's configuration").
    """
    vae = VAEConfig(embedding="direct", width=64, patch=64, latent_channels=8, blocks=2, neighbour=True)
    tokens = math.ceil(max(1, n_variants) / vae.patch)
    patch_size = max(2, math.ceil(tokens / MAX_DIT_TOKENS))
    cfg = GeneratorConfig(
        vae=vae,
        dit=DiTConfig(hidden=64, depth=3, heads=4, patch_size=patch_size, local_mlp=128, local_window=1),
        training=TrainingConfig(vae_epochs=8, dit_epochs=60, dit_batch_size=64, calibration_rows=256,
                                calibration_steps=20, fit_temperature=True, dit_timestep_power=1.0,
                                heap_reuse=True,
                                vae_micro_batch=vae_micro_batch(n_variants, TrainingConfig.vae_batch_size)),
        sampling=SamplingConfig(sampler="ddim", steps=20, eta=1.0, corr_guidance="copula", corr_latent_window=64,
                                batch_size=256),
    )
    return cfg.replace(**sections) if sections else cfg


def dense_config(**sections) -> GeneratorConfig:
    """The default configuration for a dense region (up to :data:`CHROMOSOME_SNPS` SNPs, many of them
    within a copula band: :func:`genosynth.models.ld_prior.dense_panel`).

    Against the default: the DiT's blocks carry the per-token MLP of :func:`chromosome_config`
    (``dit.local_mlp``), which keeps more of the region's LD in the latents (benchmarks/RESULTS.md,
    issue 18, session 12: on the simulated dense region ``sim3kx``, LD r within 0.762 against 0.729,
    AATS 0.569 against 0.581, with the same ``auto`` decoding, latent steps and copula).
    ``--corr-guidance copula`` skips the latent steps: 6x faster at 5,000 SNPs, but LD r within 0.694
    and AATS 0.615 there.
    """
    cfg = GeneratorConfig().replace(dit={"local_mlp": 128, "local_window": 1})
    return cfg.replace(**sections) if sections else cfg


def config_for(size: str, n_variants: int, *, dense: bool = False) -> GeneratorConfig:
    """The configuration a ``--size`` names for a cohort of ``n_variants`` SNPs.

    ``auto`` is ``chromosome`` above :data:`CHROMOSOME_SNPS` SNPs; below, ``dense`` for a ``dense``
    region (:func:`genosynth.models.ld_prior.dense_panel`) and ``default`` for a panel of SNPs far apart.
    """
    if size not in SIZES:
        raise InputError(f"size {size!r}: use one of {', '.join(SIZES)}")
    if size == "tiny":
        return tiny_config()
    if size == "chromosome" or (size == "auto" and n_variants > CHROMOSOME_SNPS):
        return chromosome_config(n_variants)
    if size == "dense" or (size == "auto" and dense):
        return dense_config()
    return GeneratorConfig()


def config_for_variants(size: str, variants) -> GeneratorConfig:
    """:func:`config_for` resolved against a variant table (``chrom``, ``pos``): its SNP count and spacing."""
    from genosynth.models.ld_prior import dense_panel

    dense = size == "auto" and dense_panel(variants["chrom"].to_numpy(), variants["pos"].to_numpy())
    return config_for(size, len(variants), dense=dense)


def tiny_config(**sections) -> GeneratorConfig:
    """A very small configuration for tests and smoke runs (seconds on a CPU)."""
    cfg = GeneratorConfig(
        vae=VAEConfig(patch=8, snp_dim=4, width=32, latent_channels=4, blocks=1),
        dit=DiTConfig(hidden=32, depth=1, heads=2, patch_size=1),
        diffusion=DiffusionConfig(timesteps=50, schedule="cosine"),
        training=TrainingConfig(vae_epochs=2, dit_epochs=2, vae_batch_size=32, dit_batch_size=32,
                                checkpoint_every=1, calibration_rows=16, calibration_steps=5),
        sampling=SamplingConfig(steps=5, batch_size=64),
    )
    return cfg.replace(**sections) if sections else cfg
