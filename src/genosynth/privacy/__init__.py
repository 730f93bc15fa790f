"""Differential privacy for genosynth: one accountant, the mechanisms, and a plain DP-SGD step.

See ``docs/privacy.md`` for the threat model and what each guarantee covers.
"""

from genosynth.privacy.accountant import (
    DEFAULT_BUDGET_SPLIT,
    RDP_ORDERS,
    Calibration,
    MechanismSpec,
    PrivacyAccountant,
    TrainingPlan,
    calibrate_noise,
    check_delta,
    plan_for_training,
    rdp_to_epsilon,
    stage1_noise_multiplier,
)
from genosynth.privacy.releases import release_ancestry_spread
from genosynth.privacy.dpsgd import DPSGD, clip_and_sum, per_sample_grads, poisson_batches
from genosynth.stats.frequency import allele_frequencies
from genosynth.stats.ld import band_to_dense, correlation_band
from genosynth.privacy.mechanisms import clip_rows, clipped_association_scores, gaussian_mechanism, noisy_top_k, release_stage1_latents, stage1_eps_to_standard_eps, stage1_training_pair
from genosynth.privacy.releases import dp_allele_frequencies, dp_correlation_prior

__all__ = [
    "DPSGD",
    "clip_and_sum",
    "per_sample_grads",
    "poisson_batches",
    "allele_frequencies",
    "band_to_dense",
    "clip_rows",
    "clipped_association_scores",
    "correlation_band",
    "dp_allele_frequencies",
    "dp_correlation_prior",
    "gaussian_mechanism",
    "noisy_top_k",
    "release_stage1_latents",
    "release_ancestry_spread",
    "stage1_eps_to_standard_eps",
    "stage1_training_pair",
    "DEFAULT_BUDGET_SPLIT",
    "RDP_ORDERS",
    "Calibration",
    "MechanismSpec",
    "PrivacyAccountant",
    "TrainingPlan",
    "calibrate_noise",
    "check_delta",
    "plan_for_training",
    "rdp_to_epsilon",
    "stage1_noise_multiplier",
]
