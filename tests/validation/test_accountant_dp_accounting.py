"""Validation: our accountant against Google's dp-accounting (an independent implementation).

dp-accounting is a test-only dependency. Each case builds the same composition with
``dp_accounting.rdp.RdpAccountant`` (zero-out neighbours, ``REPLACE_SPECIAL``, same RDP orders)
and requires our ε to be within 1 % of it. A PLD cross-check confirms that our RDP ε is an
upper bound on the (tighter) PLD ε for DP-SGD.
"""

from __future__ import annotations

import pytest

dp_accounting = pytest.importorskip("dp_accounting")
from dp_accounting import (  # noqa: E402
    ComposedDpEvent,
    GaussianDpEvent,
    NeighboringRelation,
    PoissonSampledDpEvent,
    SelfComposedDpEvent,
    ZCDpEvent,
)
from dp_accounting.pld import PLDAccountant  # noqa: E402
from dp_accounting.rdp import RdpAccountant  # noqa: E402

from genosynth.privacy import RDP_ORDERS, MechanismSpec, PrivacyAccountant, calibrate_noise  # noqa: E402
from genosynth.privacy import stage1_noise_multiplier  # noqa: E402

REL = 0.01


def google_epsilon(event, delta):
    acc = RdpAccountant(list(RDP_ORDERS), NeighboringRelation.REPLACE_SPECIAL)
    acc.compose(event)
    return acc.get_epsilon(delta)


def dpsgd_event(q, z, steps):
    return SelfComposedDpEvent(PoissonSampledDpEvent(q, GaussianDpEvent(z)), steps)


@pytest.mark.parametrize(
    "q,z,steps,delta",
    [
        (0.01, 1.0, 1000, 1e-5),
        (0.004, 0.8, 10000, 1e-6),
        (0.05, 2.0, 200, 1e-5),
        (0.1, 0.6, 50, 1e-5),
        (0.001, 5.0, 100000, 1e-7),
        (0.5, 3.0, 20, 1e-6),
    ],
)
def test_subsampled_gaussian_matches_dp_accounting(q, z, steps, delta):
    ours = PrivacyAccountant()
    ours.add_subsampled_gaussian("dpsgd", noise_multiplier=z, sample_rate=q, steps=steps)
    theirs = google_epsilon(dpsgd_event(q, z, steps), delta)
    assert ours.get_epsilon(delta) == pytest.approx(theirs, rel=REL)


@pytest.mark.parametrize("z,count,delta", [(1.0, 1, 1e-5), (5.0, 10, 1e-6), (20.0, 3, 1e-8), (0.5, 2, 1e-5)])
def test_gaussian_composition_matches_dp_accounting(z, count, delta):
    ours = PrivacyAccountant()
    ours.add_gaussian("g", noise_multiplier=z, count=count)
    theirs = google_epsilon(SelfComposedDpEvent(GaussianDpEvent(z), count), delta)
    assert ours.get_epsilon(delta) == pytest.approx(theirs, rel=REL)


@pytest.mark.parametrize("n_vae,n_stage2,delta", [(2000, 3000, 1e-6), (500, 8000, 1e-5)])
def test_mixed_pipeline_composition_matches_dp_accounting(n_vae, n_stage2, delta):
    """VAE DP-SGD + stage-1 release + stage-2 DP-SGD + correlation + allele freqs + top-k."""
    latent_clip, alpha_bar = 3.0, 0.002
    z1 = stage1_noise_multiplier(latent_clip=latent_clip, alpha_bar=alpha_bar)
    ours = PrivacyAccountant()
    ours.add_subsampled_gaussian("vae/dpsgd", noise_multiplier=1.2, sample_rate=0.01, steps=n_vae)
    ours.add_stage1("diffusion/stage1", latent_clip=latent_clip, alpha_bar=alpha_bar, releases=2)
    ours.add_subsampled_gaussian("diffusion/stage2", noise_multiplier=1.0, sample_rate=0.02, steps=n_stage2)
    ours.add_gaussian("correlation_prior", noise_multiplier=15.0)
    ours.add_gaussian("allele_frequencies", noise_multiplier=30.0)
    ours.add_top_k("snp_selection", noise_multiplier=60.0, k=40)
    event = ComposedDpEvent([
        dpsgd_event(0.01, 1.2, n_vae),
        SelfComposedDpEvent(GaussianDpEvent(z1), 2),
        dpsgd_event(0.02, 1.0, n_stage2),
        GaussianDpEvent(15.0),
        GaussianDpEvent(30.0),
        ZCDpEvent(rho=40 * (2 / 60.0) ** 2 / 8),  # k picks of the exponential mechanism, eps0 = 2/z
    ])  # fmt: skip
    theirs = google_epsilon(event, delta)
    assert ours.get_epsilon(delta) == pytest.approx(theirs, rel=REL)
    # the per-mechanism breakdown matches too
    b = ours.breakdown(delta)
    assert b["diffusion/stage2"] == pytest.approx(google_epsilon(dpsgd_event(0.02, 1.0, n_stage2), delta), rel=REL)
    assert b["diffusion/stage1"] == pytest.approx(
        google_epsilon(SelfComposedDpEvent(GaussianDpEvent(z1), 2), delta), rel=REL)


def test_calibrated_plan_checked_by_dp_accounting():
    plan = [
        MechanismSpec("vae/dpsgd", "subsampled_gaussian", count=1500, sample_rate=0.02, share=0.3),
        MechanismSpec("diffusion/stage2", "subsampled_gaussian", count=2500, sample_rate=0.02, share=0.6),
        MechanismSpec("correlation_prior", "gaussian", share=0.1),
    ]
    cal = calibrate_noise(plan, target_epsilon=3.0, delta=1e-6)
    z = cal.noise_multipliers
    theirs = google_epsilon(ComposedDpEvent([
        dpsgd_event(0.02, z["vae/dpsgd"], 1500),
        dpsgd_event(0.02, z["diffusion/stage2"], 2500),
        GaussianDpEvent(z["correlation_prior"]),
    ]), 1e-6)  # fmt: skip
    assert theirs <= 3.0 * (1 + REL)
    assert cal.epsilon == pytest.approx(theirs, rel=REL)


@pytest.mark.parametrize("q,z,steps", [(0.01, 1.0, 1000), (0.05, 2.0, 200)])
def test_rdp_epsilon_upper_bounds_pld(q, z, steps):
    ours = PrivacyAccountant()
    ours.add_subsampled_gaussian("dpsgd", noise_multiplier=z, sample_rate=q, steps=steps)
    pld = PLDAccountant(NeighboringRelation.ADD_OR_REMOVE_ONE, value_discretization_interval=1e-3)
    pld.compose(dpsgd_event(q, z, steps))
    eps_pld = pld.get_epsilon(1e-5)
    eps_rdp = ours.get_epsilon(1e-5)
    assert eps_pld <= eps_rdp
    assert eps_rdp <= 1.6 * eps_pld  # RDP is loose, but not wildly
