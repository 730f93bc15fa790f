"""The LD prior a trained generator carries: banded per-label SNP correlations and the decoding options that use it.

Fitted by :mod:`genosynth.training.ld_fit`; used by :mod:`genosynth.sampling.ld_guidance`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any
import numpy as np
from genosynth.errors import InputError
if TYPE_CHECKING:  # pragma: no cover
    pass


METHODS = ("none", "copula", "latent", "latent+copula")
CHOICES = ("auto", *METHODS)  # what a model's sampling.corr_guidance may say: "auto" is resolved per prior (sampling.ld_guidance.auto_method)
REACH = ("never", "copula", "always")  # when copula decoding mixes sharp marginals (CorrGuideConfig.reach)


@dataclass
class CorrGuideConfig:
    """Options of correlation-guided decoding (saved with the prior in a checkpoint)."""

    method: str = "latent+copula"  # none | copula | latent | latent+copula (the ablation is one flag)
    window: int = 64  # copula: SNP pairs within this many positions are constrained (band width)
    latent_window: int = 768  # latent guidance: SNP pairs within this many positions (and max_bp) enter its loss
    max_bp: int | None = 1_000_000  # ... and at most this many bp apart on one chromosome (None: any)
    calib_rows: int = 64  # rows per label used to solve the residual correlations (evenly spaced)
    quad_nodes: int = 8  # Gauss-Legendre nodes of the bivariate normal integral
    newton_iters: int = 6  # safeguarded Newton iterations per SNP pair
    small: float = 0.05  # |residual angle| below this after one Newton step is taken as is
    var_floor: float = 1e-2  # least conditional variance of u_j given its window (PD guard)
    reach: str = "copula"  # mix sharp marginals towards the label mean where the prior is out of the copula's reach: never | copula (method copula only) | always
    reach_r: float = 0.95  # ... out of reach = not reached by a residual correlation |R| <= reach_r
    reach_step: float = 0.125  # ... mixing weights rise in steps this large
    reach_partners: int = 8  # ... only SNPs with at most this many constrained partners mix (sparse panels; a dense band keeps its rows)
    reach_af: float = 0.05  # ... and fully mixed SNPs' frequencies may move this much towards their prior pair's Frechet bound (two classes; 0: never)
    reach_floor: float = 1e-6  # ... and the copula's PD guards relax to this (var_floor and ridge; |R| <= sqrt(1 - reach_floor)) so r near 1 is reachable
    latent_steps: int = 24  # gradient steps on the latents (method latent*)
    latent_lr: float = 0.05  # Adam learning rate of those steps
    latent_af_weight: float = 10.0  # weight of the allele-frequency anchor in the latent loss
    latent_z_weight: float = 1e-3  # weight of ||z - z0||^2 / numel (keeps latents near the diffusion draw)
    latent_chunk_cells: int = 2 ** 23  # latent steps back-propagate through the decoder in chunks of rows x SNPs this large

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"--corr-guidance must be one of {', '.join(METHODS)}, got {self.method!r}")
        if int(self.window) != self.window or self.window < 1:
            raise InputError(f"correlation window must be a positive number of SNPs, got {self.window}")
        if int(self.latent_window) != self.latent_window or self.latent_window < 1:
            raise InputError(f"latent guidance window must be a positive number of SNPs, got {self.latent_window}")
        if self.latent_chunk_cells < 1:
            raise InputError(f"latent_chunk_cells must be >= 1, got {self.latent_chunk_cells}")
        if self.calib_rows < 2:
            raise InputError(f"calib_rows must be >= 2, got {self.calib_rows}")
        if not 0 < self.var_floor < 1:
            raise InputError(f"var_floor must lie in (0, 1), got {self.var_floor}")
        if self.reach not in REACH:
            raise InputError(f"reach must be one of {', '.join(REACH)}, got {self.reach!r}")
        if not 0 < self.reach_r < 1 or not 0 < self.reach_step <= 1:
            raise InputError(f"reach_r must lie in (0, 1) and reach_step in (0, 1], got {self.reach_r}, {self.reach_step}")
        if int(self.reach_partners) != self.reach_partners or self.reach_partners < 0:
            raise InputError(f"reach_partners must be a number of SNPs >= 0, got {self.reach_partners}")
        if not 0 <= self.reach_af <= 0.5:
            raise InputError(f"reach_af must lie in [0, 0.5], got {self.reach_af}")
        if not 0 < self.reach_floor < 1:
            raise InputError(f"reach_floor must lie in (0, 1), got {self.reach_floor}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class CorrelationPrior:
    """Banded within-label SNP correlations of the training cohort.

    Parameters
    ----------
    bands : float32, shape (L, V, window)
        ``bands[l, j, k-1]`` = correlation of ALT dosages of SNPs ``j`` and ``j+k`` among training
        people of label ``l``, shrunk towards 0 by its noise (sampling noise for a plain prior,
        the mechanism's noise for a DP one; :func:`genosynth.training.ld_fit.shrink_bands`);
        entries with ``j+k >= V`` are 0.
    labels : list of str, length L
        Label vocabulary (same order as the generator's).
    window : int
    private : bool
        True when released by the Gaussian mechanism (``--epsilon``), False for the plain,
        un-noised aggregate (stored only in runs without a privacy budget).
    info : dict
        How it was made: ``n_per_label`` (exact counts only without a budget; DP counts or nothing
        with one), ``noise_multiplier``, ``clip``, ``label_column``, ``shrinkage`` (what the
        shrinkage kept), ``fitted_window`` (band fitted before it was ended where shrunk LD ends),
        ``copula_window``. Checkpoints written before shrinkage hold the raw band and decode as before.
    """

    bands: np.ndarray
    labels: list[str]
    window: int
    private: bool = False
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        b = np.asarray(self.bands, dtype=np.float32)
        if b.ndim != 3 or b.shape[0] != len(self.labels) or b.shape[2] != self.window:
            raise InputError(
                f"prior bands must have shape (labels={len(self.labels)}, V, window={self.window}); got {b.shape}"
            )
        if not np.isfinite(b).all() or np.abs(b).max(initial=0.0) > 1.0 + 1e-6:
            raise InputError("prior bands must be finite correlations in [-1, 1]")
        self.bands = b

    @property
    def n_variants(self) -> int:
        return int(self.bands.shape[1])

    def band(self, label: int | None) -> np.ndarray:
        """Band of label index ``label`` (float64, shape (V, window)); ``None`` or ``L``: weighted mean."""
        if label is None or label == len(self.labels):
            n = np.asarray([self.info.get("n_per_label", {}).get(lab, 1) for lab in self.labels], dtype=np.float64)
            return np.tensordot(n / n.sum(), self.bands.astype(np.float64), axes=1)
        return self.bands[int(label)].astype(np.float64)

    def state_dict(self) -> dict:
        """Plain-Python/numpy state for a checkpoint (aggregate only: no per-person value)."""
        return {"bands": self.bands.copy(), "labels": list(self.labels), "window": int(self.window),
                "private": bool(self.private), "info": dict(self.info)}

    @classmethod
    def from_state_dict(cls, state: dict) -> "CorrelationPrior":
        return cls(bands=np.asarray(state["bands"]), labels=list(state["labels"]), window=int(state["window"]),
                   private=bool(state["private"]), info=dict(state.get("info", {})))


def previous_counts(v: int, window: int, *, chrom: Sequence | None = None, pos: Sequence | None = None,
                    max_bp: int | None = None) -> np.ndarray:
    """How many preceding SNPs each SNP is conditioned on.

    Returns
    -------
    int64, shape (V,): ``k_j <= min(window, j)`` such that SNPs ``j-k_j .. j-1`` share ``j``'s
    chromosome and lie within ``max_bp`` of it.
    """
    j = np.arange(v)
    k = np.minimum(window, j)
    if chrom is not None:
        c = np.asarray(chrom).astype(str)
        start = np.zeros(v, dtype=np.int64)  # first index of each SNP's chromosome run
        brk = np.flatnonzero(c[1:] != c[:-1]) + 1
        start[brk] = brk
        start = np.maximum.accumulate(start)
        k = np.minimum(k, j - start)
        if pos is not None and max_bp is not None:
            p = np.asarray(pos, dtype=np.int64)
            first = np.zeros(v, dtype=np.int64)
            for s, e in zip(np.r_[0, brk], np.r_[brk, v]):  # searchsorted within each chromosome run
                first[s:e] = s + np.searchsorted(p[s:e], p[s:e] - int(max_bp), side="left")
            k = np.minimum(k, j - first)
    return np.maximum(k, 0).astype(np.int64)


def usable_pairs(kprev: np.ndarray, window: int) -> np.ndarray:
    """bool, shape (V, window): pair (j, j+l) is one that decoding conditions on (``kprev[j+l] >= l``).

    The constraint belongs to j+l's window (:func:`previous_counts`) and is stored at row j, the row
    a band gives it; training masks the stored prior with it, latent guidance its loss.
    """
    v = len(kprev)
    out = np.zeros((v, window), dtype=bool)
    for lag in range(1, window + 1):
        if lag < v:
            out[: v - lag, lag - 1] = kprev[lag:] >= lag
    return out


def constrained_partners(kprev: np.ndarray, window: int) -> np.ndarray:
    """int, shape (V,): how many SNPs each SNP is tied to in the copula band (before it and after it)."""
    kprev = np.asarray(kprev)
    return kprev + usable_pairs(kprev, window).sum(1)


def dense_panel(chrom: Sequence, pos: Sequence, *, window: int = 64, max_bp: int | None = 1_000_000,
                max_partners: int = 8) -> bool:
    """Whether some SNP has more than ``max_partners`` partners in a copula band of ``window`` SNPs within
    ``max_bp`` on its chromosome: a dense region, not a panel of SNPs far apart (ancestry-informative
    panels, LD-pruned arrays). ``"auto"`` picks the training configuration
    (:func:`genosynth.models.config.config_for`) and the decoding
    (:func:`genosynth.sampling.ld_guidance.auto_method`) by it.

    >>> dense_panel(["1"] * 4, [1, 2_000_000, 4_000_000, 6_000_000])
    False
    >>> dense_panel(["1"] * 40, list(range(1000, 41000, 1000)))
    True
    """
    kprev = previous_counts(len(pos), window, chrom=chrom, pos=pos, max_bp=max_bp)
    return bool((constrained_partners(kprev, window) > max_partners).any())
