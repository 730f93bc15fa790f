"""A categorical VAE over alleles: SNPs -> a (channels x tokens) latent -> per-SNP allele logits.

The encoder embeds each SNP's allele (one-hot, ``K`` classes: 2 for haplotypes, 3 for genotype
counts) together with a learned per-SNP embedding, folds every ``patch`` consecutive SNPs into
one token and mixes tokens with residual 1D convolutions (plus a global, mean-pooled path, since
SNPs far apart share ancestry). The latent is ``(latent_channels, n_tokens)``, the shape a 1D
diffusion transformer works on.

The decoder mirrors it and ends in a **per-SNP readout**: shared features gathered per SNP are
projected with weights that belong to that SNP, plus a per-SNP bias and a per-label per-SNP bias.
A translation-invariant decoder cannot tell SNPs apart; the per-label bias gives every
population its allele frequencies "for free", so the latent only carries the individual's
deviations (linkage, substructure). Any SNP count works: the SNP axis is padded to a multiple of
``patch`` and the padding is masked out of the loss.

Decoding keeps the categorical nature of alleles: :meth:`GenotypeVAE.decode` returns logits,
:func:`sample_alleles` draws from them (argmax only on request).

References
----------
Kingma D.P., Welling M. (2014) Auto-encoding variational Bayes. ICLR.
Rombach R. et al. (2022) High-resolution image synthesis with latent diffusion models. CVPR
(latent scaling to unit variance before diffusion).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genosynth.errors import InputError


EMBEDDINGS = ("factored", "direct")


@dataclass
class VAEConfig:
    """Shape and loss of :class:`GenotypeVAE`."""

    patch: int = 64  # SNPs per latent token; the SNP axis is padded to a multiple of it
    snp_dim: int = 16  # per-SNP feature width before folding into tokens
    width: int = 128  # token feature width inside encoder and decoder
    latent_channels: int = 8  # latent channels per token
    blocks: int = 2  # residual blocks in the encoder and in the decoder
    kernel: int = 3  # convolution kernel along tokens
    kl_weight: float = 0.01  # weight of KL(q(z|x) || N(0, I)) against the reconstruction NLL (nats)
    label_bias: bool = True  # per-label per-SNP logit bias in the decoder
    label_dropout: float = 0.1  # training probability of replacing the decoder's label by "no label"
    embedding: str = "factored"  # SNP <-> token maps: "factored" (per-SNP snp_dim features, shared fold) or "direct" (per-SNP allele vectors of width, batched matmuls; several times cheaper at 10^4+ SNPs)
    neighbour: bool = False  # "direct" only: each SNP is also embedded into, and read out from, the adjacent token nearer to it (context across token boundaries; one more table each way)

    def __post_init__(self) -> None:
        if self.embedding not in EMBEDDINGS:
            raise InputError(f"vae.embedding={self.embedding!r}: use one of {', '.join(EMBEDDINGS)}")
        if self.neighbour and self.embedding != "direct":
            raise InputError("vae.neighbour=True needs vae.embedding='direct'; set both, or neighbour=False")


# ---------------------------------------------------------------------------------- helpers
def n_tokens(n_variants: int, patch: int) -> int:
    """Number of latent tokens for ``n_variants`` SNPs."""
    return max(1, math.ceil(n_variants / patch))


def one_hot_alleles(alleles: torch.Tensor, n_classes: int, padded: int) -> torch.Tensor:
    """One-hot encode alleles and pad the SNP axis.

    Parameters
    ----------
    alleles : int, shape (B, V)
        Allele classes ``0..n_classes-1``; ``-1`` (missing) gives an all-zero column.
    n_classes : int
    padded : int
        Padded SNP count ``Vp >= V``; padding columns are all zero.

    Returns
    -------
    float32, shape (B, n_classes, Vp)
    """
    a = alleles.long()
    classes = torch.arange(n_classes, device=a.device)
    # a comparison, not an in-place write, so torch.func.vmap can batch it (per-sample DP grads)
    x = (a[:, None, :] == classes[None, :, None]).float()  # (B, K, V); -1 matches no class
    return F.pad(x, (0, padded - a.shape[1]))  # (B, K, Vp)


def token_one_hot(alleles: torch.Tensor, n_classes: int, tokens: int, patch: int) -> torch.Tensor:
    """One-hot alleles in token layout, the SNP axis padded to ``tokens * patch``.

    Parameters
    ----------
    alleles : int, shape (B, V)
        Allele classes ``0..n_classes-1``; ``-1`` (missing) and padding give all-zero entries.

    Returns
    -------
    float32, shape (T, B, P*K): entry ``[t, b, j * K + c]`` is 1 when SNP ``t * P + j`` of row ``b``
    has class ``c`` (the layout of ``one_hot_alleles(...).reshape(B, K, T, P).permute(2, 0, 3, 1)``,
    built without its (B, K, Vp) intermediates).
    """
    b, v = alleles.shape
    a = F.pad(alleles.long(), (0, tokens * patch - v), value=-1)  # (B, Vp)
    a = a.reshape(b, tokens, patch).transpose(0, 1)  # (T, B, P)
    classes = torch.arange(n_classes, device=a.device)
    return (a[..., None] == classes).float().reshape(tokens, b, patch * n_classes)  # (T, B, P*K)


class ResBlock(nn.Module):
    """Pre-norm residual block over tokens: a local (kernel-wide) mix plus a global mean-pooled path.

    Written with ``nn.Linear`` and ``nn.LayerNorm`` only (fast on CPU for short token axes, and
    supported by per-sample-gradient tools for DP-SGD).
    """

    def __init__(self, width: int, kernel: int):
        super().__init__()
        self.kernel = kernel
        self.norm = nn.LayerNorm(width)
        self.local = nn.Linear(kernel * width, width)
        self.glob = nn.Linear(width, width)
        self.out = nn.Linear(width, width)

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # (B, T, D)
        u = F.gelu(self.norm(h))
        t = u.shape[1]
        pad = self.kernel // 2
        up = F.pad(u, (0, 0, pad, self.kernel - 1 - pad))  # (B, T + kernel - 1, D)
        win = torch.cat([up[:, i : i + t] for i in range(self.kernel)], dim=2)  # (B, T, kernel*D)
        u = self.local(win) + self.glob(u.mean(dim=1, keepdim=True))  # (B, T, D)
        return h + self.out(F.gelu(u))


# ---------------------------------------------------------------------------------- model
class GenotypeVAE(nn.Module):
    """Categorical VAE: alleles (B, V) <-> latent (B, C, T).

    Parameters
    ----------
    n_variants : int
        SNPs per row ``V``.
    n_classes : int
        2 (haplotype rows, alleles 0/1) or 3 (genotype rows, ALT counts 0/1/2).
    n_labels : int
        Size of the label vocabulary; index ``n_labels`` means "no label".
    config : VAEConfig
    """

    def __init__(self, n_variants: int, n_classes: int, n_labels: int, config: VAEConfig):
        super().__init__()
        if n_classes not in (2, 3):
            raise InputError(f"n_classes must be 2 (haplotypes) or 3 (genotypes), got {n_classes}")
        if n_variants < 1:
            raise InputError("the cohort has no variants; give at least one SNP")
        c = config
        self.config = c
        self.n_variants = n_variants
        self.n_classes = n_classes
        self.n_labels = n_labels
        self.n_tokens = n_tokens(n_variants, c.patch)
        self.padded = self.n_tokens * c.patch
        vp, p, s, d, k = self.padded, c.patch, c.snp_dim, c.width, n_classes
        mask = torch.zeros(vp)
        mask[:n_variants] = 1.0
        self.register_buffer("snp_mask", mask)  # (Vp,) 1 for real SNPs, 0 for padding

        # encoder: per-SNP embedding -> tokens -> residual mixing -> (mu, logvar)
        if c.embedding == "factored":
            self.enc_allele = nn.Parameter(torch.randn(k, s, vp) * 0.5)  # (K, S, Vp) allele x SNP embedding
            self.enc_in = nn.Linear(s * p, d)
        else:  # "direct": each (SNP, allele) owns a D-vector; a token is the sum over its SNPs
            self.enc_table = nn.Parameter(torch.randn(self.n_tokens, p * k, d) * (0.3 / math.sqrt(p)))  # (T, P*K, D)
            self.enc_bias = nn.Parameter(torch.zeros(d))
            if c.neighbour:  # starts at 0: training begins as the plain "direct" model
                self.enc_near = nn.Parameter(torch.zeros(self.n_tokens, p * k, d))  # (T, P*K, D) into the nearer neighbour
        self.enc_blocks = nn.ModuleList([ResBlock(d, c.kernel) for _ in range(c.blocks)])
        self.enc_norm = nn.LayerNorm(d)
        self.enc_out = nn.Linear(d, 2 * c.latent_channels)

        # decoder: latent -> residual mixing -> per-SNP features -> per-SNP readout
        self.dec_in = nn.Linear(c.latent_channels, d)
        self.dec_blocks = nn.ModuleList([ResBlock(d, c.kernel) for _ in range(c.blocks)])
        self.dec_norm = nn.LayerNorm(d)
        if c.embedding == "factored":
            self.dec_out = nn.Linear(d, s * p)
            self.readout = nn.Parameter(torch.randn(vp, s, k) / math.sqrt(s))  # (Vp, S, K) per-SNP weights
        else:  # "direct": each SNP reads its K logits from its token's D features
            self.dec_table = nn.Parameter(torch.randn(self.n_tokens, d, p * k) / math.sqrt(d))  # (T, D, P*K)
            if c.neighbour:
                self.dec_near = nn.Parameter(torch.zeros(self.n_tokens, d, p * k))  # (T, D, P*K) from the nearer neighbour
        self.snp_bias = nn.Parameter(torch.zeros(vp, k))  # (Vp, K)
        self.label_bias = nn.Parameter(torch.zeros(n_labels + 1, vp, k)) if c.label_bias else None

    # ------------------------------------------------------------------ init from frequencies
    @torch.no_grad()
    def init_biases(self, class_freq: torch.Tensor, label_class_freq: torch.Tensor | None = None) -> None:
        """Start the readout biases at the log class frequencies (speeds training).

        Parameters
        ----------
        class_freq : float, shape (V, K)
            Smoothed class frequencies over all training rows.
        label_class_freq : float, shape (n_labels, V, K), optional
            The same per label; stored as the difference to the overall log frequency.
        """
        v = self.n_variants
        base = class_freq.clamp_min(1e-4).log()
        self.snp_bias[:v] = base
        if self.label_bias is not None and label_class_freq is not None:
            self.label_bias[: self.n_labels, :v] = label_class_freq.clamp_min(1e-4).log() - base

    # ------------------------------------------------------------------ encoder / decoder
    def encode(self, alleles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior parameters of alleles.

        Parameters
        ----------
        alleles : int, shape (B, V); -1 missing

        Returns
        -------
        mu, logvar : float, shape (B, C, T)
        """
        if alleles.shape[1] != self.n_variants:
            raise InputError(f"the model was built for {self.n_variants} SNPs, got rows with {alleles.shape[1]}")
        if self.config.embedding == "direct":  # one-hot straight in token layout: no (B, K, Vp) copies
            x = token_one_hot(alleles, self.n_classes, self.n_tokens, self.config.patch)  # (T, B, P*K)
            h = self._embed_tokens(x)  # (B, T, D)
        else:
            h = self._embed(one_hot_alleles(alleles, self.n_classes, self.padded))  # (B, T, D)
        for block in self.enc_blocks:
            h = block(h)
        mu, logvar = self.enc_out(F.gelu(self.enc_norm(h))).transpose(1, 2).chunk(2, dim=1)  # (B, C, T) each
        return mu, logvar.clamp(-12.0, 6.0)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        """Token features of one-hot alleles: (B, K, Vp) -> (B, T, D)."""
        b, t, p, k = x.shape[0], self.n_tokens, self.config.patch, self.n_classes
        if self.config.embedding == "factored":
            e = (x[:, :, None, :] * self.enc_allele[None]).sum(dim=1)  # (B, S, Vp)
            e = e.reshape(b, -1, t, p)  # (B, S, T, P)
            e = e.permute(0, 2, 1, 3).reshape(b, t, -1)  # (B, T, S*P)
            return self.enc_in(e)  # (B, T, D)
        return self._embed_tokens(x.reshape(b, k, t, p).permute(2, 0, 3, 1).reshape(t, b, p * k))

    def _embed_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Token features of one-hot alleles in token layout (``"direct"``): (T, B, P*K) -> (B, T, D)."""
        p, k = self.config.patch, self.n_classes
        h = torch.bmm(x, self.enc_table)  # (T, B, D)
        if self.config.neighbour:
            half = (p // 2) * k  # first half of a token's SNPs goes to the previous token, the rest to the next
            back = torch.bmm(x[:, :, :half], self.enc_near[:, :half])  # (T, B, D), belongs to token t-1
            fwd = torch.bmm(x[:, :, half:], self.enc_near[:, half:])  # (T, B, D), belongs to token t+1
            h = h + F.pad(back[1:], (0, 0, 0, 0, 0, 1)) + F.pad(fwd[:-1], (0, 0, 0, 0, 1, 0))  # (T, B, D)
        return h.transpose(0, 1) + self.enc_bias  # (B, T, D)

    def _read_out(self, u: torch.Tensor) -> torch.Tensor:
        """Allele logits (before biases) of decoded token features: (B, T, D) -> (B, K, Vp)."""
        b, t, p, k = u.shape[0], self.n_tokens, self.config.patch, self.n_classes
        if self.config.embedding == "factored":
            f = self.dec_out(u)  # (B, T, S*P)
            f = f.reshape(b, t, -1, p)  # (B, T, S, P)
            f = f.permute(0, 2, 1, 3).reshape(b, -1, self.padded)  # (B, S, Vp)
            r = self.readout.permute(2, 1, 0)  # (K, S, Vp)
            # one class at a time: a (B, S, Vp) temporary instead of (B, K, S, Vp)
            return torch.stack([(f * r[c][None]).sum(dim=1) for c in range(k)], dim=1)  # (B, K, Vp)
        ut = u.transpose(0, 1)  # (T, B, D)
        o = torch.bmm(ut, self.dec_table)  # (T, B, P*K)
        if self.config.neighbour:
            half = (p // 2) * k  # a token's first half reads its previous token too, the rest its next token
            prev = F.pad(ut[:-1], (0, 0, 0, 0, 1, 0))  # (T, B, D): token t-1 at t (zeros at 0)
            nxt = F.pad(ut[1:], (0, 0, 0, 0, 0, 1))  # (T, B, D): token t+1 at t (zeros at T-1)
            o = o + torch.cat([torch.bmm(prev, self.dec_near[:, :, :half]),
                               torch.bmm(nxt, self.dec_near[:, :, half:])], dim=2)  # (T, B, P*K)
        return o.reshape(t, b, p, k).permute(1, 3, 0, 2).reshape(b, k, self.padded)  # (B, K, Vp)

    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Allele logits of latents.

        Parameters
        ----------
        z : float, shape (B, C, T)
        labels : int, shape (B,), optional
            Label indices; ``n_labels`` (or ``None``) means "no label".

        Returns
        -------
        float, shape (B, K, V): unnormalised log-probabilities of each allele class.
        """
        b = z.shape[0]
        h = self.dec_in(z.transpose(1, 2))  # (B, T, D)
        for block in self.dec_blocks:
            h = block(h)
        logits = self._read_out(F.gelu(self.dec_norm(h)))  # (B, K, Vp)
        logits = logits + self.snp_bias.T[None]
        if self.label_bias is not None:
            if labels is None:
                labels = torch.full((b,), self.n_labels, dtype=torch.long, device=z.device)
            logits = logits + self.label_bias[labels].permute(0, 2, 1)  # (B, K, Vp)
        return logits[:, :, : self.n_variants]

    def forward(self, alleles: torch.Tensor, labels: torch.Tensor | None, *,
                rng: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Per-row loss terms of one pass (reparameterised sample drawn from ``generator``).

        Returns
        -------
        dict with ``loss`` (B,) = ``nll + kl_weight * kl`` (the per-row loss a DP optimiser
        clips), ``nll`` (B,) in nats summed over observed SNPs, ``kl`` (B,) in nats,
        ``observed`` (B,) observed SNP count.
        """
        mu, logvar = self.encode(alleles)  # (B, C, T)
        gdev = rng.device if rng is not None else mu.device
        eps = torch.randn(mu.shape, generator=rng, device=gdev, dtype=mu.dtype).to(mu.device)
        z = mu + eps * (0.5 * logvar).exp()
        logits = self.decode(z, labels)  # (B, K, V)
        target = alleles.long()
        ok = target >= 0  # (B, V)
        nll = F.cross_entropy(logits, target.clamp(min=0), reduction="none")  # (B, V)
        nll = (nll * ok).sum(dim=1)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=(1, 2))  # (B,)
        return {"loss": nll + self.config.kl_weight * kl, "nll": nll, "kl": kl, "observed": ok.sum(dim=1)}


def sample_alleles(logits: torch.Tensor, *, rng: torch.Generator | None = None,
                   argmax: bool = False, temperature: float = 1.0) -> torch.Tensor:
    """Draw allele classes from decoder logits.

    Parameters
    ----------
    logits : float, shape (B, K, V)
    argmax : bool
        Most likely class instead of a draw (loses individual diversity; off by default).
    temperature : float
        Logits are divided by it before the draw.

    Returns
    -------
    int8, shape (B, V)
    """
    if argmax:
        return logits.argmax(dim=1).to(torch.int8)
    probs = torch.softmax(logits.float() / temperature, dim=1)  # (B, K, V)
    cdf = probs.cumsum(dim=1)[:, :-1]  # (B, K-1, V)
    gdev = rng.device if rng is not None else probs.device
    u = torch.rand(probs.shape[0], 1, probs.shape[2], generator=rng, device=gdev).to(probs.device)  # (B, 1, V)
    return (u > cdf).sum(dim=1).to(torch.int8)  # inverse-CDF draw, (B, V)
