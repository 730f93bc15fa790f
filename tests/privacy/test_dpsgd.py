"""Tests of the plain DP-SGD step: it is ordinary training when the noise is off, clips to C,
adds noise of std zC/B, samples Poisson batches and records itself in the accountant."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from genosynth.errors import PrivacyError
from genosynth.privacy import DPSGD, PrivacyAccountant, clip_and_sum, per_sample_grads, poisson_batches


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.LayerNorm(16), nn.Linear(16, 3))


def mse(forward, x, y):
    return ((forward(x) - y) ** 2).mean()


def data(n=40, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=g), torch.randn(n, 3, generator=g)


def vanilla_step(model, opt, loss_fn, batch):
    opt.zero_grad()
    loss_fn(model, *batch).backward()
    opt.step()


@pytest.mark.parametrize("make_opt", [lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
                                      lambda p: torch.optim.Adam(p, lr=1e-2)])  # fmt: skip
def test_no_noise_no_clipping_equals_ordinary_training(make_opt):
    x, y = data()
    ref, dp_model = mlp(), mlp()
    opt_ref, opt_dp = make_opt(ref.parameters()), make_opt(dp_model.parameters())
    gen = torch.Generator().manual_seed(5)
    for idx in poisson_batches(40, 0.3, 6, rng=gen):
        if idx.numel() == 0:
            continue
        batch = (x[idx], y[idx])
        vanilla_step(ref, opt_ref, mse, batch)
        dp = DPSGD(dp_model, opt_dp, noise_multiplier=0.0, max_grad_norm=math.inf,
                   expected_batch_size=float(idx.numel()))  # fmt: skip
        dp.step(mse, batch)
    for p_ref, p_dp in zip(ref.parameters(), dp_model.parameters()):
        torch.testing.assert_close(p_dp, p_ref, rtol=1e-5, atol=1e-6)
    # and training moved the parameters (the comparison is not vacuous)
    assert not torch.allclose(next(mlp().parameters()), next(ref.parameters()))


def test_no_noise_equals_ordinary_training_on_tiny_dit():
    dit = pytest.importorskip("genosynth.models.dit")
    cfg = dit.DiTConfig(in_channels=2, n_tokens=8, patch_size=2, hidden=16, depth=1, heads=2, n_classes=2,
                        class_dropout=0.0, freq_dim=16)  # fmt: skip
    torch.manual_seed(0)
    model = dit.DiT1D(cfg)
    with torch.no_grad():  # leave the adaLN-Zero init so every parameter gets a gradient
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ref = copy.deepcopy(model)
    before = copy.deepcopy(model)
    g = torch.Generator().manual_seed(2)
    b = 5
    x = torch.randn(b, 2, 8, generator=g)
    t = torch.randint(0, 100, (b,), generator=g)
    lab = torch.randint(0, 2, (b,), generator=g)
    eps = torch.randn(b, 2, 8, generator=g)

    def loss(forward, x, t, lab, eps):  # per-sample randomness drawn outside
        return ((forward(x + eps, t, lab) - eps) ** 2).mean()

    opt_ref = torch.optim.SGD(ref.parameters(), lr=0.5)
    vanilla_step(ref, opt_ref, loss, (x, t, lab, eps))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    DPSGD(model, opt, noise_multiplier=0.0, max_grad_norm=math.inf, expected_batch_size=b).step(loss, (x, t, lab, eps))
    for (name, p), p_ref in zip(model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p, p_ref, rtol=1e-5, atol=1e-6, msg=name)
    moved = [float((p - p0).abs().max()) for p, p0 in zip(ref.parameters(), before.parameters())]
    assert sum(m > 1e-4 for m in moved) >= len(moved) // 2  # the step changed most tensors


def test_per_sample_gradients_match_one_by_one_backward():
    model = mlp()
    x, y = data(5)
    grads = per_sample_grads(model, mse, (x, y))
    for i in range(5):
        model.zero_grad()
        mse(model, x[i : i + 1], y[i : i + 1]).backward()
        for name, p in model.named_parameters():
            torch.testing.assert_close(grads[name][i], p.grad, rtol=1e-5, atol=1e-7)


def test_clipped_per_sample_norms_are_at_most_c():
    model = mlp()
    x, y = data(12)
    y = y * 50  # large losses -> gradient norms far above C
    grads = per_sample_grads(model, mse, (x, y))
    c = 0.5
    for i in range(12):
        one = {k: g[i : i + 1] for k, g in grads.items()}
        sums, norms = clip_and_sum(one, c)
        clipped = math.sqrt(sum(float(s.pow(2).sum()) for s in sums.values()))
        assert norms[0] > c
        assert clipped <= c
        assert clipped == pytest.approx(c, rel=1e-4)
    # small gradients are untouched
    sums, norms = clip_and_sum(grads, math.inf)
    for k in grads:
        torch.testing.assert_close(sums[k], grads[k].sum(0))


def _reference_clip_and_sum(grads, c):
    """The clip-and-sum of genosynth before its speed-up (float64 copies, ``einsum`` weighted sum)."""
    b = next(iter(grads.values())).shape[0]
    sq = torch.zeros(b, dtype=torch.float64)
    for g in grads.values():
        sq = sq + g.reshape(b, -1).to(torch.float64).pow(2).sum(dim=1)
    norms = sq.sqrt()
    margin = 1.0 + 16 * max(torch.finfo(g.dtype).eps for g in grads.values())
    factor = torch.clamp(c / (norms * margin + 1e-6), max=1.0)
    return {k: torch.einsum("b,b...->...", factor.to(g.dtype), g) for k, g in grads.items()}, norms


def test_fast_clip_and_sum_equals_the_reference_on_a_small_vae_and_chunks_do_not_matter():
    """Same norms, clip factors and clipped sums as the reference path, on the DP VAE's per-person loss."""
    from genosynth.models.checkpoint import build_models
    from genosynth.models.config import tiny_config
    from genosynth.training.private import _VAEPersonLoss

    vae, _, _ = build_models(tiny_config(), n_variants=40, n_classes=2, n_labels=3)
    loss = _VAEPersonLoss(vae)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 2, (9, 2, 40), generator=g, dtype=torch.int8)  # (B, P, V)
    y = torch.randint(0, 3, (9,), generator=g)
    eps = torch.randn(9, 2, vae.config.latent_channels, vae.n_tokens, generator=g)  # (B, P, C, T)
    batch = (x, y, eps)
    grads = per_sample_grads(loss, lambda fwd, *a: fwd(*a).mean(), batch)
    norms_ref = _reference_clip_and_sum(grads, 1.0)[1]
    c = float(norms_ref.median())  # about half the people are clipped
    sums, norms = clip_and_sum(grads, c)
    ref, _ = _reference_clip_and_sum(grads, c)
    torch.testing.assert_close(norms, norms_ref, rtol=1e-12, atol=0)
    for k in ref:
        torch.testing.assert_close(sums[k], ref[k], rtol=1e-5, atol=1e-7)
    # chunked per-sample gradients (max_physical_batch_size) sum to the same clipped gradient
    out = []
    for chunk in (2, 9):
        dp = DPSGD(loss, torch.optim.SGD(vae.parameters(), lr=0.1), noise_multiplier=0.0, max_grad_norm=c,
                   expected_batch_size=9.0, max_physical_batch_size=chunk)
        out.append(dp.private_grads(lambda fwd, *a: fwd(*a).mean(), batch))
    for k in ref:
        torch.testing.assert_close(out[0][k], ref[k] / 9.0, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(out[1][k], ref[k] / 9.0, rtol=1e-5, atol=1e-7)


def test_poisson_batch_sizes_have_the_right_mean_and_empty_batches_work():
    gen = torch.Generator().manual_seed(0)
    n, q, steps = 500, 0.04, 2000
    sizes = torch.tensor([len(b) for b in poisson_batches(n, q, steps, rng=gen)], dtype=torch.float64)
    sd = math.sqrt(n * q * (1 - q))
    assert abs(float(sizes.mean()) - n * q) < 4 * sd / math.sqrt(steps)
    assert float(sizes.std()) == pytest.approx(sd, rel=0.1)
    # tiny rate: many empty batches; a DP step on one adds noise only
    empty = [b for b in poisson_batches(20, 0.01, 50, rng=gen) if b.numel() == 0]
    assert empty
    model = mlp()
    before = [p.detach().clone() for p in model.parameters()]
    x, y = data(20)
    dp = DPSGD(model, torch.optim.SGD(model.parameters(), lr=0.1), noise_multiplier=1.0, max_grad_norm=1.0,
               expected_batch_size=0.2, rng=torch.Generator().manual_seed(1))  # fmt: skip
    dp.step(mse, (x[empty[0]], y[empty[0]]))
    assert all(not torch.equal(p, b) for p, b in zip(model.parameters(), before))


def test_added_noise_has_std_zc_over_b():
    model = nn.Linear(100, 100)  # 10100 gradient coordinates

    def zero_grad_loss(forward, x):
        return 0.0 * forward(x).sum()

    z, c, b = 1.3, 0.7, 8.0
    dp = DPSGD(model, torch.optim.SGD(model.parameters(), lr=0.1), noise_multiplier=z, max_grad_norm=c,
               expected_batch_size=b, rng=torch.Generator().manual_seed(0))  # fmt: skip
    grads = dp.private_grads(zero_grad_loss, (torch.randn(8, 100),))
    flat = torch.cat([g.flatten() for g in grads.values()])
    assert float(flat.std()) == pytest.approx(z * c / b, rel=0.03)
    assert abs(float(flat.mean())) < 4 * z * c / b / math.sqrt(flat.numel())


def test_steps_are_recorded_in_the_accountant_and_state_round_trips():
    acc = PrivacyAccountant()
    model = mlp()
    x, y = data(40)
    q = 0.25
    gen = torch.Generator().manual_seed(0)
    dp = DPSGD(model, torch.optim.SGD(model.parameters(), lr=0.05), noise_multiplier=1.1, max_grad_norm=1.0,
               expected_batch_size=q * 40, rng=torch.Generator().manual_seed(3), accountant=acc,
               sample_rate=q, n_samples=40, name="diffusion/stage2", max_physical_batch_size=4)  # fmt: skip
    for idx in dp.batches(7, rng=gen):
        dp.step(mse, (x[idx], y[idx]))
    with pytest.raises(PrivacyError, match="Poisson"):  # a batch not drawn by dp.batches
        dp.step(mse, (x[:10], y[:10]))
    assert acc.events[0]["count"] == 7
    assert acc.events == [{"name": "diffusion/stage2", "kind": "subsampled_gaussian", "noise_multiplier": 1.1,
                           "sample_rate": 0.25, "count": 7}]  # fmt: skip
    ref = PrivacyAccountant()
    ref.add_subsampled_gaussian("diffusion/stage2", noise_multiplier=1.1, sample_rate=0.25, steps=7)
    assert acc.get_epsilon(1e-5) == ref.get_epsilon(1e-5)
    state = dp.state_dict()
    noise_next = dp.private_grads(mse, (x[:0], y[:0]))
    dp2 = DPSGD(mlp(), torch.optim.SGD(model.parameters(), lr=0.05), noise_multiplier=1.1, max_grad_norm=1.0,
                expected_batch_size=q * 40, rng=torch.Generator().manual_seed(99), sample_rate=q,
                n_samples=40, name="diffusion/stage2")  # fmt: skip
    dp2.load_state_dict(state)
    assert dp2.steps == 7
    again = dp2.private_grads(mse, (x[:0], y[:0]))
    for k in noise_next:
        torch.testing.assert_close(again[k], noise_next[k])  # same noise stream after resume
    state["noise_multiplier"] = 0.5
    with pytest.raises(PrivacyError, match="resume with the settings"):
        dp2.load_state_dict(state)


def test_unsafe_settings_are_refused():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(PrivacyError, match="max-grad-norm"):
        DPSGD(model, opt, noise_multiplier=1.0, max_grad_norm=math.inf, expected_batch_size=4,
              rng=torch.Generator())  # fmt: skip
    with pytest.raises(PrivacyError, match="Generator"):
        DPSGD(model, opt, noise_multiplier=1.0, max_grad_norm=1.0, expected_batch_size=4)
    with pytest.raises(PrivacyError, match="sample_rate"):
        DPSGD(model, opt, noise_multiplier=1.0, max_grad_norm=1.0, expected_batch_size=4,
              rng=torch.Generator(), accountant=PrivacyAccountant())  # fmt: skip
    with pytest.raises(PrivacyError, match="n_samples"):
        DPSGD(model, opt, noise_multiplier=1.0, max_grad_norm=1.0, expected_batch_size=4,
              rng=torch.Generator(), accountant=PrivacyAccountant(), sample_rate=0.1)  # fmt: skip
    with pytest.raises(PrivacyError, match="cannot be accounted"):
        DPSGD(model, opt, noise_multiplier=0.0, max_grad_norm=1.0, expected_batch_size=4,
              accountant=PrivacyAccountant(), sample_rate=0.1, n_samples=40)  # fmt: skip
