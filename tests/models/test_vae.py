"""The categorical VAE: shapes, padding and missing-allele masking, per-SNP readout, allele draws."""

from __future__ import annotations

import pytest
import torch

from genosynth.errors import InputError
from genosynth.models.vae import GenotypeVAE, VAEConfig, n_tokens, one_hot_alleles, sample_alleles, token_one_hot

SMALL = VAEConfig(patch=8, snp_dim=4, width=16, latent_channels=3, blocks=1)


@pytest.mark.parametrize("n_variants, n_classes", [(1, 2), (8, 2), (21, 3), (64, 3)])
def test_shapes_for_any_snp_count(n_variants, n_classes):
    torch.manual_seed(0)
    vae = GenotypeVAE(n_variants, n_classes, n_labels=2, config=SMALL)
    x = torch.randint(0, n_classes, (5, n_variants), dtype=torch.int8)
    y = torch.tensor([0, 1, 2, 0, 1])  # 2 = "no label"
    mu, logvar = vae.encode(x)
    assert mu.shape == logvar.shape == (5, 3, n_tokens(n_variants, 8))
    logits = vae.decode(mu, y)
    assert logits.shape == (5, n_classes, n_variants)
    out = vae(x, y, rng=torch.Generator().manual_seed(0))
    for key in ("loss", "nll", "kl", "observed"):
        assert out[key].shape == (5,)
    assert torch.all(out["kl"] >= 0)
    assert vae.padded == n_tokens(n_variants, 8) * 8 >= n_variants


def test_one_hot_pads_and_blanks_missing():
    a = torch.tensor([[0, 1, -1], [2, 0, 1]], dtype=torch.int8)
    x = one_hot_alleles(a, 3, padded=5)  # (2, 3, 5)
    assert x.shape == (2, 3, 5)
    assert x[0, :, 2].sum() == 0  # missing -> all zero
    assert x[:, :, 3:].sum() == 0  # padding -> all zero
    assert x[1, 2, 0] == 1 and x[0, 1, 1] == 1


@pytest.mark.parametrize("n_variants, k", [(13, 2), (16, 3), (1, 2)])
def test_token_one_hot_is_the_one_hot_in_token_layout(n_variants, k):
    a = torch.randint(-1, k, (4, n_variants), generator=torch.Generator().manual_seed(n_variants)).to(torch.int8)
    t, p = n_tokens(n_variants, 8), 8
    want = one_hot_alleles(a, k, t * p).reshape(4, k, t, p).permute(2, 0, 3, 1).reshape(t, 4, p * k)
    assert torch.equal(token_one_hot(a, k, t, p), want)


@pytest.mark.parametrize("neighbour", [False, True])
def test_direct_encoder_equals_the_one_hot_path(neighbour):
    torch.manual_seed(1)
    vae = GenotypeVAE(21, 2, n_labels=2, config=VAEConfig(patch=8, width=16, latent_channels=3, blocks=1,
                                                          embedding="direct", neighbour=neighbour))
    with torch.no_grad():
        for p in vae.parameters():
            p.normal_()
    x = torch.randint(-1, 2, (5, 21), dtype=torch.int8)
    h = vae._embed(one_hot_alleles(x, 2, vae.padded))  # (B, T, D) through the (B, K, Vp) one-hot
    for block in vae.enc_blocks:
        h = block(h)
    mu_want = vae.enc_out(torch.nn.functional.gelu(vae.enc_norm(h))).transpose(1, 2).chunk(2, dim=1)[0]
    assert torch.equal(vae.encode(x)[0], mu_want)


def test_missing_alleles_do_not_enter_the_loss():
    torch.manual_seed(0)
    vae = GenotypeVAE(10, 2, 1, SMALL)
    x = torch.randint(0, 2, (4, 10), dtype=torch.int8)
    x_missing = x.clone()
    x_missing[:, 3] = -1
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    full = vae(x, None, rng=g())
    part = vae(x_missing, None, rng=g())
    assert torch.equal(part["observed"], torch.full((4,), 9))
    # the missing SNP changes the encoder input, so compare with the per-SNP NLL of the same pass
    mu, logvar = vae.encode(x_missing)
    eps = torch.randn(mu.shape, generator=g())
    logits = vae.decode(mu + eps * (0.5 * logvar).exp(), None)
    nll = torch.nn.functional.cross_entropy(logits, x.long(), reduction="none")  # (B, V)
    assert torch.allclose(part["nll"], nll.sum(1) - nll[:, 3], atol=1e-5)
    assert not torch.allclose(full["nll"], part["nll"])


