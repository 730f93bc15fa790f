"""A 1D Diffusion Transformer (DiT) that denoises VAE latents of shape (channels, tokens).

The network follows Peebles & Xie (2023): the latent is cut into patches, each patch becomes a
token, a stack of transformer blocks with adaLN-Zero conditioning processes the tokens, and a
final adaptive layer maps them back to the latent shape. Conditioning is the sum of a timestep
embedding, an ancestry-label embedding and (optionally) a binary-phenotype embedding. Both label
embedders keep one extra "null" row used for classifier-free guidance (Ho & Salimans, 2022).

The code is written for per-sample gradients (DP-SGD): only ``nn.Linear``, ``nn.Embedding`` and
parameter-free ``nn.LayerNorm`` hold parameters, every layer sees the batch in its first
dimension, and attention is written with plain linear layers and
``torch.nn.functional.scaled_dot_product_attention``. This works with opacus'
``GradSampleModule`` and with ``torch.func`` (``vmap(grad(functional_call(...)))``).

The model call contract shared with :mod:`genosynth.models.diffusion` is
``model(x, t, y=..., pheno=...) -> eps`` with ``x`` of shape (B, C, L), integer timesteps ``t``
of shape (B,) and integer labels.

References
----------
.. [1] W. Peebles and S. Xie, "Scalable Diffusion Models with Transformers", ICCV 2023.
   https://arxiv.org/abs/2212.09748 (reference code: facebookresearch/DiT ``models.py``).
.. [2] J. Ho and T. Salimans, "Classifier-Free Diffusion Guidance", 2022.
   https://arxiv.org/abs/2207.12598
.. [3] A. Vaswani et al., "Attention Is All You Need", NeurIPS 2017 (sinusoidal embeddings).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "DiTConfig",
    "DiT1D",
    "DIT_SIZES",
    "dit_from_name",
    "TimestepEmbedder",
    "LabelEmbedder",
    "DiTBlock",
    "LocalMlp",
    "FinalLayer",
    "sincos_pos_embed_1d",
    "count_params",
]


# ----------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------


@dataclass
class DiTConfig:
    """Hyper-parameters of :class:`DiT1D`. Saved in checkpoints via :meth:`DiTConfig.to_dict`."""

    in_channels: int = 8  # C: latent channels produced by the VAE
    n_tokens: int = 64  # L: latent length; padded inside to a multiple of patch_size
    patch_size: int = 2  # p: latent positions per transformer token
    hidden: int = 128  # D: transformer width
    depth: int = 6  # number of DiT blocks
    heads: int = 4  # attention heads; must divide hidden
    mlp_ratio: float = 4.0  # MLP width = mlp_ratio * hidden
    n_classes: int = 1  # ancestry labels 0..n_classes-1; index n_classes is the null label
    n_phenotypes: int = 0  # 0 = no phenotype conditioning; 2 = case/control (null = 2)
    class_dropout: float = 0.1  # training-time probability of replacing labels by null (CFG)
    pheno_dropout: float = 0.1  # extra probability of a null phenotype alone (per-condition CFG; off when class_dropout is 0)
    learn_sigma: bool = False  # also output a variance channel per latent channel (2C outputs)
    pos_embed: str = "sincos"  # "sincos" (fixed buffer) or "learned" (nn.Embedding)
    freq_dim: int = 256  # size of the sinusoidal timestep features fed to the timestep MLP
    label_parents: bool = True  # also embed each label's parent (pop within super_pop) when the data have one
    parents: tuple[int, ...] | None = None  # parent index of every label (filled at build; None = flat labels)
    local_mlp: int = 0  # width of a per-token MLP (its own weights at every DiT token) added to each block's MLP; 0 = off
    local_window: int = 0  # the per-token MLP also reads this many tokens either side of its own (0 = its own only)

    def __post_init__(self) -> None:
        if self.hidden % self.heads != 0:
            raise ValueError(f"hidden={self.hidden} must be divisible by heads={self.heads}")
        if min(self.in_channels, self.n_tokens, self.patch_size, self.depth, self.n_classes) < 1:
            raise ValueError("in_channels, n_tokens, patch_size, depth and n_classes must be >= 1")
        if self.n_phenotypes < 0:
            raise ValueError("n_phenotypes must be 0 (off) or the number of phenotype classes")
        if not 0.0 <= self.class_dropout < 1.0:
            raise ValueError(f"class_dropout={self.class_dropout} must lie in [0, 1)")
        if not 0.0 <= self.pheno_dropout < 1.0:
            raise ValueError(f"pheno_dropout={self.pheno_dropout} must lie in [0, 1)")
        if self.pos_embed not in ("sincos", "learned"):
            raise ValueError(f"pos_embed={self.pos_embed!r}: use 'sincos' or 'learned'")
        if self.local_mlp < 0 or self.local_window < 0:
            raise ValueError(f"local_mlp={self.local_mlp} and local_window={self.local_window} must be >= 0 (0 = off)")

    @property
    def n_patches(self) -> int:
        """Number of transformer tokens, ceil(n_tokens / patch_size)."""
        return -(-self.n_tokens // self.patch_size)

    @property
    def out_channels(self) -> int:
        """Output channels: C, or 2C with ``learn_sigma``."""
        return self.in_channels * (2 if self.learn_sigma else 1)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DiTConfig":
        d = dict(d)
        if d.get("parents") is not None:
            d["parents"] = tuple(int(p) for p in d["parents"])
        return cls(**d)


# ----------------------------------------------------------------------------------------------
# Embedding layers for timesteps, labels and positions
# ----------------------------------------------------------------------------------------------


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Apply adaLN modulation: ``x * (1 + scale) + shift`` with per-sample shift/scale."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)  # (B, N, D)


def sincos_pos_embed_1d(dim: int, n: int) -> np.ndarray:
    """Fixed 1D sine-cosine positional embedding.

    Parameters
    ----------
    dim : int
        Embedding size (even).
    n : int
        Number of positions.

    Returns
    -------
    numpy.ndarray, float32, shape (n, dim)
        Row i is ``[sin(i w_0), ..., sin(i w_{dim/2-1}), cos(i w_0), ...]`` with
        ``w_k = 10000^(-2k/dim)``.
    """
    if dim % 2:
        raise ValueError(f"positional embedding size {dim} must be even")
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))  # (dim/2,)
    out = np.arange(n, dtype=np.float64)[:, None] * omega[None, :]  # (n, dim/2)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1).astype(np.float32)  # (n, dim)


class TimestepEmbedder(nn.Module):
    """Embed scalar timesteps: sinusoidal features followed by a two-layer MLP."""

    def __init__(self, hidden: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    @staticmethod
    def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
        """Sinusoidal features of (possibly fractional) timesteps ``t`` of shape (B,) -> (B, dim)."""
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32,
                                                              device=t.device) / half)  # (half,)
        args = t.float()[:, None] * freqs[None]  # (B, half)
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (B, 2*half)
        if dim % 2:
            emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)  # (B, dim)
        return emb

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.timestep_embedding(t, self.freq_dim))  # (B, D)


class LabelEmbedder(nn.Module):
    """Embed class labels, with a null label for classifier-free guidance.

    Row ``n_classes`` of the table is the null (unconditional) label. In training mode each label
    is replaced by the null label with probability ``dropout``; the draw uses ``generator`` when
    given (so it is reproducible) and the global torch RNG otherwise. In eval mode, or when
    ``force_drop_ids`` is given, nothing is random: labels are dropped exactly where
    ``force_drop_ids`` is true.
    """

    def __init__(self, n_classes: int, hidden: int, dropout: float, parents: tuple[int, ...] | None = None):
        super().__init__()
        self.n_classes = n_classes
        self.dropout = dropout
        self.embedding_table = nn.Embedding(n_classes + 1, hidden)
        self.parent_table = None
        if parents is not None:  # hierarchical labels: a label's embedding = its own + its parent's
            n_parents = max(parents) + 1
            self.parent_table = nn.Embedding(n_parents + 1, hidden)  # row n_parents: null
            self.register_buffer("parent_of", torch.tensor([*parents, n_parents], dtype=torch.long))  # (n_classes + 1,)

    @property
    def null_index(self) -> int:
        return self.n_classes

    def token_drop(self, labels: torch.Tensor, *, force_drop_ids: torch.Tensor | None = None,
                   rng: torch.Generator | None = None) -> torch.Tensor:
        """Replace labels by the null index: randomly in training, or where ``force_drop_ids``."""
        if force_drop_ids is not None:
            drop = force_drop_ids.to(device=labels.device, dtype=torch.bool)  # (B,)
        elif self.training and self.dropout > 0:
            gdev = rng.device if rng is not None else labels.device
            drop = torch.rand(labels.shape, generator=rng, device=gdev) < self.dropout
            drop = drop.to(labels.device)  # (B,)
        else:
            return labels
        return torch.where(drop, torch.full_like(labels, self.null_index), labels)  # (B,)

    def forward(self, labels: torch.Tensor, *, force_drop_ids: torch.Tensor | None = None,
                rng: torch.Generator | None = None) -> torch.Tensor:
        labels = self.token_drop(labels.long(), force_drop_ids=force_drop_ids, rng=rng)
        if self.parent_table is None:
            return self.embedding_table(labels)  # (B, D)
        return self.embedding_table(labels) + self.parent_table(self.parent_of[labels])  # (B, D)


# ----------------------------------------------------------------------------------------------
# Transformer blocks
# ----------------------------------------------------------------------------------------------


class Attention(nn.Module):
    """Multi-head self-attention with plain linear layers (per-sample-gradient friendly)."""

    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, D // self.heads)  # (B, N, 3, H, Dh)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, N, Dh)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, H, N, Dh)
        return self.proj(out.transpose(1, 2).reshape(B, N, D))  # (B, N, D)


class Mlp(nn.Module):
    """Two-layer MLP with tanh-approximated GELU, as in ViT/DiT."""

    def __init__(self, hidden: int, mlp_hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(hidden, mlp_hidden)
        self.fc2 = nn.Linear(mlp_hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))  # (B, N, D)


class LocalMlp(nn.Module):
    """Two-layer MLP with its own weights at every token (a locally connected layer).

    A shared MLP must serve every genomic window with one set of weights; the haplotypes of a
    window are its own, so a per-token MLP can hold a window's haplotype clusters (benchmarks/
    RESULTS.md, "Why the DiT lost LD"). With ``window > 0`` token n reads tokens
    ``n - window .. n + window`` (zeros past the ends), so it also holds haplotypes that straddle
    two tokens. Parameters ``n_tokens * ((2 window + 1) hidden width + width hidden)``, linear in
    the SNP count. Plain parameters and batched matmuls over tokens (``baddbmm``, one per
    neighbour offset), so ``torch.func`` per-sample gradients work (opacus' ``GradSampleModule``
    has no rule for it).
    """

    def __init__(self, n_tokens: int, hidden: int, width: int, window: int = 0):
        super().__init__()
        self.window = window
        fan_in = (2 * window + 1) * hidden
        self.w1 = nn.Parameter(torch.empty(n_tokens, fan_in, width))
        self.b1 = nn.Parameter(torch.zeros(n_tokens, width))
        self.w2 = nn.Parameter(torch.empty(n_tokens, width, hidden))
        self.b2 = nn.Parameter(torch.zeros(n_tokens, hidden))
        nn.init.uniform_(self.w1, -math.sqrt(6.0 / (fan_in + width)), math.sqrt(6.0 / (fan_in + width)))
        nn.init.uniform_(self.w2, -math.sqrt(6.0 / (hidden + width)), math.sqrt(6.0 / (hidden + width)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, N, D = x.shape
        w = self.window
        xt = F.pad(x.transpose(0, 1), (0, 0, 0, 0, w, w))  # (N + 2w, B, D): token-major, zeros past the ends
        # token n reads tokens n-w..n+w: one batched matmul per offset k, input block k of w1. The blocks
        # come from unbind, not slices: a slice's backward zero-fills a gradient of w1's whole size per
        # offset (at 100,000 SNPs 38 MB, nine times a step), unbind's backward stacks the blocks once
        w1 = self.w1.reshape(N, 2 * w + 1, D, -1).unbind(1)  # 2w+1 x (N, D, W)
        h = self.b1.unsqueeze(1)  # (N, 1, W), broadcast over the batch by the first matmul
        for k in range(2 * w + 1):
            h = torch.baddbmm(h, xt[k:k + N], w1[k])  # (N, B, W)
        out = torch.baddbmm(self.b2.unsqueeze(1), F.gelu(h, approximate="tanh"), self.w2)  # (N, B, D)
        return out.transpose(0, 1)  # (B, N, D)


class DiTBlock(nn.Module):
    """Transformer block with adaLN-Zero conditioning.

    The conditioning vector ``c`` regresses shift, scale and gate for the attention and MLP
    branches. The regression layer starts at zero, so gates are zero and the block is the
    identity at initialisation. With ``local_mlp > 0`` a :class:`LocalMlp` of that width over
    ``n_tokens`` tokens (reading ``local_window`` tokens either side) is added to the MLP branch
    (same modulation and gate).
    """

    def __init__(self, hidden: int, heads: int, mlp_ratio: float = 4.0, *, local_mlp: int = 0,
                 n_tokens: int = 0, local_window: int = 0):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden, heads)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden, int(hidden * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 6 * hidden))
        self.local = LocalMlp(n_tokens, hidden, local_mlp, local_window) if local_mlp > 0 else None

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        mod = self.adaLN_modulation(c).chunk(6, dim=1)  # 6 x (B, D)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mod
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        h = modulate(self.norm2(x), shift_mlp, scale_mlp)  # (B, N, D)
        branch = self.mlp(h) if self.local is None else self.mlp(h) + self.local(h)  # (B, N, D)
        x = x + gate_mlp.unsqueeze(1) * branch
        return x  # (B, N, D)


class FinalLayer(nn.Module):
    """adaLN (shift, scale) followed by a linear map from tokens to patches."""

    def __init__(self, hidden: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden, patch_size * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)  # 2 x (B, D)
        return self.linear(modulate(self.norm_final(x), shift, scale))  # (B, N, C_out*p)


# ----------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------


#: largest activation of one row chunk in an inference pass of :class:`DiT1D` (bytes): below
#: glibc's 32 MiB mmap ceiling, so a sampling step reuses heap memory instead of zero-filling fresh
#: pages (at 100,000 SNPs a 512-row pass made 160 MB activations, and the kernel's page zeroing
#: was over 40 % of a sampling run's CPU time; with the copula's blocked Markov draw, 1,000 people
#: took 163 s instead of 326 s with the same .bed; benchmarks/RESULTS.md, issue 18, session 16)
INFERENCE_CHUNK_BYTES = 16 * 2**20


class DiT1D(nn.Module):
    """Diffusion Transformer over 1D latents of shape (C, L).

    Parameters
    ----------
    config : DiTConfig
        Sizes and conditioning options.

    Notes
    -----
    A latent length ``L`` that is not a multiple of ``patch_size`` is zero-padded on the right
    to ``n_patches * patch_size`` inside :meth:`forward` and the output is cropped back to
    ``L``; inputs must have exactly ``config.n_tokens`` positions.
    """

    def __init__(self, config: DiTConfig):
        super().__init__()
        self.config = cfg = config
        D, p = cfg.hidden, cfg.patch_size
        self.x_embedder = nn.Linear(cfg.in_channels * p, D)  # patch (C*p) -> token (D)
        self.t_embedder = TimestepEmbedder(D, cfg.freq_dim)
        self.y_embedder = LabelEmbedder(cfg.n_classes, D, cfg.class_dropout,
                                        parents=cfg.parents if cfg.label_parents else None)
        self.pheno_embedder = (LabelEmbedder(cfg.n_phenotypes, D, cfg.class_dropout)
                               if cfg.n_phenotypes > 0 else None)
        if cfg.pos_embed == "learned":
            self.pos_embedder = nn.Embedding(cfg.n_patches, D)
        else:
            self.pos_embedder = None
        self.register_buffer("pos_embed", torch.from_numpy(sincos_pos_embed_1d(D, cfg.n_patches)),
                             persistent=False)  # (N, D)
        self.blocks = nn.ModuleList([DiTBlock(D, cfg.heads, cfg.mlp_ratio, local_mlp=cfg.local_mlp,
                                              n_tokens=cfg.n_patches, local_window=cfg.local_window)
                                     for _ in range(cfg.depth)])
        self.final_layer = FinalLayer(D, p, cfg.out_channels)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Xavier linear layers, N(0, 0.02) embeddings and zero adaLN / output layers (adaLN-Zero)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        if self.pheno_embedder is not None:
            nn.init.normal_(self.pheno_embedder.embedding_table.weight, std=0.02)
        if self.y_embedder.parent_table is not None:
            nn.init.normal_(self.y_embedder.parent_table.weight, std=0.02)
        if self.pos_embedder is not None:  # start the learned table at the sincos values
            with torch.no_grad():
                self.pos_embedder.weight.copy_(self.pos_embed)
        for lin in self.t_embedder.mlp:
            if isinstance(lin, nn.Linear):
                nn.init.normal_(lin.weight, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    # -- shape helpers -------------------------------------------------------------------------

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, L) -> (B, N, C*p), zero-padding L up to N*p; each token is laid out as (C, p)."""
        cfg = self.config
        B, C, L = x.shape
        pad = cfg.n_patches * cfg.patch_size - L
        if pad:
            x = F.pad(x, (0, pad))  # (B, C, N*p)
        x = x.reshape(B, C, cfg.n_patches, cfg.patch_size)  # (B, C, N, p)
        return x.permute(0, 2, 1, 3).reshape(B, cfg.n_patches, C * cfg.patch_size)  # (B, N, C*p)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, C_out*p) -> (B, C_out, L), cropping the padding (inverse of :meth:`patchify`)."""
        cfg = self.config
        B, N, _ = x.shape
        x = x.reshape(B, N, cfg.out_channels, cfg.patch_size)  # (B, N, C_out, p)
        x = x.permute(0, 2, 1, 3).reshape(B, cfg.out_channels, N * cfg.patch_size)  # (B, C_out, N*p)
        return x[:, :, : cfg.n_tokens]  # (B, C_out, L)

    def _check(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, pheno) -> None:
        cfg = self.config
        if x.ndim != 3 or x.shape[1] != cfg.in_channels or x.shape[2] != cfg.n_tokens:
            raise ValueError(f"DiT1D expects latents of shape (B, {cfg.in_channels}, {cfg.n_tokens}),"
                             f" got {tuple(x.shape)}; build the model with DiTConfig(in_channels=C,"
                             f" n_tokens=L) matching the VAE latent")
        if t.shape != (x.shape[0],) or y.shape != (x.shape[0],):
            raise ValueError(f"t and y must have shape ({x.shape[0]},), got {tuple(t.shape)} "
                             f"and {tuple(y.shape)}")
        if pheno is not None and self.pheno_embedder is None:
            raise ValueError("pheno given but the model was built with n_phenotypes=0")

    # -- forward -------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor,
                pheno: torch.Tensor | None = None, *, force_drop_ids: torch.Tensor | None = None,
                pheno_drop_ids: torch.Tensor | None = None,
                rng: torch.Generator | None = None) -> torch.Tensor:
        """Predict the noise of a noisy latent.

        Parameters
        ----------
        x : torch.Tensor, float, shape (B, C, L)
            Noisy latents.
        t : torch.Tensor, int64 (or float), shape (B,)
            Diffusion timesteps.
        y : torch.Tensor, int64, shape (B,)
            Ancestry labels in ``[0, n_classes]`` (``n_classes`` = null label).
        pheno : torch.Tensor, int64, shape (B,), optional
            Phenotype labels in ``[0, n_phenotypes]``; ``None`` means the null phenotype
            (unconditional on phenotype) when the model has a phenotype embedder.
        force_drop_ids : torch.Tensor, bool, shape (B,), optional
            Replace both labels by their null index exactly here (no random drop). Used by
            :meth:`forward_with_cfg`; DP code may draw the drops outside the per-sample pass.
        pheno_drop_ids : torch.Tensor, bool, shape (B,), optional
            Also replace the phenotype alone by its null index here (ancestry kept).
        rng : torch.Generator, optional
            Source of the training-time label drops (reproducible CFG dropout). In training
            mode each sample has both its labels dropped together with probability
            ``class_dropout``, and a phenotype model also drops the phenotype alone with
            probability ``pheno_dropout`` (so ``forward_with_cfg`` can guide the two conditions
            with separate scales); the global torch RNG is used when ``rng`` is None.

        Returns
        -------
        torch.Tensor, float, shape (B, C_out, L)
            Predicted noise (C_out = 2C with ``learn_sigma``: noise then variance channels).
        """
        self._check(x, t, y, pheno)
        c = self._condition(t, y, pheno, force_drop_ids=force_drop_ids, pheno_drop_ids=pheno_drop_ids,
                            rng=rng)  # (B, D)
        rows = x.shape[0] if torch.is_grad_enabled() else self.rows_per_pass()
        if x.shape[0] <= rows:
            return self._tokens(x, c)  # (B, C_out, L)
        # without gradients (sampling), rows go in chunks whose activations stay under
        # INFERENCE_CHUNK_BYTES: rows are independent, so the output is the same, and
        # glibc serves them from its heap instead of zero-filling fresh pages for every pass
        return torch.cat([self._tokens(x[s:s + rows], c[s:s + rows])
                          for s in range(0, x.shape[0], rows)])  # (B, C_out, L)

    def rows_per_pass(self) -> int:
        """Rows per chunk of an inference pass: the widest activation of a row (a block's MLP, qkv, or
        per-token MLP and its input of neighbouring tokens, over all tokens, float32) times the rows stays
        under :data:`INFERENCE_CHUNK_BYTES`."""
        cfg = self.config
        width = max(int(cfg.hidden * cfg.mlp_ratio), 3 * cfg.hidden, cfg.local_mlp,
                    (2 * cfg.local_window + 1) * cfg.hidden * (cfg.local_mlp > 0), cfg.in_channels * cfg.patch_size)
        return max(1, INFERENCE_CHUNK_BYTES // (4 * cfg.n_patches * width))

    def _tokens(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """The transformer on latents ``x`` (B, C, L) given conditioning ``c`` (B, D) -> (B, C_out, L)."""
        x = self.x_embedder(self.patchify(x))  # (B, N, D)
        if self.pos_embedder is not None:
            pos = torch.arange(self.config.n_patches, device=x.device).expand(x.shape[0], -1)
            x = x + self.pos_embedder(pos)  # (B, N, D)
        else:
            x = x + self.pos_embed.to(x.dtype)  # (B, N, D)
        for block in self.blocks:
            x = block(x, c)  # (B, N, D)
        x = self.final_layer(x, c)  # (B, N, C_out*p)
        return self.unpatchify(x)  # (B, C_out, L)

    def _condition(self, t: torch.Tensor, y: torch.Tensor, pheno: torch.Tensor | None, *,
                   force_drop_ids: torch.Tensor | None, pheno_drop_ids: torch.Tensor | None,
                   rng: torch.Generator | None) -> torch.Tensor:
        """Conditioning vector c of :meth:`forward`: timestep + ancestry (+ phenotype) embeddings,
        with the label drops described there. Returns shape (B, D)."""
        gdev = rng.device if rng is not None else y.device
        random_drops = force_drop_ids is None and self.training and self.config.class_dropout > 0
        if random_drops:
            # one draw per sample drops ancestry and phenotype together, so the joint null
            # condition used by forward_with_cfg is trained with probability class_dropout
            force_drop_ids = (torch.rand(y.shape, generator=rng, device=gdev)
                              < self.config.class_dropout).to(y.device)  # (B,)
        c = self.t_embedder(t) + self.y_embedder(y, force_drop_ids=force_drop_ids)  # (B, D)
        if self.pheno_embedder is not None:
            if pheno is None:
                pheno = torch.full_like(y, self.pheno_embedder.null_index)
            if pheno_drop_ids is None and random_drops and self.config.pheno_dropout > 0:
                # only when the joint drop is random too: callers that pass force_drop_ids (DP code,
                # forward_with_cfg) decide every drop themselves; class_dropout 0 turns all drops off
                # a second draw trains the ancestry-only condition (phenotype null, ancestry kept)
                pheno_drop_ids = (torch.rand(y.shape, generator=rng, device=gdev)
                                  < self.config.pheno_dropout).to(y.device)  # (B,)
            drop = force_drop_ids
            if pheno_drop_ids is not None:
                drop = pheno_drop_ids.bool() if drop is None else drop.bool() | pheno_drop_ids.bool()  # (B,)
            c = c + self.pheno_embedder(pheno, force_drop_ids=drop)  # (B, D)
        return c

    def forward_with_cfg(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor,
                         pheno: torch.Tensor | None = None, *, scale: float,
                         pheno_scale: float | None = None) -> torch.Tensor:
        """Classifier-free guided noise prediction.

        Joint guidance (``pheno_scale`` None, or a model without phenotype) runs the conditional
        and the null-label (ancestry and phenotype both null) passes in one batch of size 2B and
        returns ``eps_u + scale * (eps_c - eps_u)``: ``scale = 1`` gives the plain conditional
        prediction, ``scale = 0`` the unconditional one.

        Separate guidance of each condition (``pheno_scale`` given, phenotype model, ``pheno``
        given) adds the ancestry-only pass (phenotype null) and returns
        ``eps_u + scale * (eps_a - eps_u) + pheno_scale * (eps_c - eps_a)`` (compositional CFG,
        Liu et al. 2022): ``scale`` pushes towards the ancestry, ``pheno_scale`` towards the
        case/control status given the ancestry; ``pheno_scale == scale`` equals joint guidance.
        With ``learn_sigma`` only the noise channels are guided; the variance channels are the
        conditional ones.

        Returns
        -------
        torch.Tensor, float, shape (B, C_out, L)
        """
        B = x.shape[0]
        separate = pheno_scale is not None and pheno is not None and self.pheno_embedder is not None
        k = 3 if separate else 2  # passes: conditional, [ancestry only,] null
        xk = torch.cat([x] * k, dim=0)  # (kB, C, L)
        tk = torch.cat([t] * k, dim=0)  # (kB,)
        yk = torch.cat([y] * k, dim=0)  # (kB,)
        pk = None if pheno is None else torch.cat([pheno] * k, dim=0)  # (kB,)
        row = torch.arange(k * B, device=x.device)  # (kB,)
        drop = row >= (k - 1) * B  # last block -> both labels null
        pheno_drop = row >= B if separate else None  # blocks 2.. -> phenotype null
        out = self.forward(xk, tk, yk, pk, force_drop_ids=drop, pheno_drop_ids=pheno_drop)  # (kB, C_out, L)
        C = self.config.in_channels
        eps, rest = out[:, :C], out[:, C:]
        eps_c, eps_u = eps[:B], eps[(k - 1) * B:]  # (B, C, L) each
        if separate:
            eps_a = eps[B:2 * B]  # (B, C, L) ancestry only
            guided = eps_u + scale * (eps_a - eps_u) + pheno_scale * (eps_c - eps_a)  # (B, C, L)
        else:
            guided = eps_u + scale * (eps_c - eps_u)  # (B, C, L)
        return torch.cat([guided, rest[:B]], dim=1)  # (B, C_out, L)


# ----------------------------------------------------------------------------------------------
# Registry of named sizes
# ----------------------------------------------------------------------------------------------

#: Named sizes. Parameter counts (with in_channels=8, patch_size=2): DiT-T ~0.33M,
#: DiT-S ~1.8M, DiT-B ~9.6M. Override any field with :func:`dit_from_name`.
DIT_SIZES: dict[str, dict] = {
    "DiT-T": dict(hidden=64, depth=4, heads=4, mlp_ratio=4.0, patch_size=2),
    "DiT-S": dict(hidden=128, depth=6, heads=4, mlp_ratio=4.0, patch_size=2),
    "DiT-B": dict(hidden=256, depth=8, heads=8, mlp_ratio=4.0, patch_size=2),
}


def dit_from_name(name: str, **overrides) -> DiT1D:
    """Build a registered DiT size, e.g. ``dit_from_name("DiT-S", in_channels=16, n_tokens=128,
    n_classes=5, n_phenotypes=2)``. A suffix ``/p`` sets the patch size (``"DiT-S/4"``)."""
    base, _, patch = name.partition("/")
    if base not in DIT_SIZES:
        raise ValueError(f"unknown DiT size {name!r}; choose one of {sorted(DIT_SIZES)} "
                         f"(optionally with '/patch', e.g. 'DiT-S/4')")
    kw = dict(DIT_SIZES[base])
    if patch:
        kw["patch_size"] = int(patch)
    kw.update(overrides)
    return DiT1D(DiTConfig(**kw))


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

