"""DPM-Solver++ against DDIM and against the exact flow of a Gaussian (analytic denoiser)."""

import math

import numpy as np
import pytest
import torch

from genosynth.models.diffusion import DiffusionConfig, GaussianDiffusion
from genosynth.models.solvers import LAM_MIN, SAMPLERS, dpmpp_2m_sample, logsnr_sequence, sample_latents

MU, S = 1.5, 0.4  # data distribution N(MU, S^2) per coordinate


def gaussian_denoiser(diffusion: GaussianDiffusion):
    """Network returning the exact posterior mean E[x0 | x_t] of N(MU, S^2) data, in the diffusion's
    parametrisation (so the samplers meet an exact model)."""
    ab = diffusion.alphas_cumprod.float()

    def net(x, t, **cond):
        a = ab[t].sqrt().reshape(-1, 1, 1)  # (B, 1, 1)
        s = (1 - ab[t]).sqrt().reshape(-1, 1, 1)
        x0 = MU + a * S ** 2 / (a ** 2 * S ** 2 + s ** 2) * (x - a * MU)  # (B, C, L)
        eps = (x - a * x0) / s
        return {"eps": eps, "x0": x0, "v": a * eps - s * x0}[diffusion.config.prediction]

    return net


def flow_end(diffusion: GaussianDiffusion, x_T: torch.Tensor) -> torch.Tensor:
    """The probability-flow ODE's exact end point for Gaussian data: the standardised x_T mapped
    to N(MU, S^2) (the flow is affine and monotone per coordinate)."""
    ab = float(diffusion.alphas_cumprod[-1])
    m, v = math.sqrt(ab) * MU, ab * S ** 2 + 1 - ab
    return MU + S * (x_T - m) / math.sqrt(v)


@pytest.mark.parametrize("prediction", ["v", "eps", "x0"])
def test_first_order_equals_ddim(prediction):
    diffusion = GaussianDiffusion(DiffusionConfig(timesteps=200, schedule="cosine", prediction=prediction))
    net = gaussian_denoiser(diffusion)
    x_T = torch.randn(64, 3, 5, generator=torch.Generator().manual_seed(0))
    ddim = diffusion.ddim_sample(net, x_T.shape, steps=12, noise=x_T)
    dpm1 = dpmpp_2m_sample(diffusion, net, x_T.shape, steps=12, noise=x_T, order=1)
    assert torch.allclose(ddim, dpm1, atol=1e-5)


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_second_order_on_the_logsnr_grid_is_closer_to_the_exact_flow_than_ddim(schedule):
    diffusion = GaussianDiffusion(DiffusionConfig(timesteps=1000, schedule=schedule))
    net = gaussian_denoiser(diffusion)
    x_T = torch.randn(256, 2, 4, generator=torch.Generator().manual_seed(1))
    exact = flow_end(diffusion, x_T)
    for steps in (8, 10, 20):
        err_ddim = (diffusion.ddim_sample(net, x_T.shape, steps=steps, noise=x_T) - exact).abs().mean()
        err_dpm = (dpmpp_2m_sample(diffusion, net, x_T.shape, steps=steps, noise=x_T, spacing="logsnr",
                                   lam_min=LAM_MIN) - exact).abs().mean()
        assert err_dpm < 0.5 * err_ddim, (steps, float(err_dpm), float(err_ddim))
    # and it converges: many steps land on the exact flow
    many = dpmpp_2m_sample(diffusion, net, x_T.shape, steps=200, noise=x_T, spacing="logsnr")
    assert (many - exact).abs().mean() < 0.01


def test_logsnr_grid_runs_from_pure_noise_to_clean_evenly_in_log_snr():
    diffusion = GaussianDiffusion(DiffusionConfig(timesteps=1000, schedule="cosine"))
    ab = diffusion.alphas_cumprod.numpy()
    lam = 0.5 * np.log(ab / (1 - ab))
    for lam_min in (None, -4.0):
        seq = logsnr_sequence(diffusion, 10, lam_min=lam_min)
        assert seq[0] == 999 and seq[-1] == 0 and np.all(np.diff(seq) < 0) and 8 <= len(seq) <= 10
    assert len(logsnr_sequence(diffusion, 10, lam_min=-4.0)) == 10
    steps = np.diff(lam[logsnr_sequence(diffusion, 10, lam_min=-4.0)[1:]])  # after the first step: even
    assert steps.std() < 0.1 * steps.mean()
    assert lam[logsnr_sequence(diffusion, 10, lam_min=-4.0)[1]] == pytest.approx(-4.0, abs=0.1)
    assert list(logsnr_sequence(diffusion, 1)) == [999]


def test_sample_latents_dispatch_and_errors():
    diffusion = GaussianDiffusion(DiffusionConfig(timesteps=100))
    net = gaussian_denoiser(diffusion)
    x_T = torch.randn(8, 2, 3, generator=torch.Generator().manual_seed(2))
    for sampler in SAMPLERS:
        out = sample_latents(diffusion, net, x_T.shape, sampler=sampler, steps=4, noise=x_T)
        assert out.shape == x_T.shape and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="deterministic"):
        sample_latents(diffusion, net, x_T.shape, sampler="dpm++2m", steps=4, eta=1.0, noise=x_T)
    with pytest.raises(ValueError, match="use one of"):
        sample_latents(diffusion, net, x_T.shape, sampler="euler", steps=4, noise=x_T)
    with pytest.raises(ValueError, match="order"):
        dpmpp_2m_sample(diffusion, net, x_T.shape, steps=4, noise=x_T, order=3)


def test_same_seed_same_draw():
    diffusion = GaussianDiffusion(DiffusionConfig(timesteps=100))
    net = gaussian_denoiser(diffusion)
    a = dpmpp_2m_sample(diffusion, net, (4, 2, 3), steps=6, rng=torch.Generator().manual_seed(3))
    b = dpmpp_2m_sample(diffusion, net, (4, 2, 3), steps=6, rng=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