def test_padding_positions_never_reach_the_output():
    torch.manual_seed(0)
    vae = GenotypeVAE(10, 2, 1, SMALL)  # padded to 16
    z = torch.randn(2, 3, vae.n_tokens)
    before = vae.decode(z)
    with torch.no_grad():
        vae.snp_bias[10:] += 100.0  # padding biases
        vae.readout[10:] += 100.0
    assert torch.equal(before, vae.decode(z))


def test_per_snp_readout_tells_snps_apart():
    """With a constant latent the decoder still gives every SNP its own frequency (biases)."""
    torch.manual_seed(0)
    vae = GenotypeVAE(6, 2, 2, SMALL)
    freq = torch.tensor([0.1, 0.9, 0.5, 0.2, 0.7, 0.3])
    overall = torch.stack([1 - freq, freq], 1)  # (V, K)
    per_label = torch.stack([overall, overall.flip(1)])  # label 1 has the opposite frequencies
    vae.init_biases(overall, per_label)
    with torch.no_grad():
        vae.readout.zero_()
    z = torch.zeros(2, 3, vae.n_tokens)
    p = torch.softmax(vae.decode(z, torch.tensor([0, 1])), dim=1)[:, 1]  # (2, V) P(ALT)
    assert torch.allclose(p[0], freq, atol=1e-4)
    assert torch.allclose(p[1], 1 - freq, atol=1e-4)


def test_sample_alleles_draws_not_argmax():
    logits = torch.log(torch.tensor([[0.7, 0.3]])).T[None].expand(20000, 2, 1).contiguous()  # (B, 2, 1)
    g = torch.Generator().manual_seed(0)
    draw = sample_alleles(logits, rng=g)
    assert draw.dtype == torch.int8 and draw.shape == (20000, 1)
    assert abs(draw.float().mean().item() - 0.3) < 0.015
    assert sample_alleles(logits, argmax=True).sum() == 0
    three = torch.log(torch.tensor([0.2, 0.5, 0.3]))[None, :, None].expand(30000, 3, 1)
    counts = torch.bincount(sample_alleles(three, rng=g).flatten().long(), minlength=3) / 30000
    assert torch.allclose(counts, torch.tensor([0.2, 0.5, 0.3]), atol=0.015)


def test_bad_inputs_name_the_fix():
    with pytest.raises(InputError, match="2 \\(haplotypes\\) or 3"):
        GenotypeVAE(10, 4, 1, SMALL)
    vae = GenotypeVAE(10, 2, 1, SMALL)
    with pytest.raises(InputError, match="built for 10 SNPs"):
        vae.encode(torch.zeros(2, 9, dtype=torch.int8))


def test_a_few_steps_lower_the_loss():
    torch.manual_seed(0)
    x = torch.randint(0, 2, (64, 24), dtype=torch.int8)
    vae = GenotypeVAE(24, 2, 1, SMALL)
    opt = torch.optim.Adam(vae.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    first = vae(x, None, rng=g)["loss"].mean().item()
    for _ in range(60):
        loss = vae(x, None, rng=g)["loss"].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert vae(x, None, rng=g)["nll"].mean().item() < 0.8 * first


# ---------------------------------------------------------------------------------- direct embedding
DIRECT = VAEConfig(patch=8, width=16, latent_channels=3, blocks=1, embedding="direct")


@pytest.mark.parametrize("n_variants, n_classes", [(1, 2), (21, 3), (64, 2)])
def test_direct_embedding_shapes(n_variants, n_classes):
    torch.manual_seed(0)
    vae = GenotypeVAE(n_variants, n_classes, n_labels=2, config=DIRECT)
    x = torch.randint(0, n_classes, (5, n_variants), dtype=torch.int8)
    mu, _ = vae.encode(x)
    assert mu.shape == (5, 3, n_tokens(n_variants, 8))
    assert vae.decode(mu, torch.tensor([0, 1, 2, 0, 1])).shape == (5, n_classes, n_variants)
    assert not hasattr(vae, "readout") and vae.enc_table.shape == (vae.n_tokens, 8 * n_classes, 16)


def test_direct_embedding_is_a_sum_of_per_snp_allele_vectors():
    """Changing one SNP's allele moves its token by the difference of that SNP's two vectors only."""
    torch.manual_seed(0)
    vae = GenotypeVAE(20, 2, 1, DIRECT)
    x = torch.zeros(1, 20, dtype=torch.int8)
    y = x.clone()
    y[0, 11] = 1  # token 1, slot 3
    hx = vae._embed(one_hot_alleles(x, 2, vae.padded))  # (1, T, D)
    hy = vae._embed(one_hot_alleles(y, 2, vae.padded))
    want = vae.enc_table[1, 3 * 2 + 1] - vae.enc_table[1, 3 * 2 + 0]
    assert torch.allclose(hy[0, 1] - hx[0, 1], want, atol=1e-6)
    assert torch.equal(hy[0, [0, 2]], hx[0, [0, 2]])  # other tokens unchanged


def test_direct_embedding_learns_and_has_per_sample_gradients():
    """A few Adam steps lower the loss, and torch.func per-row gradients (DP-SGD) match autograd."""
    from torch.func import functional_call, grad, vmap

    torch.manual_seed(0)
    vae = GenotypeVAE(30, 2, 2, DIRECT)
    x = torch.randint(0, 2, (16, 30), dtype=torch.int8)
    x[:, :10] = x[:, 10:20]  # LD to learn
    y = torch.randint(0, 2, (16,))
    opt = torch.optim.Adam(vae.parameters(), lr=1e-2)
    first = None
    for step in range(30):
        loss = vae(x, y, rng=torch.Generator().manual_seed(step))["nll"].mean()
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.8 * first

    class MeanNLL(torch.nn.Module):  # deterministic per-row loss (posterior mean, no draw)
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, xb, yb):
            logits = self.inner.decode(self.inner.encode(xb)[0], yb)  # (B, K, V)
            return torch.nn.functional.cross_entropy(logits, xb.long(), reduction="none").sum()

    net = MeanNLL(vae)
    params = {k: v.detach() for k, v in net.named_parameters()}
    per_row = vmap(grad(lambda p, xi, yi: functional_call(net, p, (xi[None], yi[None]))), in_dims=(None, 0, 0))(
        params, x[:4], y[:4])
    for i in range(4):
        net.zero_grad()
        net(x[i : i + 1], y[i : i + 1]).backward()
        for name, prm in net.named_parameters():
            assert torch.allclose(per_row[name][i], prm.grad, atol=1e-5), name


