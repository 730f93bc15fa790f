"""Tests of the 1D Diffusion Transformer: shapes, adaLN-Zero init, CFG, per-sample gradients."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from genosynth.models.diffusion import DiffusionConfig, GaussianDiffusion
from genosynth.models.dit import (DIT_SIZES, DiT1D, DiTConfig, LabelEmbedder, LocalMlp, count_params,
                                  dit_from_name, sincos_pos_embed_1d)

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore:There is a performance drop:UserWarning",
                                        "ignore:Full backward hook:UserWarning")


def tiny(**kw) -> DiT1D:
    cfg = dict(in_channels=3, n_tokens=13, patch_size=4, hidden=32, depth=2, heads=4,
               n_classes=5, n_phenotypes=2, class_dropout=0.0)
    cfg.update(kw)
    return DiT1D(DiTConfig(**cfg))


def randomize(model: torch.nn.Module, seed: int = 0, std: float = 0.2) -> torch.nn.Module:
    """Move off the adaLN-Zero init so that every parameter influences the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


def inputs(B=6, C=3, L=13, seed=0, n_classes=5):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, C, L, generator=g)
    t = torch.randint(0, 1000, (B,), generator=g)
    y = torch.randint(0, n_classes, (B,), generator=g)
    pheno = torch.randint(0, 2, (B,), generator=g)
    return x, t, y, pheno


# -- shapes --------------------------------------------------------------------------------------


@pytest.mark.parametrize("C,L,p", [(3, 13, 4), (2, 7, 2), (4, 8, 8), (1, 5, 1), (8, 64, 2)])
@pytest.mark.parametrize("pos", ["sincos", "learned"])
def test_output_shape_any_length(C, L, p, pos):
    model = randomize(tiny(in_channels=C, n_tokens=L, patch_size=p, pos_embed=pos))
    x, t, y, pheno = inputs(C=C, L=L)
    out = model(x, t, y, pheno)
    assert out.shape == (6, C, L)
    assert torch.isfinite(out).all()


def test_padding_is_zero_and_cropped():
    model = randomize(tiny(n_tokens=13, patch_size=4)).eval()
    x, t, y, pheno = inputs()
    patches = model.patchify(x)  # (B, N=4, C*p=12), laid out as (C, p) per token
    assert patches.shape == (6, 4, 12)
    last = patches[:, -1].reshape(6, 3, 4)  # (B, C, p): position 12 is real, 13..15 padding
    assert torch.equal(last[:, :, 0], x[:, :, 12])
    assert torch.equal(last[:, :, 1:], torch.zeros(6, 3, 3))
    assert torch.equal(patches[:, 1].reshape(6, 3, 4), x[:, :, 4:8])
    assert model(x, t, y, pheno).shape == x.shape


def test_patchify_roundtrip():
    model = tiny(n_tokens=16, patch_size=4)
    x = torch.randn(2, 3, 16)
    assert torch.equal(model.unpatchify(model.patchify(x)), x)


def test_learn_sigma_doubles_channels():
    model = randomize(tiny(learn_sigma=True))
    x, t, y, pheno = inputs()
    assert model(x, t, y, pheno).shape == (6, 6, 13)
    assert model.forward_with_cfg(x, t, y, pheno, scale=3.0).shape == (6, 6, 13)


def test_wrong_shape_names_the_fix():
    model = tiny()
    x, t, y, pheno = inputs(L=12)
    with pytest.raises(ValueError, match="n_tokens"):
        model(x, t, y, pheno)
    no_pheno = tiny(n_phenotypes=0)
    x, t, y, pheno = inputs()
    with pytest.raises(ValueError, match="n_phenotypes"):
        no_pheno(x, t, y, pheno)


def test_config_validation():
    with pytest.raises(ValueError):
        DiTConfig(hidden=30, heads=4)
    with pytest.raises(ValueError):
        DiTConfig(class_dropout=1.0)
    cfg = DiTConfig(in_channels=4, n_tokens=9, patch_size=2)
    assert cfg.n_patches == 5
    assert DiTConfig.from_dict(cfg.to_dict()) == cfg


