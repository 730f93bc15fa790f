"""Planning a private run: :class:`PrivacyConfig`, the budget split over mechanisms, and noise calibration before training."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
import numpy as np
from genosynth.cohort import Cohort
from genosynth.errors import InputError, PrivacyError
from genosynth.models.config import GeneratorConfig
from genosynth.models.diffusion import GaussianDiffusion
from genosynth.privacy import MechanismSpec, PrivacyAccountant, calibrate_noise, plan_for_training
from genosynth.privacy.releases import check_frequency_options


#: Default shares of the standalone epsilons for ``train`` (``calibrate``'s meaning). The allele
#: frequencies get most: they set the decoder's label biases, the label mix and the frequency
#: calibration, which carry nearly all the ancestry of DP samples (the DP-SGD-trained DiT's label
#: conditioning carries little). Chosen on the 805-SNP development data at epsilon 10 (RESULTS.md):
#: frequency shares 0.15 / 0.30 / 0.50 / 0.70 gave TSTR 0.905 / 0.940 / 0.948 / 0.950, AATS
#: 0.766 / 0.632 / 0.604 / 0.588.
#: ``ancestry_spread`` (the within-label spread of ancestry,
#: :func:`genosynth.privacy.releases.release_ancestry_spread`) took 0.05 from the frequencies' 0.70.
#: With a public model (no VAE event) the frequencies already dominate: at epsilon 10 on the issue-19
#: benchmark their noise multiplier is 0.556 with share 0.65 and would be 0.543 with 0.95 (2 % less noise
#: for a DiT and LD band noisier by 37-38 %), so the shares are not changed there (RESULTS.md, session 11).
DP_TRAINING_SPLIT = {"vae/dpsgd": 0.10, "diffusion/stage2": 0.15, "correlation_prior": 0.05,
                     "allele_frequencies": 0.65, "ancestry_spread": 0.05, "snp_selection": 0.10}


@dataclass
class PrivacyConfig:
    """Options of a DP training run (saved, resolved, in the checkpoint)."""

    epsilon: float = 10.0  # total budget of the run (all mechanisms, composed)
    delta: float = 1e-5  # must lie in (0, 1/n)
    batch_size: int = 256  # expected Poisson batch size in people, both DP-SGD stages
    max_grad_norm: float = 1.0  # per-person gradient clip of VAE and DiT
    timesteps_split: int | None = None  # S: stage 1 trains t >= S from the release, stage 2 t < S; None = 0.99 T
    latent_clip: float = 4.0  # L2 bound of each person's (scaled) latent before the stage-1 release
    stage1_epochs: int = 20  # passes over the released latents (post-processing: costs no budget)
    stage1_interleave: bool = True  # one stage-1 step after every stage-2 DP step (keeps high t trained)
    correlation_window: int = 32  # band of the DP correlation prior (0 = no prior released)
    correlation_clip: float | None = None  # per-person L2 bound of the product vector; None = sqrt(V (window+1)) / 4
    budget_split: dict[str, float] | None = None  # shares of the standalone epsilons; None = DP_TRAINING_SPLIT
    max_physical_batch_size: int = 128  # per-sample gradients are computed in chunks of this many people
    shrink_correlations: bool = True  # empirical-Bayes shrinkage of the DP correlation band towards 0 (post-processing)
    calibrate_frequencies: bool = True  # calibrate generated allele frequencies to the DP per-label frequencies
    frequency_denoiser: str = "low_rank"  # post-processing of the frequency release: "low_rank" or "shrink" (per label)
    # per-person bound of the frequency release, fraction of sqrt(V); None: 1 (no clipping), or
    # privacy.releases.PUBLIC_CLIP_FRACTION for a release centred on a public model's frequencies
    frequency_clip: float | None = None
    # what each person's dosages are centred on in the frequency release: "one" (frequency 1/2) or, with a
    # public model, "public" (its frequencies of the person's label: less noise, RESULTS.md session 11)
    frequency_centre: str = "one"
    ancestry_dims: int = 4  # directions of the DP within-label ancestry spread (0 = not released; at most labels - 1)
    ancestry_clip: float = 3.0  # per-person bound of the ancestry coordinates, in sampling-noise norms
    public_frequencies: bool = True  # with a public model: denoise every label's frequencies towards it (its own label's, or for a new label the best mix of its labels)
    public_biases: bool = True  # with a public model: keep its decoder biases (False: re-set from the DP frequencies)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def split(self, T: int) -> int:
        """The stage split ``S`` for ``T`` timesteps."""
        s = int(round(0.99 * T)) if self.timesteps_split is None else int(self.timesteps_split)
        if not 1 <= s <= T:
            raise PrivacyError(f"timesteps_split S={s} must lie in [1, T={T}]; set S (e.g. {int(0.99 * T)}) or None")
        return s


def spread_dims(cohort: Cohort, label_column: str, privacy: "PrivacyConfig") -> int:
    """Directions of the ancestry-spread release: ``min(ancestry_dims, labels - 1)`` (0 = none).

    The label vocabulary is public (as for the label embeddings), so this is fixed before any release.
    """
    if privacy.ancestry_dims < 0:
        raise InputError(f"ancestry_dims={privacy.ancestry_dims} must be >= 0 (0 = no ancestry spread)")
    if privacy.ancestry_dims == 0 or label_column not in cohort.samples.columns:
        return 0
    if not privacy.ancestry_clip > 0:
        raise PrivacyError(f"ancestry_clip={privacy.ancestry_clip} must be > 0 (a multiple of the sampling-noise norm)")
    return int(min(privacy.ancestry_dims, len(np.unique(cohort.labels(label_column))) - 1, cohort.n_variants))


def _target_for_plan(cohort: Cohort, epsilon: float, delta: float) -> tuple[float, PrivacyAccountant | None]:
    """Budget left for this run once the input's own privacy report (e.g. DP SNP selection) is composed."""
    prior = cohort.meta.get("privacy") if isinstance(cohort.meta, dict) else None
    if not prior:
        return epsilon, None
    events = prior.get("events") if isinstance(prior, dict) else None
    if not events:
        raise PrivacyError(
            "the input cohort carries a privacy report without events; re-run the step that made it "
            "(e.g. `genosynth select --epsilon`) with this genosynth version so its mechanisms can be composed"
        )
    acc = PrivacyAccountant()
    acc.load_state_dict({"version": 1, "orders": list(acc.orders), "events": events})
    return epsilon, acc


