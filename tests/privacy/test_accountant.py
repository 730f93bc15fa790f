"""Tests of the pipeline privacy accountant and the calibration of noise to a target ε."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import integrate, stats

from genosynth.errors import PrivacyError
from genosynth.privacy import (
    RDP_ORDERS,
    MechanismSpec,
    PrivacyAccountant,
    calibrate_noise,
    check_delta,
    plan_for_training,
    rdp_to_epsilon,
    stage1_noise_multiplier,
)

DELTA = 1e-5


def linear_alphas_cumprod(T=1000, beta_start=1e-4, beta_end=0.02):
    return np.cumprod(1.0 - np.linspace(beta_start, beta_end, T))


def dpsgd(z=1.0, q=0.01, steps=500, name="dpsgd"):
    acc = PrivacyAccountant()
    acc.add_subsampled_gaussian(name, noise_multiplier=z, sample_rate=q, steps=steps)
    return acc


# ----------------------------------------------------------------------------------------------
# single events
# ----------------------------------------------------------------------------------------------


def test_gaussian_rdp_is_closed_form_and_counts_compose():
    acc = PrivacyAccountant()
    acc.add_gaussian("g", noise_multiplier=2.0, count=3)
    orders = np.asarray(RDP_ORDERS)
    np.testing.assert_allclose(acc.rdp(), 3 * orders / 8.0)
    # one event of count 3 == three events of count 1 (merged into one entry)
    acc2 = PrivacyAccountant()
    for _ in range(3):
        acc2.add_gaussian("g", noise_multiplier=2.0)
    assert len(acc2.events) == 1 and acc2.events[0]["count"] == 3
    assert acc2.get_epsilon(DELTA) == acc.get_epsilon(DELTA)


def test_single_gaussian_epsilon_close_to_analytic_bound():
    # For one Gaussian mechanism, the RDP conversion must be no better than the exact (tight)
    # epsilon of Balle & Wang (2018) and not much worse.
    z = 5.0
    acc = PrivacyAccountant()
    acc.add_gaussian("g", noise_multiplier=z)
    eps_rdp = acc.get_epsilon(DELTA)

    def delta_of(eps, mu=1 / z):
        return stats.norm.cdf(-eps / mu + mu / 2) - math.exp(eps) * stats.norm.cdf(-eps / mu - mu / 2)

    from scipy.optimize import brentq

    eps_exact = brentq(lambda e: delta_of(e) - DELTA, 1e-6, 50)
    assert eps_exact <= eps_rdp <= 1.3 * eps_exact


@pytest.mark.parametrize("q,steps", [(0.01, 100), (0.05, 1000), (0.2, 10)])
def test_epsilon_grows_with_steps_and_shrinks_with_noise(q, steps):
    e = [dpsgd(z=1.0, q=q, steps=s).get_epsilon(DELTA) for s in (steps, 2 * steps, 4 * steps)]
    assert e[0] < e[1] < e[2]
    e = [dpsgd(z=z, q=q, steps=steps).get_epsilon(DELTA) for z in (0.7, 1.0, 2.0, 4.0)]
    assert e[0] > e[1] > e[2] > e[3] > 0


def test_stage1_noise_multiplier_formula():
    z = stage1_noise_multiplier(latent_clip=2.0, alpha_bar=0.2)
    assert z == pytest.approx(math.sqrt(0.8) / (math.sqrt(0.2) * 2.0))
    assert stage1_noise_multiplier(latent_clip=2.0, alpha_bar=0.2, replace_one=True) == pytest.approx(z / 2)
    # noisier release level (smaller alpha_bar) -> more noise per unit of signal
    assert stage1_noise_multiplier(latent_clip=2.0, alpha_bar=0.01) > z
    with pytest.raises(PrivacyError, match="latent-clip"):
        stage1_noise_multiplier(latent_clip=math.inf, alpha_bar=0.2)
    with pytest.raises(PrivacyError, match="alphas_cumprod"):
        stage1_noise_multiplier(latent_clip=1.0, alpha_bar=1.0)


def test_stage1_without_sampling_is_a_gaussian_composition():
    acc = PrivacyAccountant()
    acc.add_stage1("s1", latent_clip=1.5, alpha_bar=0.05, releases=4)
    ref = PrivacyAccountant()
    ref.add_gaussian("s1", noise_multiplier=stage1_noise_multiplier(latent_clip=1.5, alpha_bar=0.05), count=4)
    np.testing.assert_allclose(acc.rdp(), ref.rdp(), rtol=1e-12)


@pytest.mark.parametrize("alpha", [1.5, 2.0, 3.7, 8.0])
def test_stage1_sampled_rdp_matches_numerical_integration(alpha):
    # P = (1-q) point mass + q N(mu, 1), Q = (1-q) point mass + q N(0, 1): integrate P^a Q^(1-a)
    q, z = 0.1, 2.0
    mu = 1 / z
    f = lambda x: math.exp(alpha * stats.norm.logpdf(x, mu) + (1 - alpha) * stats.norm.logpdf(x))  # noqa: E731
    integral = (1 - q) + q * integrate.quad(f, -30, 30, points=[0.0, mu], epsabs=0, epsrel=1e-12, limit=200)[0]
    expected = math.log(integral) / (alpha - 1)
    acc = PrivacyAccountant(orders=[alpha])
    acc.events.append({"name": "s1", "kind": "stage1", "noise_multiplier": z, "sample_rate": q,
                       "latent_clip": 1.0, "alpha_bar": 0.5, "count": 1})  # fmt: skip
    assert acc.rdp()[0] == pytest.approx(expected, rel=1e-8)


def test_stage1_sampling_helps_less_than_dpsgd_amplification():
    z = 2.0
    alpha_bar = 1.0 / (1.0 + z * z)  # gives stage-1 multiplier z for latent_clip=1
    assert stage1_noise_multiplier(latent_clip=1.0, alpha_bar=alpha_bar) == pytest.approx(z)
    full = PrivacyAccountant()
    full.add_stage1("s1", latent_clip=1.0, alpha_bar=alpha_bar, releases=100)
    sampled = PrivacyAccountant()
    sampled.add_stage1("s1", latent_clip=1.0, alpha_bar=alpha_bar, releases=100, sample_rate=0.1)
    amplified = dpsgd(z=z, q=0.1, steps=100)
    e_full, e_sampled, e_amp = (a.get_epsilon(DELTA) for a in (full, sampled, amplified))
    assert e_amp < e_sampled < e_full


def test_top_k_is_k_gaussians():
    acc = PrivacyAccountant()
    acc.add_top_k("sel", noise_multiplier=10.0, k=50)
    ref = PrivacyAccountant()
    ref.add_gaussian("sel", noise_multiplier=10.0, count=50)
    np.testing.assert_allclose(acc.rdp(), ref.rdp())
    acc.add_zcdp("z", rho=0.25)
    np.testing.assert_allclose(acc.rdp(name="z"), 0.25 * np.asarray(RDP_ORDERS))


def test_breakdown_has_each_mechanism_and_a_total_below_the_sum():
    acc = dpsgd(z=1.0, q=0.02, steps=500, name="diffusion/stage2")
    acc.add_gaussian("correlation_prior", noise_multiplier=8.0)
    acc.add_stage1("diffusion/stage1", latent_clip=1.0, alpha_bar=0.02)
    acc.add_top_k("snp_selection", noise_multiplier=30.0, k=20)
    b = acc.breakdown(DELTA)
    assert list(b) == ["diffusion/stage2", "correlation_prior", "diffusion/stage1", "snp_selection", "total"]
    assert max(v for k, v in b.items() if k != "total") < b["total"] < sum(v for k, v in b.items() if k != "total")
    alone = dpsgd(z=1.0, q=0.02, steps=500).get_epsilon(DELTA)
    assert b["diffusion/stage2"] == pytest.approx(alone, rel=1e-12)
    report = json.loads(json.dumps(acc.report(DELTA)))  # report is JSON-serialisable
    assert report["epsilon"] == b["total"] and report["breakdown"] == b and report["delta"] == DELTA
    line = acc.summary(DELTA)
    assert f"epsilon={b['total']:.4g}" in line and "correlation_prior" in line


def test_empty_accountant_spends_nothing():
    assert PrivacyAccountant().get_epsilon(DELTA) == 0.0
    assert PrivacyAccountant().breakdown(DELTA) == {"total": 0.0}


def test_state_dict_round_trip_gives_identical_epsilon():
    acc = dpsgd(z=1.1, q=0.01, steps=300, name="vae/dpsgd")
    acc.add_stage1("diffusion/stage1", latent_clip=2.0, alpha_bar=0.01, releases=2, sample_rate=0.5)
    acc.add_top_k("snp_selection", noise_multiplier=20.0, k=10)
    text = acc.to_json()
    again = PrivacyAccountant.from_json(json.loads(json.dumps(text)))
    assert again.get_epsilon(DELTA) == acc.get_epsilon(DELTA)
    assert again.breakdown(DELTA) == acc.breakdown(DELTA)
    # resume: continue recording into the restored accountant
    again.add_subsampled_gaussian("vae/dpsgd", noise_multiplier=1.1, sample_rate=0.01, steps=10)
    assert again.events[0]["count"] == 310
    bad = acc.state_dict()
    bad["version"] = 99
    with pytest.raises(PrivacyError, match="version"):
        PrivacyAccountant().load_state_dict(bad)


def test_invalid_inputs_are_refused_with_fixes():
    acc = PrivacyAccountant()
    with pytest.raises(PrivacyError, match="noise multiplier"):
        acc.add_gaussian("g", noise_multiplier=0.0)
    with pytest.raises(ValueError, match="sample_rate"):
        acc.add_subsampled_gaussian("g", noise_multiplier=1.0, sample_rate=1.5)
    for bad in (0.0, 1.0, -1e-5, float("nan")):
        with pytest.raises(PrivacyError, match="delta"):
            acc.get_epsilon(bad)
    with pytest.raises(PrivacyError, match="--delta"):
        check_delta(1e-3, n_samples=2000)
    check_delta(1e-4, n_samples=2000)


def test_rdp_to_epsilon_picks_the_best_order():
    orders = [2.0, 10.0, 100.0]
    rdp = [0.5, 1.0, 50.0]
    eps, order = rdp_to_epsilon(orders, rdp, 1e-5)
    by_hand = [r + math.log1p(-1 / a) - math.log(1e-5 * a) / (a - 1) for a, r in zip(orders, rdp)]
    assert eps == pytest.approx(min(by_hand)) and order == 10.0


# ----------------------------------------------------------------------------------------------
# calibration
# ----------------------------------------------------------------------------------------------


def plan_specs(stage1_alpha_bar=0.001):
    return [
        MechanismSpec("vae/dpsgd", "subsampled_gaussian", count=2000, sample_rate=0.02, share=0.3),
        MechanismSpec("diffusion/stage1", "stage1", count=1, latent_clip=1.0, alpha_bar=stage1_alpha_bar),
        MechanismSpec("diffusion/stage2", "subsampled_gaussian", count=3000, sample_rate=0.02, share=0.5),
        MechanismSpec("correlation_prior", "gaussian", share=0.1),
        MechanismSpec("snp_selection", "top_k", k=50, share=0.1),
    ]


@pytest.mark.parametrize("target", [1.0, 4.0, 10.0])
def test_calibration_meets_target_within_slack(target):
    cal = calibrate_noise(plan_specs(), target_epsilon=target, delta=1e-6, n_samples=5000)
    assert cal.epsilon <= target
    assert cal.epsilon >= 0.97 * target
    assert cal.accountant.get_epsilon(1e-6) == pytest.approx(cal.epsilon)
    # standalone epsilons follow the shares of the calibrated mechanisms
    b = cal.standalone_epsilons
    assert b["diffusion/stage2"] / b["vae/dpsgd"] == pytest.approx(0.5 / 0.3, rel=0.03)
    assert b["correlation_prior"] / b["snp_selection"] == pytest.approx(1.0, rel=0.03)
    # the fixed stage-1 multiplier is the forward-process one
    assert cal.noise_multipliers["diffusion/stage1"] == pytest.approx(
        stage1_noise_multiplier(latent_clip=1.0, alpha_bar=0.001))


def test_calibrated_multipliers_are_monotone_in_the_target():
    z = [calibrate_noise(plan_specs(), target_epsilon=e, delta=1e-6).noise_multipliers["diffusion/stage2"]
         for e in (1.0, 3.0, 9.0)]  # fmt: skip
    assert z[0] > z[1] > z[2]


def test_impossible_budgets_are_refused_naming_the_fix():
    with pytest.raises(PrivacyError, match="raise --epsilon"):
        calibrate_noise(plan_specs(stage1_alpha_bar=0.5), target_epsilon=1.0, delta=1e-6)  # stage 1 alone too costly
    with pytest.raises(PrivacyError, match="stage split S"):
        calibrate_noise(plan_specs(stage1_alpha_bar=0.5), target_epsilon=1.0, delta=1e-6)
    with pytest.raises(PrivacyError, match="noise multiplier above"):
        calibrate_noise(plan_specs(stage1_alpha_bar=1e-7), target_epsilon=0.01, delta=1e-6)
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(PrivacyError, match="--epsilon"):
            calibrate_noise(plan_specs(), target_epsilon=bad, delta=1e-6)
    with pytest.raises(PrivacyError, match="1/n"):
        calibrate_noise(plan_specs(), target_epsilon=1.0, delta=1e-3, n_samples=5000)


def test_plan_for_training_end_to_end():
    ab = linear_alphas_cumprod()
    kw = dict(n_samples=2000, epochs_vae=10, epochs_stage1=100, epochs_stage2=20, batch_size=100,
              timesteps_split=900, T=1000, alphas_cumprod=ab, latent_clip=4.0, delta=1e-6)  # fmt: skip
    z, acc = plan_for_training(target_epsilon=2.0, snp_selection_k=100, **kw)
    assert set(z) == {"vae/dpsgd", "diffusion/stage1", "diffusion/stage2", "correlation_prior",
                      "allele_frequencies", "snp_selection"}  # fmt: skip
    assert 0.97 * 2.0 <= acc.get_epsilon(1e-6) <= 2.0
    steps = {ev["name"]: ev["count"] for ev in acc.events}
    assert steps["vae/dpsgd"] == 10 * 20 and steps["diffusion/stage2"] == 20 * 20
    assert steps["diffusion/stage1"] == 1  # one release; the 100 stage-1 epochs reuse it
    stage1 = next(ev for ev in acc.events if ev["name"] == "diffusion/stage1")
    assert stage1["alpha_bar"] == ab[899]
    # a public VAE removes the VAE mechanism; the rest get more budget
    z_pub, acc_pub = plan_for_training(target_epsilon=2.0, public_reference=True, snp_selection_k=100, **kw)
    assert "vae/dpsgd" not in z_pub and z_pub["diffusion/stage2"] < z["diffusion/stage2"]
    # refused before any training, with the fixes named
    with pytest.raises(PrivacyError, match="raise --epsilon"):
        plan_for_training(target_epsilon=0.05, **kw)
    with pytest.raises(PrivacyError, match="--delta"):
        plan_for_training(target_epsilon=2.0, **{**kw, "delta": 1e-3})


@pytest.mark.parametrize("q,z,alpha", [(0.5, 3.0, 1.3), (0.1, 0.6, 1.05), (0.1, 0.6, 1.5), (0.01, 1.0, 7.0)])
def test_subsampled_gaussian_rdp_matches_numerical_integration(q, z, alpha):
    # D_alpha((1-q) N(0, z^2) + q N(1, z^2) || N(0, z^2)), the dominating direction (Mironov et al.),
    # including fractional orders where dp-accounting's series gives up.
    from genosynth.privacy.accountant import _subsampled_gaussian_rdp

    def f(x):
        mix = np.logaddexp(math.log1p(-q) + stats.norm.logpdf(x, 0, z), math.log(q) + stats.norm.logpdf(x, 1, z))
        return math.exp(alpha * mix + (1 - alpha) * stats.norm.logpdf(x, 0, z))

    integral = integrate.quad(f, -40 * z, 40 * z, points=[0.0, 1.0], epsabs=0, epsrel=1e-12, limit=500)[0]
    ours = _subsampled_gaussian_rdp(q, z, 1, np.array([alpha]))[0]
    assert ours == pytest.approx(math.log(integral) / (alpha - 1), rel=1e-6)


def test_calibration_orders_are_a_subset_of_the_reporting_orders():
    # calibration is safe only if epsilon on the full grid can never exceed the search-grid epsilon
    from genosynth.privacy.accountant import _CALIBRATION_ORDERS

    assert set(_CALIBRATION_ORDERS) <= set(RDP_ORDERS)
    assert all(a > 1.01 for a in RDP_ORDERS) and list(RDP_ORDERS) == sorted(set(RDP_ORDERS))