def test_sincos_pos_embed():
    pe = sincos_pos_embed_1d(8, 5)
    assert pe.shape == (5, 8)
    assert pe[0, :4].tolist() == [0.0] * 4 and pe[0, 4:].tolist() == [1.0] * 4
    assert abs(pe[3, 0] - torch.sin(torch.tensor(3.0)).item()) < 1e-6


# -- adaLN-Zero initialisation -------------------------------------------------------------------


def test_zero_output_and_identity_blocks_at_init():
    model = tiny()
    x, t, y, pheno = inputs()
    out = model(x, t, y, pheno)
    assert torch.equal(out, torch.zeros_like(out))
    h = torch.randn(6, model.config.n_patches, model.config.hidden)
    c = torch.randn(6, model.config.hidden)
    for block in model.blocks:
        assert torch.equal(block(h, c), h)
    # and not identity once the modulation is trained
    randomize(model)
    assert not torch.allclose(model.blocks[0](h, c), h)


# -- labels and classifier-free guidance ---------------------------------------------------------


def test_label_dropout_fraction_and_null_index():
    emb = LabelEmbedder(n_classes=5, hidden=8, dropout=0.25).train()
    labels = torch.arange(40000) % 5
    g = torch.Generator().manual_seed(3)
    out = emb.token_drop(labels, rng=g)
    dropped = out == 5
    assert abs(dropped.float().mean().item() - 0.25) < 0.015
    assert torch.equal(out[~dropped], labels[~dropped])  # kept labels untouched
    # reproducible with the same generator seed, different with another
    again = emb.token_drop(labels, rng=torch.Generator().manual_seed(3))
    other = emb.token_drop(labels, rng=torch.Generator().manual_seed(4))
    assert torch.equal(out, again) and not torch.equal(out, other)
    # no dropout in eval mode, exact forced drops
    emb.eval()
    assert torch.equal(emb.token_drop(labels, rng=g), labels)
    force = labels < 2
    forced = emb.token_drop(labels, force_drop_ids=force)
    assert torch.equal(forced == 5, force)