def plan_private(cohort: Cohort, *, config: GeneratorConfig, privacy: PrivacyConfig,
                 public_reference: bool = False) -> tuple[dict[str, float], PrivacyAccountant, PrivacyAccountant | None]:
    """Calibrate the noise of every mechanism for ``privacy.epsilon`` before any training.

    Only public quantities enter: ``n``, the options and, when the input was itself produced by a
    DP step, that step's privacy report (composed here so the run's total meets ``epsilon``).

    Returns
    -------
    noise_multipliers : dict
        Event name -> noise multiplier ``z``.
    planned : PrivacyAccountant
        The planned events of this run alone.
    prior : PrivacyAccountant or None
        The input's own events.

    Raises
    ------
    PrivacyError
        When the budget cannot be met; the message names the fix.
    """
    n = cohort.n_samples
    diffusion = GaussianDiffusion(config.diffusion)
    T = config.diffusion.timesteps
    s = privacy.split(T)
    if privacy.batch_size > n:
        raise PrivacyError(f"--dp-batch-size {privacy.batch_size} exceeds the cohort size {n}; lower it")
    tc = config.training
    if (tc.dit_lr_schedule, tc.dit_warmup, tc.dit_target) != ("constant", 0, "sample"):
        raise PrivacyError(
            f"training.dit_lr_schedule={tc.dit_lr_schedule!r}, dit_warmup={tc.dit_warmup}, "
            f"dit_target={tc.dit_target!r}: the DP trainer does not support these yet; under --epsilon keep "
            "the defaults (\"constant\", 0, \"sample\")")
    check_frequency_options(privacy.frequency_denoiser, privacy.frequency_clip, privacy.frequency_centre)
    kwargs = dict(n_samples=n, epochs_vae=0 if public_reference else config.training.vae_epochs,
                  epochs_stage1=privacy.stage1_epochs if s < T else 0, epochs_stage2=config.training.dit_epochs,
                  batch_size=privacy.batch_size, timesteps_split=s, T=T,
                  alphas_cumprod=diffusion.alphas_cumprod.numpy(), latent_clip=privacy.latent_clip,
                  delta=privacy.delta, budget_split=privacy.budget_split or DP_TRAINING_SPLIT, public_reference=public_reference,
                  correlation_prior=privacy.correlation_window > 0, allele_frequencies=True,
                  ancestry_spread=spread_dims(cohort, config.label_column, privacy) > 0)
    target, prior = _target_for_plan(cohort, privacy.epsilon, privacy.delta)
    if prior is None:
        z, plan = plan_for_training(target_epsilon=target, **kwargs)
        return z, plan, None
    spent = prior.get_epsilon(privacy.delta)
    if spent >= privacy.epsilon:
        raise PrivacyError(
            f"the input cohort already used epsilon={spent:.3g} (its privacy report, e.g. DP SNP selection) "
            f"of --epsilon {privacy.epsilon:g}; raise --epsilon or select SNPs on public data"
        )
    # re-calibrate with the input's events as fixed mechanisms: the total then meets --epsilon
    _, planned = plan_for_training(target_epsilon=privacy.epsilon, **kwargs)  # raises if impossible alone
    z, own = _compose_with_input(planned, prior, privacy, n_samples=n, spent=spent)
    return z, own, prior


