"""Tests of GaussianDiffusion and EMA.

The sampler math is checked without training by plugging in the exact optimal denoiser of a
Gaussian data distribution; a small MLP trained on a labelled 2-D mixture checks the
training loss and the samplers end to end.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from torch import nn

from genosynth.models.diffusion import DiffusionConfig, GaussianDiffusion, make_betas
from genosynth.models.ema import EMA, unwrap_model

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
torch.set_num_threads(1)


# -- fixtures: an exact denoiser and a small trainable network -------------------------------------


class GaussianOracle(nn.Module):
    """Optimal predictor for data x0 ~ N(mu[y], s[y]^2) per coordinate, in any parametrisation.

    With x_t = a x0 + b eps (a = sqrt(abar), b = sqrt(1 - abar)),
    E[eps | x_t] = b (x_t - a mu) / (a^2 s^2 + b^2) and E[x0 | x_t] = (x_t - b E[eps | x_t]) / a.
    """

    def __init__(self, diff: GaussianDiffusion, mu, s):
        super().__init__()
        self.diff = diff
        self.register_buffer("mu", torch.as_tensor(mu, dtype=torch.float32))
        self.register_buffer("s", torch.as_tensor(s, dtype=torch.float32))
        self.calls = 0

    def forward(self, x, t, y, pheno=None):
        self.calls += 1
        ab = self.diff.alphas_cumprod[t].float().view(-1, 1, 1)
        a, b = ab.sqrt(), (1 - ab).sqrt()
        m, sd = self.mu[y].view(-1, 1, 1), self.s[y].view(-1, 1, 1)
        eps = b * (x - a * m) / (ab * sd**2 + 1 - ab)
        x0 = (x - b * eps) / a
        pred = self.diff.config.prediction
        return eps if pred == "eps" else x0 if pred == "x0" else a * eps - b * x0

    def forward_with_cfg(self, x, t, y, pheno=None, *, scale):
        # "unconditional" = label 0, so that guidance has a closed form to compare against
        cond, unc = self(x, t, y), self(x, t, torch.zeros_like(y))
        return unc + scale * (cond - unc)


class ToyNet(nn.Module):
    """Small label-conditional MLP with the model call signature model(x, t, y, pheno)."""

    def __init__(self, dim=2, n_classes=2, hidden=64, freq=16):
        super().__init__()
        self.freq = freq
        self.inp = nn.Linear(dim + 2 * freq, hidden)
        self.y_emb = nn.Embedding(n_classes + 1, hidden)
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, x, t, y, pheno=None):
        B = x.shape[0]
        f = torch.exp(-math.log(1000.0) * torch.arange(self.freq) / self.freq)  # (F,)
        a = t.float()[:, None] * f[None]  # (B, F)
        h = self.inp(torch.cat([x.reshape(B, -1), a.sin(), a.cos()], 1)) + self.y_emb(y)  # (B, H)
        return self.out(h).reshape(x.shape)  # (B, 1, dim)


MU = [1.5, -2.0]
SD = [0.5, 0.2]


def oracle_samples(diff, sampler, n=4000, **kw):
    model = GaussianOracle(diff, MU, SD)
    y = torch.arange(n) % 2
    g = torch.Generator().manual_seed(0)
    x = sampler(model, (n, 1, 4), cond={"y": y}, rng=g, **kw)
    return x, y


def assert_moments(x, y, *, mean_tol, std_rtol):
    for k in (0, 1):
        xs = x[y == k]
        assert abs(xs.mean().item() - MU[k]) < mean_tol, (k, xs.mean().item())
        assert abs(xs.std().item() / SD[k] - 1) < std_rtol, (k, xs.std().item())


# -- schedule and forward process ----------------------------------------------------------------


def test_schedules():
    lin = make_betas("linear", 1000)
    assert lin[0] == pytest.approx(1e-4) and lin[-1] == pytest.approx(0.02)
    assert make_betas("linear", 100)[-1] == pytest.approx(0.2)  # scaled by 1000/T
    assert make_betas("linear", 20).max() == pytest.approx(0.999)  # capped: abar_T stays > 0
    short = GaussianDiffusion(DiffusionConfig(timesteps=20))
    assert short.alphas_cumprod[-1] > 0
    x = short.ddpm_sample(lambda x, t: 0.5 * x, (4, 1, 2), rng=torch.Generator().manual_seed(0))
    assert torch.isfinite(x).all()
    cos = make_betas("cosine", 1000)
    assert cos.max() <= 0.999 and (cos > 0).all()
    for sched in ("linear", "cosine"):
        d = GaussianDiffusion(DiffusionConfig(timesteps=1000, schedule=sched))
        ab = d.alphas_cumprod.numpy()
        assert (np.diff(ab) < 0).all() and ab[0] > 0.99 and ab[-1] < 1e-3
        np.testing.assert_allclose(d.sqrt_alphas_cumprod**2 + d.sqrt_one_minus_alphas_cumprod**2,
                                   1.0, atol=1e-12)
        assert d.alphas_cumprod_prev[0] == 1.0
        np.testing.assert_allclose(d.alphas_cumprod_prev[1:], ab[:-1])
    with pytest.raises(ValueError):
        DiffusionConfig(schedule="quadratic")


def test_q_sample_moments():
    d = GaussianDiffusion(DiffusionConfig(timesteps=1000))
    x0 = torch.full((20000, 1, 1), 2.0)
    t = torch.full((20000,), 300)
    xt = d.q_sample(x0, t, rng=torch.Generator().manual_seed(0))
    ab = d.alphas_cumprod[300].item()
    assert abs(xt.mean().item() - 2.0 * math.sqrt(ab)) < 0.02
    assert abs(xt.var().item() - (1 - ab)) < 0.02


# -- training loss -------------------------------------------------------------------------------


class Recorder(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(0.5))
        self.t = None

    def forward(self, x, t, y=None, pheno=None):
        self.t = t.clone()
        return self.w * x


def test_per_sample_losses_match_mean_and_sum():
    d = GaussianDiffusion(DiffusionConfig(timesteps=100, prediction="eps"))
    net = Recorder()
    x0 = torch.randn(16, 3, 5)
    kw = dict(cond={}, rng=None)
    per = d.training_loss(net, x0, reduction="none", **{**kw, "rng": torch.Generator().manual_seed(1)})
    mean = d.training_loss(net, x0, reduction="mean", **{**kw, "rng": torch.Generator().manual_seed(1)})
    tot = d.training_loss(net, x0, reduction="sum", **{**kw, "rng": torch.Generator().manual_seed(1)})
    assert per.shape == (16,)
    torch.testing.assert_close(per.mean(), mean)
    torch.testing.assert_close(per.sum(), tot)
    assert per.std() > 0  # really per sample
    # explicit t and noise give the closed form ||w x_t - eps||^2
    t = torch.arange(16)
    noise = torch.randn_like(x0)
    got = d.training_loss(net, x0, t=t, noise=noise, reduction="none")
    want = (0.5 * d.q_sample(x0, t, noise) - noise).pow(2).mean(dim=(1, 2))
    torch.testing.assert_close(got, want)


def test_t_range_restricts_timesteps():
    d = GaussianDiffusion(DiffusionConfig(timesteps=1000))
    net = Recorder()
    g = torch.Generator().manual_seed(0)
    seen = []
    for _ in range(20):
        d.training_loss(net, torch.randn(64, 1, 2), t_range=(600, 1000), rng=g)
        seen.append(net.t)
    seen = torch.cat(seen)
    assert int(seen.min()) >= 600 and int(seen.max()) <= 999
    assert int(seen.min()) < 620 and int(seen.max()) > 980  # covers the range
    low = d.sample_timesteps(5000, t_range=(0, 600), rng=g)
    assert int(low.max()) < 600 and int(low.min()) == 0
    with pytest.raises(ValueError):
        d.training_loss(net, torch.randn(4, 1, 2), t_range=(10, 5))
    with pytest.raises(ValueError):  # explicit t outside t_range
        d.training_loss(net, torch.randn(4, 1, 2), t=torch.full((4,), 700), t_range=(0, 600))


def test_timestep_power_weights_high_noise_steps_with_the_expected_density():
    """power=p draws t with density proportional to (t - lo)^p: the mean of t/T is (p+1)/(p+2) and
    the share above the midpoint 1 - 0.5^(p+1); within a t_range the draws stay inside it; power=0
    is the uniform draw, bit for bit, so default training is unchanged."""
    d = GaussianDiffusion(DiffusionConfig(timesteps=1000))
    g = torch.Generator().manual_seed(0)
    for p in (1.0, 2.0):
        t = d.sample_timesteps(100_000, rng=g, power=p).double()
        assert abs(float((t + 0.5).mean()) / 1000 - (p + 1) / (p + 2)) < 0.005
        assert abs(float((t >= 500).double().mean()) - (1 - 0.5 ** (p + 1))) < 0.005
    t = d.sample_timesteps(20_000, t_range=(100, 300), rng=g, power=1.0)
    assert int(t.min()) >= 100 and int(t.max()) == 299
    assert float(((t - 100).double() + 0.5).mean()) / 200 == pytest.approx(2 / 3, abs=0.01)
    a = d.sample_timesteps(50, rng=torch.Generator().manual_seed(3), power=0.0)
    assert torch.equal(a, torch.randint(0, 1000, (50,), generator=torch.Generator().manual_seed(3)))
    net = Recorder()
    d.training_loss(net, torch.randn(4000, 1, 2), rng=g, t_power=1.0)
    assert float((net.t >= 500).double().mean()) == pytest.approx(0.75, abs=0.03)
    with pytest.raises(ValueError, match="power"):
        d.sample_timesteps(4, power=-1.0)


def test_loss_is_reproducible_with_generator():
    d = GaussianDiffusion(DiffusionConfig(timesteps=50))
    net = Recorder()
    x0 = torch.randn(8, 2, 3)
    a = d.training_loss(net, x0, rng=torch.Generator().manual_seed(5), reduction="none")
    b = d.training_loss(net, x0, rng=torch.Generator().manual_seed(5), reduction="none")
    c = d.training_loss(net, x0, rng=torch.Generator().manual_seed(6), reduction="none")
    assert torch.equal(a, b) and not torch.equal(a, c)


# -- samplers with the exact denoiser ------------------------------------------------------------


@pytest.mark.parametrize("prediction", ["eps", "v"])
@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_ddpm_with_exact_denoiser_recovers_gaussian(schedule, prediction):
    d = GaussianDiffusion(DiffusionConfig(timesteps=1000, schedule=schedule, prediction=prediction))
    x, y = oracle_samples(d, d.ddpm_sample)
    assert_moments(x, y, mean_tol=0.03, std_rtol=0.04)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_ddim_with_exact_denoiser_follows_the_ode(schedule):
    # DDIM with eta=0 integrates the probability-flow ODE; for Gaussian data its exact map is
    # x0 = mu + s (x_T - sqrt(ab_T) mu) / sqrt(ab_T s^2 + 1 - ab_T), sample by sample.
    d = GaussianDiffusion(DiffusionConfig(timesteps=1000, schedule=schedule))
    n = 2000
    y = torch.arange(n) % 2
    xT = torch.randn(n, 1, 4, generator=torch.Generator().manual_seed(1))
    model = GaussianOracle(d, MU, SD)
    x = d.ddim_sample(model, (n, 1, 4), cond={"y": y}, steps=1000, noise=xT)
    abT = d.alphas_cumprod[-1].item()
    mu, s = torch.tensor(MU)[y].view(-1, 1, 1), torch.tensor(SD)[y].view(-1, 1, 1)
    exact = mu + s * (xT - math.sqrt(abT) * mu) / torch.sqrt(abT * s**2 + 1 - abT)
    assert (x - exact).abs().max().item() < 0.01
    assert model.calls == 1000
    # fewer steps: still close in distribution (the step-size bias shrinks the spread a bit)
    x200, y200 = oracle_samples(d, d.ddim_sample, steps=200)
    assert_moments(x200, y200, mean_tol=0.03, std_rtol=0.05)


def test_ddim_eta_one_equals_respaced_ddpm():
    d = GaussianDiffusion(DiffusionConfig(timesteps=1000))
    model = GaussianOracle(d, MU, SD)
    y = torch.arange(64) % 2
    a = d.ddim_sample(model, (64, 1, 3), cond={"y": y}, steps=40, eta=1.0,
                      rng=torch.Generator().manual_seed(2))
    b = d.ddpm_sample(model, (64, 1, 3), cond={"y": y}, steps=40,
                      rng=torch.Generator().manual_seed(2))
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert d.timestep_sequence(40)[0] == 999 and d.timestep_sequence(40)[-1] == 0
    assert len(d.timestep_sequence(40)) == 40


@pytest.mark.parametrize("prediction", ["x0", "v"])
def test_parametrisations_agree(prediction):
    eps_d = GaussianDiffusion(DiffusionConfig(timesteps=200, prediction="eps"))
    other = GaussianDiffusion(DiffusionConfig(timesteps=200, prediction=prediction))
    y = torch.arange(32) % 2
    xT = torch.randn(32, 1, 3, generator=torch.Generator().manual_seed(0))
    a = eps_d.ddim_sample(GaussianOracle(eps_d, MU, SD), (32, 1, 3), cond={"y": y}, steps=20,
                          noise=xT)
    b = other.ddim_sample(GaussianOracle(other, MU, SD), (32, 1, 3), cond={"y": y}, steps=20,
                          noise=xT)
    torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3)
    # the training target of the oracle is its own prediction at x0 = the mean, noise = 0
    t = torch.full((4,), 50)
    x0 = torch.full((4, 1, 3), MU[0])
    target = other.target(x0, torch.zeros_like(x0), t)
    pred = GaussianOracle(other, MU, SD)(other.q_sample(x0, t, torch.zeros_like(x0)), t,
                                         torch.zeros(4, dtype=torch.long))
    torch.testing.assert_close(pred, target, rtol=1e-4, atol=1e-4)


def test_guidance_calls_forward_with_cfg():
    # guidance w between label 0 ("null") and label 1 moves the mean to mu0 + w (mu1 - mu0)
    # at the final step; check the sign and that w=1 gives plain label-1 samples.
    d = GaussianDiffusion(DiffusionConfig(timesteps=200))
    model = GaussianOracle(d, [0.0, 1.0], [0.3, 0.3])
    y = torch.ones(2000, dtype=torch.long)
    plain = d.ddim_sample(model, (2000, 1, 1), cond={"y": y}, steps=50,
                          rng=torch.Generator().manual_seed(0))
    w1 = d.ddim_sample(model, (2000, 1, 1), cond={"y": y}, steps=50, guidance=1.0,
                       rng=torch.Generator().manual_seed(0))
    w3 = d.ddim_sample(model, (2000, 1, 1), cond={"y": y}, steps=50, guidance=3.0,
                       rng=torch.Generator().manual_seed(0))
    assert torch.equal(plain, w1)
    assert abs(plain.mean().item() - 1.0) < 0.03
    assert w3.mean().item() > 1.5  # pushed further from the unconditional mode
    with pytest.raises(ValueError, match="forward_with_cfg"):
        d.ddim_sample(lambda x, t, y: x, (2, 1, 1), cond={"y": y[:2]}, guidance=2.0)


def test_sampling_is_deterministic_given_seed_and_restores_train_mode():
    d = GaussianDiffusion(DiffusionConfig(timesteps=100))
    model = GaussianOracle(d, MU, SD).train()
    y = torch.arange(8) % 2
    for method, kw in (("ddpm", {}), ("ddim", {"eta": 0.5})):
        fn = d.ddpm_sample if method == "ddpm" else d.ddim_sample
        a = fn(model, (8, 2, 3), cond={"y": y}, rng=torch.Generator().manual_seed(7), **kw)
        b = fn(model, (8, 2, 3), cond={"y": y}, rng=torch.Generator().manual_seed(7), **kw)
        c = fn(model, (8, 2, 3), cond={"y": y}, rng=torch.Generator().manual_seed(8), **kw)
        assert torch.equal(a, b) and not torch.equal(a, c)
    assert model.training
    with pytest.raises(ValueError, match="one label per sample"):
        d.ddim_sample(model, (8, 2, 3), cond={"y": y[:4]})


def test_clip_x0_bounds_final_samples():
    d = GaussianDiffusion(DiffusionConfig(timesteps=100))
    model = GaussianOracle(d, [3.0, 3.0], [1.0, 1.0])
    x = d.ddim_sample(model, (500, 1, 2), cond={"y": torch.zeros(500, dtype=torch.long)},
                      steps=20, clip_x0=1.0, rng=torch.Generator().manual_seed(0))
    assert x.abs().max().item() <= 1.0 + 1e-5
    assert x.mean().item() > 0.9  # mass piles up at the clip bound


# -- end to end: train a small network on a labelled 2-D mixture ---------------------------------


def test_trained_toy_model_samples_per_label():
    torch.manual_seed(0)
    d = GaussianDiffusion(DiffusionConfig(timesteps=100))
    mus = torch.tensor([[-2.0, 1.0], [2.0, -1.0]])
    sds = torch.tensor([[0.5, 0.3], [0.3, 0.6]])
    net = ToyNet()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=600)
    ema = EMA(net, decay=0.99, warmup=True)
    g = torch.Generator().manual_seed(1)
    for _ in range(600):
        y = torch.randint(0, 2, (256,), generator=g)
        x0 = (mus[y] + sds[y] * torch.randn(256, 2, generator=g)).reshape(256, 1, 2)
        loss = d.training_loss(net, x0, cond={"y": y}, rng=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        ema.update(net)
    ema.copy_to(net)
    n = 2000
    y = torch.arange(n) % 2
    for x in (d.ddpm_sample(net, (n, 1, 2), cond={"y": y}, rng=g),
              d.ddim_sample(net, (n, 1, 2), cond={"y": y}, steps=50, rng=g)):
        x = x.reshape(n, 2)
        for k in (0, 1):
            m, s = x[y == k].mean(0), x[y == k].std(0)
            assert (m - mus[k]).abs().max() < 0.1, (k, m)
            assert ((s / sds[k]) - 1).abs().max() < 0.3, (k, s)


# -- EMA -----------------------------------------------------------------------------------------


def test_ema_update_copy_and_state_dict():
    net = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = EMA(net, decay=0.9)
    w0 = net[0].weight.detach().clone()
    with torch.no_grad():
        net[0].weight.add_(1.0)
    net[1].running_mean.fill_(5.0)
    ema.update(net)
    torch.testing.assert_close(ema.shadow["0.weight"], w0 + 0.1)
    torch.testing.assert_close(ema.shadow["1.running_mean"], torch.full((2,), 5.0))  # copied
    other = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema.copy_to(other)
    torch.testing.assert_close(other[0].weight, w0 + 0.1)
    # swapping in and out leaves the live weights untouched
    live = net[0].weight.detach().clone()
    with ema.average_parameters(net):
        torch.testing.assert_close(net[0].weight, w0 + 0.1)
    torch.testing.assert_close(net[0].weight, live)
    restored = EMA(other, decay=0.5)
    restored.load_state_dict(ema.state_dict())
    assert restored.decay == 0.9 and restored.num_updates == 1
    torch.testing.assert_close(restored.shadow["0.weight"], w0 + 0.1)
    with pytest.raises(ValueError, match="architecture"):
        EMA(nn.Linear(3, 2)).load_state_dict(ema.state_dict())


def test_ema_warmup_and_wrappers():
    from opacus.grad_sample import GradSampleModule

    net = nn.Linear(2, 2)
    ema = EMA(net, decay=0.999, warmup=True)
    assert ema.current_decay() == pytest.approx(0.1)
    gsm = GradSampleModule(net)
    assert unwrap_model(gsm) is net
    ema.update(gsm)  # keys of the wrapped model map to the plain ones
    assert ema.num_updates == 1 and ema.current_decay() == pytest.approx(2 / 11)
    gsm._close()


def test_sample_dispatch_and_fixed_large_variance():
    d = GaussianDiffusion(DiffusionConfig(timesteps=100))
    model = GaussianOracle(d, MU, SD)
    y = torch.arange(16) % 2
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    torch.testing.assert_close(d.sample(model, (16, 1, 2), cond={"y": y}, method="ddim", steps=10,
                                        eta=0.5, rng=g()),
                               d.ddim_sample(model, (16, 1, 2), cond={"y": y}, steps=10, eta=0.5,
                                             rng=g()))
    torch.testing.assert_close(d.sample(model, (16, 1, 2), cond={"y": y}, method="ddpm",
                                        steps=None, rng=g()),
                               d.ddpm_sample(model, (16, 1, 2), cond={"y": y}, rng=g()))
    with pytest.raises(ValueError, match="ddim"):
        d.sample(model, (16, 1, 2), cond={"y": y}, method="euler")
    # beta (upper bound) reverse variance spreads samples more than the posterior variance
    large = GaussianDiffusion(DiffusionConfig(timesteps=100, variance="fixed_large"))
    xs, ys = oracle_samples(d, d.ddpm_sample, n=2000)
    xl, yl = oracle_samples(large, large.ddpm_sample, n=2000)
    assert xl[yl == 1].std() > xs[ys == 1].std() * 1.1