# ---------------------------------------------------------------------------------- neighbour tokens
NEIGHBOUR = VAEConfig(patch=8, width=16, latent_channels=3, blocks=1, embedding="direct", neighbour=True)


def test_neighbour_tables_start_at_zero_so_the_model_starts_as_plain_direct():
    """Same seed, same weights and the same loss as ``neighbour=False`` until training moves the new tables."""
    x = torch.randint(0, 3, (4, 30), generator=torch.Generator().manual_seed(0), dtype=torch.int8)
    y = torch.tensor([0, 1, 0, 1])
    losses = []
    for cfg in (DIRECT, NEIGHBOUR):
        torch.manual_seed(0)
        vae = GenotypeVAE(30, 3, 2, cfg)
        losses.append(vae(x, y, rng=torch.Generator().manual_seed(1))["loss"])
    assert torch.equal(losses[0], losses[1])
    assert not hasattr(GenotypeVAE(30, 3, 2, DIRECT), "enc_near")


def test_neighbour_embedding_reaches_only_the_nearer_adjacent_token():
    """A SNP in the first half of token 1 also moves token 0, one in the second half also token 2; the
    decoder reads SNPs near a boundary from both tokens, so a latent change reaches across it."""
    torch.manual_seed(0)
    vae = GenotypeVAE(40, 2, 1, NEIGHBOUR)  # 5 tokens of 8 SNPs
    with torch.no_grad():
        vae.enc_near.normal_()
        vae.dec_near.normal_()
    x = torch.zeros(1, 40, dtype=torch.int8)
    moved = {}
    for snp in (9, 14):  # token 1: slot 1 (first half), slot 6 (second half)
        y = x.clone()
        y[0, snp] = 1
        diff = vae._embed(one_hot_alleles(y, 2, vae.padded)) - vae._embed(one_hot_alleles(x, 2, vae.padded))
        moved[snp] = diff[0].abs().sum(dim=1).nonzero().ravel().tolist()  # tokens that changed
    assert moved == {9: [0, 1], 14: [1, 2]}
    z = torch.zeros(1, 3, 5)
    z2 = z.clone()
    z2[0, :, 2] = 1.0  # change token 2 only
    d = (vae.decode(z2) - vae.decode(z)).abs().sum(dim=(0, 1))  # (V,)
    changed = d.nonzero().ravel()
    # with one global residual path every SNP may move; without it (blocks=0) only tokens 1-3's near halves
    assert changed.numel() > 0
    vae0 = GenotypeVAE(40, 2, 1, VAEConfig(patch=8, width=16, latent_channels=3, blocks=0, embedding="direct",
                                            neighbour=True))
    with torch.no_grad():
        vae0.dec_near.normal_()
    d0 = (vae0.decode(z2) - vae0.decode(z)).abs().sum(dim=(0, 1))
    assert d0.nonzero().ravel().tolist() == list(range(12, 28))  # token 1's second half, token 2, token 3's first half


def test_neighbour_needs_the_direct_embedding():
    with pytest.raises(InputError, match="embedding='direct'"):
        VAEConfig(neighbour=True)