def _compose_with_input(planned: PrivacyAccountant, prior: PrivacyAccountant, privacy: PrivacyConfig, *,
                        n_samples: int, spent: float) -> tuple[dict[str, float], PrivacyAccountant]:
    """Noise multipliers of this run's mechanisms calibrated together with the input's fixed ones.

    Returns the multipliers and the planned events of this run alone (the input's stay in ``prior``).
    """
    split = privacy.budget_split or DP_TRAINING_SPLIT
    specs = []
    for ev in planned.events:
        if ev["kind"] == "stage1":
            specs.append(MechanismSpec(ev["name"], "stage1", count=ev["count"], sample_rate=ev["sample_rate"],
                                       latent_clip=ev["latent_clip"], alpha_bar=ev["alpha_bar"]))
        else:
            specs.append(MechanismSpec(ev["name"], ev["kind"], count=ev["count"], sample_rate=ev.get("sample_rate", 1.0),
                                       share=float(split[ev["name"]])))
    for ev in prior.events:
        if ev["kind"] not in ("gaussian", "subsampled_gaussian", "top_k"):
            raise PrivacyError(
                f"the input's privacy event {ev['name']!r} ({ev['kind']}) cannot be composed into a training plan; "
                "select SNPs with `genosynth select --epsilon` or on public data"
            )
        specs.append(MechanismSpec(f"input:{ev['name']}", ev["kind"], count=ev["count"],
                                   sample_rate=ev.get("sample_rate", 1.0), noise_multiplier=ev["noise_multiplier"],
                                   k=ev.get("k", 1)))
    try:
        cal = calibrate_noise(specs, target_epsilon=privacy.epsilon, delta=privacy.delta, n_samples=n_samples)
    except PrivacyError as exc:
        raise PrivacyError(
            f"--epsilon {privacy.epsilon:g} cannot cover this run after the input's own epsilon={spent:.3g} "
            f"({exc}); raise --epsilon, lower the epochs, or select SNPs on public data"
        ) from None
    z = {k: v for k, v in cal.noise_multipliers.items() if not k.startswith("input:")}
    own = PrivacyAccountant()
    for spec in specs:
        if not spec.name.startswith("input:"):
            spec.record(own, z[spec.name] if spec.share is not None else None)
    return z, own