def test_model_dropout_uses_generator_and_null_embedding():
    model = randomize(tiny(class_dropout=0.5)).train()
    x, t, y, pheno = inputs(B=32)
    a = model(x, t, y, pheno, rng=torch.Generator().manual_seed(0))
    b = model(x, t, y, pheno, rng=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    # every sample equals either its conditional or its null-label output
    model.eval()
    cond = model(x, t, y, pheno)
    null = model(x, t, y, pheno, force_drop_ids=torch.ones(32, dtype=torch.bool))
    is_cond = (a - cond).flatten(1).abs().amax(1) < 1e-5
    is_null = (a - null).flatten(1).abs().amax(1) < 1e-5
    assert bool((is_cond | is_null).all())
    assert 4 < int(is_null.sum()) < 28


def test_cfg_scale_one_is_conditional_and_mixing_is_linear():
    model = randomize(tiny()).eval()
    x, t, y, pheno = inputs()
    cond = model(x, t, y, pheno)
    null = model(x, t, y, pheno, force_drop_ids=torch.ones(6, dtype=torch.bool))
    assert not torch.allclose(cond, null, atol=1e-3)
    torch.testing.assert_close(model.forward_with_cfg(x, t, y, pheno, scale=1.0), cond,
                               rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model.forward_with_cfg(x, t, y, pheno, scale=0.0), null,
                               rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model.forward_with_cfg(x, t, y, pheno, scale=2.5),
                               null + 2.5 * (cond - null), rtol=1e-4, atol=1e-4)


def test_phenotype_changes_prediction():
    model = randomize(tiny()).eval()
    x, t, y, _ = inputs()
    case = model(x, t, y, torch.ones(6, dtype=torch.long))
    control = model(x, t, y, torch.zeros(6, dtype=torch.long))
    none = model(x, t, y, None)
    null = model(x, t, y, torch.full((6,), 2))
    assert not torch.allclose(case, control, atol=1e-3)
    torch.testing.assert_close(none, null)  # pheno=None means the null phenotype


# -- per-sample gradients (DP-SGD) ---------------------------------------------------------------


def _batch_grads(model, x, t, y, pheno):
    model.zero_grad()
    out = model(x, t, y, pheno)
    loss = (out - x).pow(2).flatten(1).mean(1).sum()
    loss.backward()
    return {k: p.grad.clone() for k, p in model.named_parameters()}


@pytest.mark.parametrize("pos", ["sincos", "learned"])
def test_torch_func_per_sample_grads_sum_to_batch_grad(pos):
    from torch.func import functional_call, grad, vmap

    model = randomize(tiny(pos_embed=pos)).eval()
    x, t, y, pheno = inputs()
    params = {k: p.detach() for k, p in model.named_parameters()}
    buffers = {k: b for k, b in model.named_buffers()}

    def loss_one(p, xi, ti, yi, phi):
        out = functional_call(model, (p, buffers), (xi[None], ti[None], yi[None], phi[None]))
        return (out - xi[None]).pow(2).mean()

    per = vmap(grad(loss_one), in_dims=(None, 0, 0, 0, 0))(params, x, t, y, pheno)
    batch = _batch_grads(model, x, t, y, pheno)
    for k, g in batch.items():
        assert per[k].shape == (6, *g.shape)
        torch.testing.assert_close(per[k].sum(0), g, rtol=1e-4, atol=1e-5)
    # the samples differ, so the per-sample gradients differ
    assert not torch.allclose(per["x_embedder.weight"][0], per["x_embedder.weight"][1])


def test_opacus_grad_sample_module_matches_batch_grad():
    from opacus.grad_sample import GradSampleModule

    model = randomize(tiny(pos_embed="learned"))
    x, t, y, pheno = inputs()
    batch = _batch_grads(model, x, t, y, pheno)
    gsm = GradSampleModule(model, loss_reduction="sum")
    gsm.zero_grad()
    out = gsm(x, t, y, pheno)
    (out - x).pow(2).flatten(1).mean(1).sum().backward()
    for k, p in model.named_parameters():
        assert p.grad_sample is not None, k
        torch.testing.assert_close(p.grad_sample.sum(0), batch[k], rtol=1e-4, atol=1e-5)
    # the wrapped model still samples with guidance (the sampler finds forward_with_cfg inside)
    diff = GaussianDiffusion(DiffusionConfig(timesteps=20))
    gsm.train()
    z = diff.ddim_sample(gsm, (6, 3, 13), cond={"y": y, "pheno": pheno}, steps=3, guidance=2.0,
                         rng=torch.Generator().manual_seed(0))
    assert z.shape == (6, 3, 13) and torch.isfinite(z).all() and gsm.training
    gsm._close()


def test_torch_func_with_training_label_dropout():
    # random label drops inside vmap need randomness="different" (or force_drop_ids from outside)
    from torch.func import functional_call, grad, vmap

    model = randomize(tiny(class_dropout=0.5)).train()
    x, t, y, pheno = inputs()
    params = {k: p.detach() for k, p in model.named_parameters()}

    def loss_one(p, xi, ti, yi, phi, drop):
        out = functional_call(model, p, (xi[None], ti[None], yi[None], phi[None]),
                              {"force_drop_ids": drop[None]})
        return out.pow(2).mean()

    drop = torch.tensor([True, False] * 3)
    per = vmap(grad(loss_one), in_dims=(None, 0, 0, 0, 0, 0))(params, x, t, y, pheno, drop)
    # dropped samples get no gradient in the label rows they did not use
    emb = per["y_embedder.embedding_table.weight"]  # (B, n_classes + 1, D)
    for i in range(6):
        used = 5 if drop[i] else int(y[i])
        assert emb[i, used].abs().sum() > 0
        assert emb[i][torch.arange(6) != used].abs().sum() == 0
    rand = vmap(grad(lambda p, *a: functional_call(model, p, tuple(z[None] for z in a)).pow(2).mean()),
                in_dims=(None, 0, 0, 0, 0), randomness="different")(params, x, t, y, pheno)
    assert rand["x_embedder.weight"].shape == (6, *model.x_embedder.weight.shape)


def test_diffusion_loss_trains_dit_one_step():
    torch.manual_seed(0)
    model = tiny(class_dropout=0.1).train()
    diff = GaussianDiffusion(DiffusionConfig(timesteps=100))
    x0 = torch.randn(8, 3, 13)
    cond = {"y": torch.randint(0, 5, (8,)), "pheno": torch.randint(0, 2, (8,))}
    g = torch.Generator().manual_seed(0)
    loss = diff.training_loss(model, x0, cond=cond, rng=g)
    loss.backward()
    # at init only the final layer receives gradient (adaLN-Zero); it must be non-zero
    assert model.final_layer.linear.weight.grad.abs().sum() > 0
    assert abs(loss.item() - 1.0) < 0.5  # zero prediction -> loss = E[eps^2] = 1


# -- registry ------------------------------------------------------------------------------------


def test_registry_sizes():
    counts = {}
    for name in DIT_SIZES:
        counts[name] = count_params(dit_from_name(name, in_channels=8, n_tokens=64, n_classes=5,
                                                  n_phenotypes=2))
    assert 0.2e6 < counts["DiT-T"] < 0.5e6
    assert 1e6 < counts["DiT-S"] < 3e6
    assert 7e6 < counts["DiT-B"] < 13e6
    m = dit_from_name("DiT-T/4", in_channels=4, n_tokens=10)
    assert m.config.patch_size == 4 and m.config.n_patches == 3
    with pytest.raises(ValueError, match="DiT-S"):
        dit_from_name("DiT-XXL")


def test_trained_tiny_dit_samples_its_label_prototype():
    # end to end: 200 steps on latents = label prototype + N(0, 0.1^2); every DDIM sample must
    # land next to the prototype of its own label (prototypes are ~2 apart in mean square)
    torch.manual_seed(0)
    model = DiT1D(DiTConfig(in_channels=2, n_tokens=9, patch_size=2, hidden=32, depth=2, heads=4,
                            n_classes=3, class_dropout=0.1))
    diff = GaussianDiffusion(DiffusionConfig(timesteps=100, schedule="cosine"))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    proto = torch.randn(3, 2, 9, generator=g)  # (K, C, L)
    for _ in range(200):
        y = torch.randint(0, 3, (64,), generator=g)
        x0 = proto[y] + 0.1 * torch.randn(64, 2, 9, generator=g)  # (B, C, L)
        loss = diff.training_loss(model, x0, cond={"y": y}, rng=g,
                                  model_kwargs={"rng": g})
        opt.zero_grad()
        loss.backward()
        opt.step()
    ys = torch.arange(60) % 3
    z = diff.ddim_sample(model, (60, 2, 9), cond={"y": ys}, steps=20, rng=g)
    dist = (z[:, None] - proto[None]).pow(2).mean(dim=(2, 3))  # (60, K)
    assert torch.equal(dist.argmin(1), ys)
    assert dist[torch.arange(60), ys].max() < 0.25
    assert 0.05 < (z - proto[ys]).std() < 0.3  # neither collapsed nor blown up
    assert model.training  # sampling restored the mode


def test_hierarchical_labels_add_the_parent_embedding():
    """With parents, a label's embedding is its own row plus its parent's; the null label maps to a null parent."""
    emb = LabelEmbedder(4, 8, dropout=0.0, parents=(0, 0, 1, 1))
    torch.nn.init.normal_(emb.parent_table.weight)
    y = torch.tensor([0, 1, 2, 3, 4])  # 4 = null
    out = emb(y)
    want = emb.embedding_table.weight[y] + emb.parent_table.weight[torch.tensor([0, 0, 1, 1, 2])]
    assert torch.allclose(out, want)
    # labels 0 and 1 share their parent's part: their difference is that of their own rows only
    assert torch.allclose(out[0] - out[1], emb.embedding_table.weight[0] - emb.embedding_table.weight[1])


def test_flat_labels_build_the_same_network_as_before():
    """No parents (or label_parents off): no parent table, the same parameters and the same init draws."""
    torch.manual_seed(3)
    flat = tiny(n_classes=4)
    torch.manual_seed(3)
    off = tiny(n_classes=4, parents=(0, 0, 1, 1), label_parents=False)
    assert flat.y_embedder.parent_table is None and off.y_embedder.parent_table is None
    assert all(torch.equal(a, b) for a, b in zip(flat.state_dict().values(), off.state_dict().values()))
    hier = tiny(n_classes=4, parents=(0, 0, 1, 1))
    assert "y_embedder.parent_table.weight" in hier.state_dict() and "y_embedder.parent_of" in hier.state_dict()
    again = DiT1D(DiTConfig.from_dict(hier.config.to_dict()))
    again.load_state_dict(hier.state_dict())  # the saved config rebuilds the same module


# -- per-token (local) MLP -----------------------------------------------------------------------


def test_local_mlp_off_builds_the_same_network_as_before():
    """local_mlp=0 (the default): no extra parameters, the same init draws, an old config loads."""
    torch.manual_seed(5)
    old = tiny()
    torch.manual_seed(5)
    off = tiny(local_mlp=0)
    assert all(b.local is None for b in off.blocks)
    assert list(old.state_dict()) == list(off.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(old.state_dict().values(), off.state_dict().values()))
    d = old.config.to_dict()
    d.pop("local_mlp")  # a checkpoint written before the field existed
    again = DiT1D(DiTConfig.from_dict(d))
    again.load_state_dict(old.state_dict())
    x, t, y, pheno = inputs()
    assert torch.equal(again(x, t, y, pheno), old(x, t, y, pheno))


def test_local_mlp_weights_act_on_their_own_token_only():
    model = randomize(tiny(n_tokens=16, patch_size=4, local_mlp=8, depth=1)).eval()
    block = model.blocks[0]
    assert block.local.w1.shape == (4, 32, 8) and block.local.w2.shape == (4, 8, 32)
    h = torch.randn(5, 4, 32)
    out = block.local(h)  # (B, N, D)
    for n in range(4):  # token n is a plain MLP with token n's weights
        ref = F.gelu(h[:, n] @ block.local.w1[n] + block.local.b1[n], approximate="tanh") @ block.local.w2[n]
        torch.testing.assert_close(out[:, n], ref + block.local.b2[n], rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # changing token 2's weights changes the output of token 2 only
        block.local.w2[2] += 1.0
    out2 = block.local(h)
    assert torch.equal(out2[:, [0, 1, 3]], out[:, [0, 1, 3]]) and not torch.allclose(out2[:, 2], out[:, 2])


@pytest.mark.parametrize("window", [0, 1])
def test_local_mlp_per_sample_grads_sum_to_batch_grad(window):
    from torch.func import functional_call, grad, vmap

    model = randomize(tiny(local_mlp=6, local_window=window)).eval()
    x, t, y, pheno = inputs()
    params = {k: p.detach() for k, p in model.named_parameters()}

    def loss_one(p, xi, ti, yi, phi):
        return (functional_call(model, p, (xi[None], ti[None], yi[None], phi[None])) - xi[None]).pow(2).mean()

    per = vmap(grad(loss_one), in_dims=(None, 0, 0, 0, 0))(params, x, t, y, pheno)
    batch = _batch_grads(model, x, t, y, pheno)
    assert "blocks.0.local.w1" in batch
    for k, g in batch.items():
        torch.testing.assert_close(per[k].sum(0), g, rtol=1e-4, atol=1e-5)


def test_local_mlp_config_checks():
    with pytest.raises(ValueError, match="local_mlp"):
        DiTConfig(local_mlp=-1)


def test_local_mlp_window_reads_its_neighbours_only():
    local = LocalMlp(6, 4, 5, window=1)
    h = torch.randn(3, 6, 4)
    out = local(h)  # (B, N, D)
    h2 = h.clone()
    h2[:, 3] += 1.0  # token 3 changed: tokens 2, 3, 4 see it, the others do not
    out2 = local(h2)
    assert torch.equal(out2[:, [0, 1, 5]], out[:, [0, 1, 5]])
    assert all(not torch.allclose(out2[:, n], out[:, n]) for n in (2, 3, 4))
    # token 0 reads zeros before the start: the same as a window-0 MLP on [0, h0, h1]
    ref = F.gelu(torch.cat([torch.zeros(3, 4), h[:, 0], h[:, 1]], 1) @ local.w1[0] + local.b1[0], approximate="tanh")
    torch.testing.assert_close(out[:, 0], ref @ local.w2[0] + local.b2[0], rtol=1e-5, atol=1e-5)
    assert local.w1.shape == (6, 12, 5)


@pytest.mark.parametrize("window", [1, 2])
def test_local_mlp_output_and_weight_gradients_match_each_token_read_as_one_window(window):
    """Token n is a plain MLP on [h(n-w) .. h(n+w)] (zeros past the ends) with its own weights: the
    blocks of w1 taken by unbind get the gradients of the rows of w1 they are."""
    local = randomize(LocalMlp(5, 4, 6, window=window), seed=3, std=1.0)
    g = torch.Generator().manual_seed(4)
    h = torch.randn(3, 5, 4, generator=g)
    target = torch.randn(3, 5, 4, generator=g)
    out = local(h)  # (B, N, D)
    grads = torch.autograd.grad((out * target).sum(), [local.w1, local.w2, local.b1])
    padded = F.pad(h, (0, 0, window, window))  # (B, N + 2w, D)
    w1, w2, b1 = (p.detach().clone().requires_grad_() for p in (local.w1, local.w2, local.b1))
    ref = torch.stack([F.gelu(padded[:, n:n + 2 * window + 1].reshape(3, -1) @ w1[n] + b1[n], approximate="tanh")
                       @ w2[n] + local.b2[n] for n in range(5)], 1)  # (B, N, D)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, torch.autograd.grad((ref * target).sum(), [w1, w2, b1])):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


# -- inference in row chunks -----------------------------------------------------------------------


def test_inference_pass_runs_in_row_chunks_with_the_unchunked_output(monkeypatch):
    import genosynth.models.dit as dit_mod

    model = randomize(tiny(local_mlp=8, local_window=1)).eval()
    x, t, y, pheno = inputs(B=11)
    whole = model(x, t, y, pheno).detach()  # gradients on: one pass over all 11 rows
    widest = 4 * model.config.n_patches * int(model.config.hidden * model.config.mlp_ratio)  # bytes per row
    monkeypatch.setattr(dit_mod, "INFERENCE_CHUNK_BYTES", 3 * widest)
    assert model.rows_per_pass() == 3
    calls = []
    inner = model._tokens
    monkeypatch.setattr(model, "_tokens", lambda x_, c_: calls.append(x_.shape[0]) or inner(x_, c_))
    with torch.no_grad():
        chunked = model(x, t, y, pheno)
        guided = model.forward_with_cfg(x, t, y, pheno, scale=2.0)
    assert calls[:4] == [3, 3, 3, 2]  # 11 rows in chunks of 3; the guided pass runs 22 rows the same way
    assert calls[4:] == [3] * 7 + [1]
    torch.testing.assert_close(chunked, whole, rtol=1e-6, atol=1e-6)
    monkeypatch.setattr(dit_mod, "INFERENCE_CHUNK_BYTES", 10**12)  # one chunk: the reference guided pass
    with torch.no_grad():
        torch.testing.assert_close(guided, model.forward_with_cfg(x, t, y, pheno, scale=2.0), rtol=1e-6, atol=1e-6)


def test_rows_per_pass_keeps_a_chunk_under_the_budget_at_chromosome_scale():
    from genosynth.models.dit import INFERENCE_CHUNK_BYTES

    cfg = DiTConfig(in_channels=8, n_tokens=1563, patch_size=5, hidden=64, depth=1, heads=4, local_mlp=128,
                    local_window=1, n_classes=3)  # the 100,000-SNP chromosome geometry
    rows = DiT1D(cfg).rows_per_pass()
    assert rows * cfg.n_patches * 256 * 4 <= INFERENCE_CHUNK_BYTES < (rows + 1) * cfg.n_patches * 256 * 4
