"""One privacy accountant for the whole pipeline, and calibration of noise to a target ε.

Every private input of genosynth is touched only through a small set of mechanisms. Each use is
recorded as a named *event* in one :class:`PrivacyAccountant`; the accountant composes all
events with Rényi differential privacy (RDP) on a fixed grid of orders and converts the total to
(ε, δ) with the improved conversion of Balle et al. (2020) / Canonne, Kamath & Steinke (2020),
the same conversion opacus and Google's dp-accounting use.

Neighbouring relation
---------------------
All guarantees are for *zero-out* neighbours ("replace one person's record by a null record",
dp-accounting's ``REPLACE_SPECIAL``; Kairouz et al. 2021, Definition 1.1). The null record
contributes nothing to any sum (clipped contribution 0) and its latent is the zero vector. The
number of people ``n`` is therefore public. For Poisson-subsampled DP-SGD and Gaussian sums of
clipped contributions the RDP curves are the same as for add/remove-one neighbours. A
replace-one guarantee follows by group privacy (two zero-out steps).

Event kinds
-----------
``gaussian``
    Gaussian mechanism on a quantity of L2 sensitivity Δ with noise σ, noise multiplier
    ``z = σ/Δ``, applied ``count`` times without subsampling. RDP ``α / (2 z²)`` per use.
``subsampled_gaussian``
    Poisson-subsampled Gaussian (DP-SGD; Abadi et al. 2016) with sampling rate ``q``, noise
    multiplier ``z`` and ``count`` steps. RDP from Mironov, Talwar & Zhang (2019), computed by
    :func:`opacus.accountants.analysis.rdp.compute_rdp`.
``stage1``
    Release of norm-clipped latents through the diffusion forward process (dp-promise Phase I,
    Wang et al. 2024); see :func:`stage1_noise_multiplier` and :meth:`PrivacyAccountant.add_stage1`.
``top_k``
    ``k`` picks of the exponential mechanism (one-shot Gumbel top-k, Durfee & Rogers 2019) with
    Gumbel scale ``z Δ``; each pick is ``2/z``-DP and ``(2/z)²/8``-zCDP (bounded range; Cesar &
    Rogers 2021), so RDP ``k α / (2 z²)``.
``zcdp``
    Any ρ-zCDP mechanism, RDP ``ρ α`` per use.

References
----------
.. [1] M. Abadi et al., "Deep Learning with Differential Privacy", CCS 2016.
.. [2] I. Mironov, "Rényi Differential Privacy", CSF 2017.
.. [3] I. Mironov, K. Talwar, L. Zhang, "Rényi Differential Privacy of the Sampled Gaussian
   Mechanism", 2019. https://arxiv.org/abs/1908.10530
.. [4] B. Balle, G. Barthe, M. Gaboardi, J. Hsu, T. Sato, "Hypothesis Testing Interpretations and
   Rényi Differential Privacy", AISTATS 2020, Theorem 21.
.. [5] C. Canonne, G. Kamath, T. Steinke, "The Discrete Gaussian for Differential Privacy",
   NeurIPS 2020, Proposition 12 (arXiv:2004.00010 v4).
.. [6] H. Wang, S. Pang, Z. Lu, Y. Rao, Y. Zhou, M. Xue, "dp-promise: Differentially Private
   Diffusion Probabilistic Models for Image Synthesis", USENIX Security 2024 (code:
   github.com/deabfc/dp-promise, ``src/mechanisms.py``).
.. [7] D. Durfee, R. Rogers, "Practical Differentially Private Top-k Selection with Pay-what-you-get
   Composition", NeurIPS 2019.
.. [8] M. Cesar, R. Rogers, "Bounding, Concentrating, and Truncating: Unifying Privacy Loss
   Composition for Data Analytics", ALT 2021.
.. [9] P. Kairouz, B. McMahan, S. Song, O. Thakkar, A. Thakurta, Z. Xu, "Practical and Private
   (Deep) Learning without Sampling or Shuffling", ICML 2021.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

import numpy as np
from opacus.accountants.analysis.rdp import compute_rdp as _opacus_subsampled_gaussian_rdp
from scipy import special

from genosynth.errors import PrivacyError

__all__ = [
    "RDP_ORDERS",
    "EVENT_KINDS",
    "PrivacyAccountant",
    "MechanismSpec",
    "Calibration",
    "TrainingPlan",
    "calibrate_noise",
    "plan_for_training",
    "stage1_noise_multiplier",
    "rdp_to_epsilon",
    "check_delta",
    "DEFAULT_BUDGET_SPLIT",
]

# RDP orders: fine fractional grid near 1 (needed for large ε / few compositions), every 0.1 up
# to 11, integers to 64, then sparse large orders (needed for small ε). Sorted, unique.
RDP_ORDERS: tuple[float, ...] = tuple(
    sorted(
        set(
            [round(1.05 + 0.05 * i, 2) for i in range(9)]  # 1.05 .. 1.45
            + [round(1.5 + 0.1 * i, 1) for i in range(96)]  # 1.5 .. 11.0
            + list(range(12, 65))
            + [72, 80, 96, 112, 128, 160, 192, 256, 384, 512, 1024]
        )
    )
)

# Orders used inside calibration's searches: a subset of RDP_ORDERS, so the ε on the full grid is
# never larger than on this one (ε is a minimum over orders) and calibration stays safe.
_CALIBRATION_ORDERS: tuple[float, ...] = (
    1.25, 1.5, 1.8, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0,
    12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 96, 128, 256, 512, 1024,
)  # fmt: skip

assert set(_CALIBRATION_ORDERS) <= set(RDP_ORDERS), "calibration orders must be a subset of RDP_ORDERS"

EVENT_KINDS = ("gaussian", "subsampled_gaussian", "stage1", "top_k", "zcdp")


# ----------------------------------------------------------------------------------------------
# RDP of single events
# ----------------------------------------------------------------------------------------------


def stage1_noise_multiplier(*, latent_clip: float, alpha_bar: float, replace_one: bool = False) -> float:
    """Noise multiplier of one stage-1 release of a norm-clipped latent.

    The forward process releases ``y = sqrt(ᾱ) z + sqrt(1 - ᾱ) ε`` with ``ε ~ N(0, I)`` for a
    latent ``z`` clipped to ``‖z‖₂ ≤ C``. Against the null record (latent ``0``) the mean moves by
    at most ``sqrt(ᾱ) C`` (``2 sqrt(ᾱ) C`` between two real people, ``replace_one=True``), so this is
    a Gaussian mechanism with noise multiplier

    .. math:: z_1 = \\frac{\\sqrt{1-\\bar\\alpha}}{\\sqrt{\\bar\\alpha}\\, C}
              \\quad (\\text{half that for replace-one}).

    Parameters
    ----------
    latent_clip : float
        ``C``, the L2 norm every latent is clipped to before release (see
        :func:`genosynth.privacy.mechanisms.clip_rows`).
    alpha_bar : float
        ``ᾱ`` of the release timestep, in (0, 1).
    replace_one : bool
        Use the replace-one sensitivity ``2 sqrt(ᾱ) C`` instead of the zero-out one.

    Returns
    -------
    float
        ``z₁ = sqrt(1-ᾱ) / (sqrt(ᾱ) Δ)``.
    """
    if not (latent_clip > 0 and math.isfinite(latent_clip)):
        raise PrivacyError(
            f"latent_clip={latent_clip} must be a positive finite L2 norm; stage-1 privacy rests "
            "on clipped latents: pass --latent-clip (e.g. the median latent norm)"
        )
    if not (0.0 < alpha_bar < 1.0):
        raise PrivacyError(
            f"alpha_bar={alpha_bar} must lie in (0, 1); pass alphas_cumprod[S-1] of the noise schedule"
        )
    sensitivity = (2.0 if replace_one else 1.0) * math.sqrt(alpha_bar) * latent_clip
    return math.sqrt(1.0 - alpha_bar) / sensitivity


def _gaussian_rdp(z: float, count: float, orders: np.ndarray) -> np.ndarray:
    if z == math.inf:
        return np.zeros_like(orders)
    if z <= 0:
        return np.full_like(orders, math.inf)
    return count * orders / (2.0 * z * z)


def _log_a_int(q: float, z: float, alpha: int) -> float:
    """``log A_α`` of the sampled Gaussian for integer ``α`` (Mironov, Talwar & Zhang 2019, Sec. 3.3).

    ``A_α = Σ_{i=0}^{α} C(α, i) (1-q)^{α-i} q^i exp((i² - i) / (2 z²))``, summed in log space with
    numpy (the same sum opacus evaluates term by term in Python).
    """
    i = np.arange(alpha + 1, dtype=np.float64)
    log_binom = special.gammaln(alpha + 1) - special.gammaln(i + 1) - special.gammaln(alpha - i + 1)
    terms = log_binom + i * math.log(q) + (alpha - i) * math.log1p(-q) + (i * i - i) / (2.0 * z * z)
    top = terms.max()
    return float(top + math.log(np.exp(terms - top).sum()))


def _sampled_rdp_closed_form(q: float, z: float, count: float, orders: np.ndarray) -> np.ndarray | None:
    """RDP of a Poisson(q)-sampled Gaussian in its closed-form cases, else ``None``.

    Nothing used, nobody sampled or infinite noise cost nothing; no noise costs everything; with
    ``q = 1`` every person is in every use, a plain Gaussian mechanism.
    """
    if count == 0 or q == 0 or z == math.inf:
        return np.zeros_like(orders)
    if z <= 0:
        return np.full_like(orders, math.inf)
    if q == 1.0:
        return _gaussian_rdp(z, count, orders)
    return None


def _subsampled_gaussian_rdp(q: float, z: float, count: float, orders: np.ndarray) -> np.ndarray:
    closed = _sampled_rdp_closed_form(q, z, count, orders)
    if closed is not None:
        return closed
    out = np.empty_like(orders)
    frac = []
    for j, a in enumerate(orders):
        if float(a).is_integer():
            out[j] = _log_a_int(q, z, int(a)) / (a - 1.0)
        else:
            frac.append(j)
    if frac:  # fractional orders: opacus' series (Mironov, Talwar & Zhang 2019, Sec. 3.3)
        out[frac] = _opacus_subsampled_gaussian_rdp(
            q=q, noise_multiplier=z, steps=1, orders=[float(orders[j]) for j in frac]
        )
    return count * out


def _stage1_rdp(q: float, z: float, count: float, orders: np.ndarray) -> np.ndarray:
    """RDP of ``count`` stage-1 releases, each of a Poisson(q)-sampled subset.

    Under zero-out neighbours, a person's slot is either not sampled (probability 1-q, the same
    output under both datasets) or releases ``N(sqrt(ᾱ) z, (1-ᾱ) I)`` vs ``N(0, (1-ᾱ) I)``. The pair
    is ``P = (1-q) ⊥ + q N(μ, 1)`` vs ``Q = (1-q) ⊥ + q N(0, 1)`` with ``μ = 1/z``, whose Rényi
    divergence is exactly (both directions)

    .. math:: D_\\alpha = \\frac{1}{\\alpha - 1}\\log\\left(1 - q + q\\, e^{\\alpha(\\alpha-1)\\mu^2/2}\\right).

    Unlike DP-SGD there is no ε-amplification: the released sets have equal size under both
    neighbours only because the null record is released too, so subsampling scales δ, not ε.
    """
    closed = _sampled_rdp_closed_form(q, z, count, orders)
    if closed is not None:
        return closed
    a = orders
    log_mgf = a * (a - 1.0) / (2.0 * z * z)
    val = np.logaddexp(math.log1p(-q), math.log(q) + log_mgf)
    return count * val / (a - 1.0)


def _event_rdp(event: Mapping[str, Any], orders: np.ndarray) -> np.ndarray:
    kind = event["kind"]
    count = float(event["count"])
    if kind == "gaussian":
        return _gaussian_rdp(event["noise_multiplier"], count, orders)
    if kind == "subsampled_gaussian":
        return _subsampled_gaussian_rdp(event["sample_rate"], event["noise_multiplier"], count, orders)
    if kind == "stage1":
        return _stage1_rdp(event["sample_rate"], event["noise_multiplier"], count, orders)
    if kind == "top_k":
        # k picks per use (count uses): zCDP ρ = k (2/z)²/8 = k / (2 z²) per use.
        return _gaussian_rdp(event["noise_multiplier"], count * event["k"], orders)
    if kind == "zcdp":
        return count * event["rho"] * orders
    raise ValueError(f"unknown event kind {kind!r}")


def rdp_to_epsilon(orders: Sequence[float], rdp: Sequence[float], delta: float) -> tuple[float, float]:
    """Convert an RDP curve to (ε, δ)-DP with the improved conversion.

    ``ε = min_α  r(α) + log(1 - 1/α) - (log δ + log α)/(α - 1)`` (Balle et al. 2020, Theorem 21;
    Canonne et al. 2020, Proposition 12), restricted to ``α > 1.01`` for numerical stability, and
    ``ε = 0`` where ``δ ≥ sqrt(1 - exp(-r(α)))`` (the total-variation bound). This is the rule of
    ``dp_accounting.rdp.compute_epsilon``.

    Returns
    -------
    (epsilon, order) : tuple of float
        The smallest ε over the orders and the order attaining it.
    """
    check_delta(delta)
    best, best_order = math.inf, float("nan")
    for a, r in zip(orders, rdp):
        if not np.isfinite(r):
            continue
        if r <= 0 or delta * delta + math.expm1(-r) > 0:
            eps = 0.0
        elif a > 1.01:
            eps = r + math.log1p(-1.0 / a) - math.log(delta * a) / (a - 1.0)
        else:
            continue
        if eps < best:
            best, best_order = eps, float(a)
    return float(max(0.0, best)), best_order


def check_delta(delta: float, *, n_samples: int | None = None) -> None:
    """Refuse a δ outside (0, 1), or δ ≥ 1/n (which would allow releasing one person outright)."""
    if not (isinstance(delta, (int, float)) and 0.0 < delta < 1.0):
        raise PrivacyError(f"delta={delta} must lie in (0, 1); pass e.g. --delta 1e-6 (well below 1/n)")
    if n_samples is not None and delta >= 1.0 / n_samples:
        raise PrivacyError(
            f"delta={delta:g} is not below 1/n = {1.0 / n_samples:g} for n={n_samples} people: such a "
            f"delta allows publishing one person's record outright; pass --delta {0.1 / n_samples:.1g} "
            "or smaller"
        )


# ----------------------------------------------------------------------------------------------
# Accountant
# ----------------------------------------------------------------------------------------------

_PARAM_KEYS = {
    "gaussian": ("noise_multiplier",),
    "subsampled_gaussian": ("noise_multiplier", "sample_rate"),
    "stage1": ("noise_multiplier", "sample_rate", "latent_clip", "alpha_bar"),
    "top_k": ("noise_multiplier", "k"),
    "zcdp": ("rho",),
}


class PrivacyAccountant:
    """Compose every private mechanism of a genosynth run and report (ε, δ).

    The state is a JSON-serialisable list of events; events with the same name, kind and
    parameters are merged by adding their counts, so recording one event per training step keeps
    the state small.

    Parameters
    ----------
    orders : sequence of float, optional
        RDP orders; defaults to :data:`RDP_ORDERS` (fractional near 1, integers to 64, sparse large).

    Examples
    --------
    >>> acc = PrivacyAccountant()
    >>> acc.add_subsampled_gaussian("diffusion/stage2", noise_multiplier=1.1, sample_rate=0.01, steps=1000)
    >>> acc.add_gaussian("correlation_prior", noise_multiplier=20.0)
    >>> round(acc.get_epsilon(1e-5), 2) > 0
    True
    """

    def __init__(self, *, orders: Sequence[float] | None = None):
        self.orders = np.asarray(RDP_ORDERS if orders is None else orders, dtype=np.float64)
        if self.orders.ndim != 1 or self.orders.size == 0 or np.any(self.orders <= 1):
            raise ValueError("orders must be a non-empty 1-D sequence of values > 1")
        self.events: list[dict[str, Any]] = []

    # -- recording -----------------------------------------------------------------------------

    def _add(self, event: dict[str, Any]) -> None:
        if not isinstance(event["name"], str) or not event["name"]:
            raise ValueError("every event needs a non-empty name such as 'diffusion/stage2'")
        if event["count"] < 0 or int(event["count"]) != event["count"]:
            raise ValueError(f"count/steps must be a non-negative integer, got {event['count']}")
        if event["count"] == 0:
            return
        keys = _PARAM_KEYS[event["kind"]]
        for old in self.events:
            if old["name"] == event["name"] and old["kind"] == event["kind"] and all(
                old.get(k) == event.get(k) for k in keys
            ):
                old["count"] += int(event["count"])
                return
        event["count"] = int(event["count"])
        self.events.append(event)

    @staticmethod
    def _check_z(z: float, what: str) -> float:
        z = float(z)
        if not (z > 0):
            raise PrivacyError(
                f"{what}: noise_multiplier={z} gives no privacy; use a positive noise multiplier "
                "(from calibrate_noise()/plan_for_training()), or run without --epsilon"
            )
        return z

    @staticmethod
    def _check_q(q: float) -> float:
        q = float(q)
        if not (0.0 < q <= 1.0):
            raise ValueError(f"sample_rate={q} must lie in (0, 1]")
        return q

    def add_gaussian(self, name: str, *, noise_multiplier: float, count: int = 1) -> None:
        """Record ``count`` uses of a Gaussian mechanism with ``z = σ/Δ`` (no subsampling)."""
        z = self._check_z(noise_multiplier, name)
        self._add({"name": name, "kind": "gaussian", "noise_multiplier": z, "count": count})

    def add_subsampled_gaussian(
        self, name: str, *, noise_multiplier: float, sample_rate: float, steps: int = 1
    ) -> None:
        """Record ``steps`` DP-SGD steps: Poisson sampling at rate ``q``, clipping, ``N(0, (zC)²)``."""
        z = self._check_z(noise_multiplier, name)
        q = self._check_q(sample_rate)
        self._add({"name": name, "kind": "subsampled_gaussian", "noise_multiplier": z,
                   "sample_rate": q, "count": steps})  # fmt: skip

    def add_stage1(
        self,
        name: str,
        *,
        latent_clip: float,
        alpha_bar: float,
        releases: int = 1,
        sample_rate: float = 1.0,
    ) -> None:
        """Record ``releases`` stage-1 releases of latents clipped to ``latent_clip``.

        One release gives every person (each with probability ``sample_rate``, Poisson) a noisy
        latent ``y = sqrt(ᾱ) clip(z) + sqrt(1-ᾱ) ε`` at the release level ``ᾱ = alpha_bar``; all of
        stage 1 (timesteps noisier than the release level) must be computed from the released
        ``y`` alone (see ``docs/privacy.md``). With ``sample_rate = 1`` this is ``releases``
        Gaussian mechanisms with :func:`stage1_noise_multiplier`; otherwise the exact RDP of the
        sampled pair is used, which has no ε-amplification (see :func:`_stage1_rdp`).

        Notes
        -----
        dp-promise [6]_ accounts its Phase I as a Poisson-subsampled Gaussian with per-step
        ``μ₀ = 2 sqrt(d) sqrt(ᾱ_S) / sqrt(1-ᾱ_S)`` (sensitivity = diameter of [-1, 1]^d) composed over
        all Phase-I steps with the GDP central limit theorem,
        ``μ = q sqrt(T (exp(μ₀²) - 1))`` (authors' ``gdp_mech``). We keep the mechanism (forward
        noise on bounded data, worst case the least-noisy Phase-I level) but (a) account it with an
        exact RDP bound instead of the CLT approximation, which is not an upper bound, and (b)
        count a release only where a noisy latent is actually formed from private data, because
        the usual ε-prediction loss at step t uses (x_t, ε), which together reveal x₀; training on
        released ``y`` alone is the condition under which the rest of stage 1 is post-processing.
        """
        z = stage1_noise_multiplier(latent_clip=latent_clip, alpha_bar=alpha_bar)
        q = self._check_q(sample_rate)
        self._add({"name": name, "kind": "stage1", "noise_multiplier": z, "sample_rate": q,
                   "latent_clip": float(latent_clip), "alpha_bar": float(alpha_bar),
                   "count": releases})  # fmt: skip

    def add_top_k(self, name: str, *, noise_multiplier: float, k: int, count: int = 1) -> None:
        """Record ``count`` one-shot Gumbel top-``k`` selections with Gumbel scale ``z Δ``.

        Equivalent to ``k`` peeled exponential mechanisms, each ``ε₀ = 2/z``-DP with bounded range
        hence ``ε₀²/8``-zCDP [7]_ [8]_.
        """
        z = self._check_z(noise_multiplier, name)
        if int(k) != k or k < 1:
            raise ValueError(f"k={k} must be a positive integer")
        self._add({"name": name, "kind": "top_k", "noise_multiplier": z, "k": int(k), "count": count})

    def add_zcdp(self, name: str, *, rho: float, count: int = 1) -> None:
        """Record ``count`` uses of a ρ-zCDP mechanism."""
        if not (rho >= 0):
            raise ValueError(f"rho={rho} must be >= 0")
        self._add({"name": name, "kind": "zcdp", "rho": float(rho), "count": count})

    def extend(self, other: "PrivacyAccountant") -> None:
        """Add every event of ``other`` to this accountant."""
        for ev in other.events:
            self._add(copy.deepcopy(ev))

    # -- reporting -----------------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        """Mechanism names, in order of first use."""
        return list(dict.fromkeys(ev["name"] for ev in self.events))

    def rdp(self, *, name: str | None = None) -> np.ndarray:
        """Total RDP curve on :attr:`orders` (of one mechanism name if ``name`` is given)."""
        total = np.zeros_like(self.orders)
        for ev in self.events:
            if name is None or ev["name"] == name:
                total = total + _event_rdp(ev, self.orders)
        return total

    def get_epsilon(self, delta: float) -> float:
        """Total ε at ``δ`` of everything recorded so far (0 when nothing is recorded)."""
        return rdp_to_epsilon(self.orders, self.rdp(), delta)[0]

    def get_epsilon_and_order(self, delta: float) -> tuple[float, float]:
        """Total ε at ``δ`` and the RDP order attaining it."""
        return rdp_to_epsilon(self.orders, self.rdp(), delta)

    def breakdown(self, delta: float) -> dict[str, float]:
        """ε of each mechanism alone at ``δ``, plus ``"total"`` (the composition, not the sum)."""
        out = {name: float(rdp_to_epsilon(self.orders, self.rdp(name=name), delta)[0]) for name in self.names}
        out["total"] = float(self.get_epsilon(delta))
        return out

    def report(self, delta: float) -> dict[str, Any]:
        """JSON-ready summary for checkpoints, logs and sample outputs: ε, δ, breakdown, events.

        Contains only mechanism parameters (noise multipliers, sampling rates, counts, clipping
        norms); never data.
        """
        eps, order = self.get_epsilon_and_order(delta)
        return {
            "epsilon": eps,
            "delta": delta,
            "optimal_order": order,
            "accounting": "RDP (zero-out neighbours), improved RDP->(eps,delta) conversion",
            "breakdown": self.breakdown(delta),
            "events": copy.deepcopy(self.events),
        }

    def summary(self, delta: float) -> str:
        """One log line: total ε at δ and the standalone ε of each mechanism."""
        b = self.breakdown(delta)
        parts = ", ".join(f"{k} {v:.3g}" for k, v in b.items() if k != "total")
        return f"privacy: epsilon={b['total']:.4g} at delta={delta:g} (RDP, zero-out neighbours; alone: {parts or 'none'})"

    # -- state ---------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state: the orders and the list of events."""
        return {"version": 1, "orders": [float(a) for a in self.orders], "events": copy.deepcopy(self.events)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict` (e.g. on resume)."""
        if state.get("version") != 1:
            raise PrivacyError(
                f"privacy accountant state has version {state.get('version')!r}, expected 1; the "
                "checkpoint was written by another genosynth version: resume with that version"
            )
        orders = np.asarray(state["orders"], dtype=np.float64)
        events = copy.deepcopy(list(state["events"]))
        for ev in events:
            if ev.get("kind") not in EVENT_KINDS:
                raise PrivacyError(f"unknown privacy event {ev!r} in checkpoint; the checkpoint is corrupt")
        self.orders = orders
        self.events = events

    def to_json(self, **kwargs) -> str:
        """:meth:`state_dict` as a JSON string."""
        return json.dumps(self.state_dict(), **kwargs)

    @classmethod
    def from_json(cls, text: str) -> "PrivacyAccountant":
        """Inverse of :meth:`to_json`."""
        acc = cls()
        acc.load_state_dict(json.loads(text))
        return acc

    def __repr__(self) -> str:
        return f"PrivacyAccountant({len(self.events)} events: {', '.join(self.names) or 'none'})"


# ----------------------------------------------------------------------------------------------
# Calibration
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MechanismSpec:
    """One mechanism of a planned pipeline, for :func:`calibrate_noise`.

    A spec with ``share`` set is *calibrated*: its noise multiplier is chosen. A spec without
    ``share`` is *fixed*: it uses ``noise_multiplier`` (or, for ``stage1``, the noise the forward
    process implies).
    """

    name: str  # event name, e.g. "diffusion/stage2"
    kind: str  # one of "gaussian", "subsampled_gaussian", "stage1", "top_k"
    count: int = 1  # uses: steps (DP-SGD), releases (stage1), compositions (gaussian), selections
    sample_rate: float = 1.0  # Poisson sampling rate q (subsampled_gaussian, stage1)
    share: float | None = None  # relative share of the budget (calibrated); None = fixed noise
    noise_multiplier: float | None = None  # fixed z = σ/Δ (when share is None; not stage1)
    k: int = 1  # picks per selection (top_k)
    latent_clip: float | None = None  # C (stage1)
    alpha_bar: float | None = None  # ᾱ of the release level (stage1)

    def record(self, acc: PrivacyAccountant, z: float | None = None) -> None:
        """Add this mechanism to ``acc`` with noise multiplier ``z`` (or its fixed one)."""
        z = self.noise_multiplier if z is None else z
        if self.kind == "gaussian":
            acc.add_gaussian(self.name, noise_multiplier=z, count=self.count)
        elif self.kind == "subsampled_gaussian":
            acc.add_subsampled_gaussian(self.name, noise_multiplier=z, sample_rate=self.sample_rate, steps=self.count)
        elif self.kind == "stage1":
            acc.add_stage1(self.name, latent_clip=self.latent_clip, alpha_bar=self.alpha_bar,
                           releases=self.count, sample_rate=self.sample_rate)  # fmt: skip
        elif self.kind == "top_k":
            acc.add_top_k(self.name, noise_multiplier=z, k=self.k, count=self.count)
        else:
            raise ValueError(f"kind {self.kind!r} cannot be planned; use one of {EVENT_KINDS[:4]}")


@dataclass
class Calibration:
    """Result of :func:`calibrate_noise`."""

    noise_multipliers: dict[str, float]  # name -> z (noise std / sensitivity) for every mechanism
    accountant: PrivacyAccountant  # the planned events with these multipliers
    epsilon: float  # total ε of the plan at delta (≤ target_epsilon)
    delta: float
    target_epsilon: float
    standalone_epsilons: dict[str, float] = field(default_factory=dict)  # breakdown(delta)


def _eps_alone(spec: MechanismSpec, z: float, delta: float, orders: np.ndarray) -> float:
    acc = PrivacyAccountant(orders=orders)
    spec.record(acc, z)
    return acc.get_epsilon(delta)


def _fix_hint(specs: Iterable[MechanismSpec]) -> str:
    kinds = {s.kind for s in specs}
    hints = ["raise --epsilon"]
    if "subsampled_gaussian" in kinds:
        hints.append("lower --vae-epochs/--dit-epochs or --dp-batch-size")
    if "stage1" in kinds:
        hints.append("raise the stage split S or lower --latent-clip")
    hints.append("or drop a mechanism (e.g. --public-reference for the VAE)")
    return ", ".join(hints)


def calibrate_noise(
    plan: Sequence[MechanismSpec],
    *,
    target_epsilon: float,
    delta: float,
    n_samples: int | None = None,
    max_noise_multiplier: float = 1000.0,
    rtol: float = 1e-3,
) -> Calibration:
    """Choose noise multipliers so the whole plan meets ``(target_epsilon, delta)``.

    Fixed mechanisms (no ``share``; the stage-1 forward noise always) contribute what they cost.
    Each calibrated mechanism ``i`` gets the noise multiplier at which its ε *alone* equals
    ``share_i · λ``; a bisection over the scalar ``λ`` makes the composed total hit the target.
    Shares therefore fix the relative standalone ε of the mechanisms; because RDP composition is
    sub-additive, ``λ`` usually exceeds ``target_epsilon``. Searches use a subset of the RDP
    orders, so the total on the full grid is never above the target; the result is within
    ``rtol`` (relative, in ε) plus the grid difference of it.

    (Not to be confused with :func:`genosynth.training.calibration.calibrate_frequencies`, which
    calibrates generated allele frequencies after training.)

    Parameters
    ----------
    plan : sequence of MechanismSpec
        The mechanisms of the run, each with a unique name.
    target_epsilon : float
        Total ε to meet, > 0.
    delta : float
        δ in (0, 1); must be below ``1/n_samples`` when ``n_samples`` is given.
    n_samples : int, optional
        Number of people in the private cohort (to check δ).
    max_noise_multiplier : float
        Refuse plans that would need more noise than this on any calibrated mechanism (training
        at such noise learns nothing).
    rtol : float
        Relative tolerance of the searches.

    Returns
    -------
    Calibration

    Raises
    ------
    PrivacyError
        If the target is not positive, δ is invalid, the fixed mechanisms alone exceed the target,
        or a mechanism would need a noise multiplier above ``max_noise_multiplier``. The message
        names the fix.
    """
    fixed, free = _split_plan(plan, target_epsilon=target_epsilon, delta=delta, n_samples=n_samples)
    orders = np.asarray(_CALIBRATION_ORDERS, dtype=np.float64)
    fixed_rdp, eps_fixed = _fixed_cost(plan, fixed, target_epsilon=target_epsilon, delta=delta, orders=orders)
    if not free:
        return _planned_calibration(plan, {}, target_epsilon=target_epsilon, delta=delta)
    total = _composed_total(free, fixed_rdp=fixed_rdp, delta=delta, orders=orders,
                            max_noise_multiplier=max_noise_multiplier)
    lo, hi = _bracket_scale(total, plan, free, start=target_epsilon - eps_fixed, target_epsilon=target_epsilon,
                            delta=delta, max_noise_multiplier=max_noise_multiplier)
    zs = _bisect_scale(total, lo, hi, target_epsilon=target_epsilon, rtol=rtol)
    return _planned_calibration(plan, {s.name: z for s, z in zip(free, zs)},
                                target_epsilon=target_epsilon, delta=delta)


def _split_plan(
    plan: Sequence[MechanismSpec], *, target_epsilon: float, delta: float, n_samples: int | None
) -> tuple[list[MechanismSpec], list[MechanismSpec]]:
    """Stage 1 of :func:`calibrate_noise`: check the target and the plan; ``(fixed, calibrated)`` specs."""
    if not (isinstance(target_epsilon, (int, float)) and math.isfinite(target_epsilon) and target_epsilon > 0):
        raise PrivacyError(
            f"--epsilon {target_epsilon} is not a positive finite number; pass e.g. --epsilon 8, or "
            "leave --epsilon out for a non-private run"
        )
    check_delta(delta, n_samples=n_samples)
    names = [s.name for s in plan]
    if len(set(names)) != len(names):
        raise ValueError(f"mechanism names must be unique, got {names}")
    fixed = [s for s in plan if s.share is None]
    free = [s for s in plan if s.share is not None]
    for s in free:
        if not (s.share > 0):
            raise ValueError(f"share of {s.name} must be > 0, got {s.share}")
        if s.kind == "stage1":
            raise ValueError("the stage-1 noise is set by the noise schedule and cannot be calibrated; give no share")
    for s in fixed:
        if s.kind != "stage1" and s.noise_multiplier is None:
            raise ValueError(f"{s.name} has neither a share nor a fixed noise_multiplier")
    return fixed, free


def _fixed_cost(
    plan: Sequence[MechanismSpec], fixed: Sequence[MechanismSpec], *, target_epsilon: float, delta: float,
    orders: np.ndarray,
) -> tuple[np.ndarray, float]:
    """Stage 2: RDP of the fixed mechanisms on the search ``orders`` and their ε on the full grid.

    Refuses a plan whose fixed mechanisms alone already spend ``target_epsilon``.
    """
    full = np.asarray(RDP_ORDERS, dtype=np.float64)
    eps_fixed = rdp_to_epsilon(full, _rdp_of(fixed, full), delta)[0] if fixed else 0.0
    if eps_fixed >= target_epsilon:
        detail = ", ".join(f"{s.name}" for s in fixed)
        raise PrivacyError(
            f"ε={target_epsilon:g} cannot be met at δ={delta:g}: the fixed mechanisms ({detail}) alone "
            f"already spend ε={eps_fixed:.4g} (the stage-1 forward noise is set by the schedule and "
            f"--latent-clip); {_fix_hint(plan)}"
        )
    return _rdp_of(fixed, orders), eps_fixed


def _noise_tables(
    free: Sequence[MechanismSpec], *, delta: float, orders: np.ndarray, max_noise_multiplier: float
) -> tuple[np.ndarray, list[np.ndarray]]:
    """``log z`` grid (40 points from 0.05 to the cap) and, per calibrated spec, ``log ε`` alone on it."""
    zmax = float(max_noise_multiplier)
    log_z = np.linspace(math.log(0.05), math.log(zmax), 40)  # (40,)
    tables = []
    for spec in free:
        eps_tab = np.array([_eps_alone(spec, math.exp(lz), delta, orders) for lz in log_z])  # (40,)
        tables.append(np.log(np.maximum(eps_tab, 1e-300)))
    return log_z, tables


def _z_for_epsilon(log_z: np.ndarray, log_eps: np.ndarray, e: float) -> float:
    """The multiplier at which a mechanism alone costs ``e``, interpolated in log-log (inf: above the cap)."""
    le = math.log(e)  # log_eps decreases along log_z
    if le < log_eps[-1]:
        return math.inf  # needs more noise than allowed
    if le >= log_eps[0]:
        return math.exp(log_z[0])
    return math.exp(float(np.interp(le, log_eps[::-1], log_z[::-1])))


def _composed_total(
    free: Sequence[MechanismSpec], *, fixed_rdp: np.ndarray, delta: float, orders: np.ndarray,
    max_noise_multiplier: float,
):
    """Stage 3: ``total(λ) -> (ε of the whole plan, multipliers)``, calibrated spec ``i`` at ``share_i λ`` alone.

    ``z_i(e)`` (decreasing in ``e``) is interpolated in log-log from a table; the interpolation
    only sets how the budget is shared, the total ε is always computed exactly from the chosen
    multipliers.
    """
    log_z, tables = _noise_tables(free, delta=delta, orders=orders, max_noise_multiplier=max_noise_multiplier)
    shares = np.array([s.share for s in free], dtype=np.float64)
    shares = shares / shares.sum()

    def total(lam: float) -> tuple[float, list[float]]:
        zs = [_z_for_epsilon(log_z, tables[i], share * lam) for i, share in enumerate(shares)]
        if any(math.isinf(z) for z in zs):
            return math.inf, zs
        rdp = fixed_rdp.copy()
        for s, z in zip(free, zs):
            acc = PrivacyAccountant(orders=orders)
            s.record(acc, z)
            rdp = rdp + acc.rdp()
        return rdp_to_epsilon(orders, rdp, delta)[0], zs

    return total


def _bracket_scale(
    total, plan: Sequence[MechanismSpec], free: Sequence[MechanismSpec], *, start: float,
    target_epsilon: float, delta: float, max_noise_multiplier: float,
) -> tuple[float, float]:
    """Stage 4: ``(lo, hi)`` with ``total(lo) <= target < total(hi)`` (or ``hi`` at the 1e6 cap)."""
    lo = start  # shrink λ until the composed total is below the target
    eps_lo, zs_lo = total(lo)
    while not math.isinf(eps_lo) and eps_lo > target_epsilon:
        lo /= 2
        eps_lo, zs_lo = total(lo)
    if math.isinf(eps_lo):
        worst = [s.name for s, z in zip(free, zs_lo) if math.isinf(z)] or [s.name for s in free]
        raise PrivacyError(
            f"ε={target_epsilon:g} cannot be met at δ={delta:g}: {', '.join(worst)} would need a noise "
            f"multiplier above {max_noise_multiplier:g}, at which training learns nothing; "
            f"{_fix_hint(plan)}"
        )
    hi = 2 * lo
    # grow hi until the total exceeds the target (composition is sub-additive in ε)
    eps_hi, _ = total(hi)
    while eps_hi <= target_epsilon and hi < 1e6:
        lo, hi = hi, hi * 2
        eps_hi, _ = total(hi)
    return lo, hi


def _bisect_scale(total, lo: float, hi: float, *, target_epsilon: float, rtol: float) -> list[float]:
    """Stage 5: bisect λ in ``[lo, hi]`` (geometric) to ``rtol``; the multipliers of the last feasible λ.

    Multipliers are rounded up by one ulp (more noise), so rounding in logs never breaks the bound.
    """
    best_zs = total(lo)[1]
    for _ in range(60):
        if hi / lo - 1 < rtol / 2:
            break
        mid = math.sqrt(lo * hi)
        eps_mid, zs_mid = total(mid)
        if eps_mid <= target_epsilon:
            lo, best_zs = mid, zs_mid
        else:
            hi = mid
    return [float(np.nextafter(z, np.inf)) for z in best_zs]


def _planned_calibration(
    plan: Sequence[MechanismSpec], calibrated: Mapping[str, float], *, target_epsilon: float, delta: float
) -> Calibration:
    """Stage 6: record every spec of ``plan`` (calibrated ones at ``calibrated[name]``) on the full grid."""
    acc = PrivacyAccountant()
    result = {}
    for s in plan:
        z = _fixed_z(s) if s.share is None else calibrated[s.name]
        s.record(acc, None if s.share is None else z)
        result[s.name] = z
    eps = acc.get_epsilon(delta)
    if eps > target_epsilon * (1 + 1e-9):  # cannot happen: full grid ⊇ search grid
        raise AssertionError(f"calibration produced ε={eps} > target {target_epsilon}")
    return Calibration(result, acc, eps, delta, float(target_epsilon), acc.breakdown(delta))


def _fixed_z(s: MechanismSpec) -> float:
    if s.kind == "stage1":
        return stage1_noise_multiplier(latent_clip=s.latent_clip, alpha_bar=s.alpha_bar)
    return float(s.noise_multiplier)


def _rdp_of(specs: Sequence[MechanismSpec], orders: np.ndarray) -> np.ndarray:
    acc = PrivacyAccountant(orders=orders)
    for s in specs:
        s.record(acc)
    return acc.rdp()



# ----------------------------------------------------------------------------------------------
# The genosynth training plan
# ----------------------------------------------------------------------------------------------

#: Default relative shares of the budget (standalone ε) between calibrated mechanisms. Missing
#: mechanisms (e.g. the VAE with --public-reference) are dropped and the rest renormalised.
DEFAULT_BUDGET_SPLIT: dict[str, float] = {
    "vae/dpsgd": 0.30,
    "diffusion/stage2": 0.45,
    "correlation_prior": 0.10,
    "allele_frequencies": 0.05,
    "ancestry_spread": 0.05,
    "snp_selection": 0.10,
}


def _check_training_inputs(*, n_samples: int, batch_size: int, T: int, timesteps_split: int,
                           alphas_cumprod: Sequence[float], delta: float) -> np.ndarray:
    """Refuse inputs :func:`plan_for_training` cannot plan (cohort, batch, schedule, split, δ); ᾱ float64 (T,)."""
    if n_samples < 2:
        raise PrivacyError(f"n_samples={n_samples}: differential privacy needs a cohort of people")
    if not (1 <= batch_size <= n_samples):
        raise PrivacyError(f"batch_size={batch_size} must lie in [1, n_samples={n_samples}]; lower --batch-size")
    alphas_cumprod = np.asarray(alphas_cumprod, dtype=np.float64)
    if alphas_cumprod.shape != (T,):
        raise ValueError(f"alphas_cumprod has shape {alphas_cumprod.shape}, expected ({T},)")
    if not (1 <= timesteps_split <= T):
        raise PrivacyError(
            f"timesteps_split S={timesteps_split} must lie in [1, T={T}]: stage 1 trains t >= S from "
            "latents released at level S-1"
        )
    check_delta(delta, n_samples=n_samples)
    return alphas_cumprod


class TrainingPlan(NamedTuple):
    """``(noise_multipliers, accountant)`` returned by :func:`plan_for_training`."""

    noise_multipliers: dict[str, float]  # name -> z = noise std / sensitivity
    accountant: PrivacyAccountant  # planned events (report its breakdown before training)


def plan_for_training(
    *,
    n_samples: int,
    epochs_vae: int,
    epochs_stage1: int,
    epochs_stage2: int,
    batch_size: int,
    timesteps_split: int,
    T: int,
    alphas_cumprod: Sequence[float],
    latent_clip: float,
    target_epsilon: float,
    delta: float,
    budget_split: Mapping[str, float] | None = None,
    public_reference: bool = False,
    stage1_releases: int = 1,
    correlation_prior: bool = True,
    allele_frequencies: bool = True,
    ancestry_spread: bool = False,
    snp_selection_k: int = 0,
    max_noise_multiplier: float = 1000.0,
) -> TrainingPlan:
    """Plan and calibrate the DP budget of a genosynth training run, before any training.

    Mechanisms (names are the event names to record while training):

    * ``vae/dpsgd`` — DP-SGD on the VAE, Poisson rate ``q = batch_size / n_samples``,
      ``epochs_vae / q`` steps (absent with ``public_reference=True``: VAE trained on public data).
    * ``diffusion/stage1`` — ``stage1_releases`` releases of latents clipped to ``latent_clip`` at
      ``ᾱ = alphas_cumprod[timesteps_split - 1]``; fixed cost. Stage-1 training on the released
      latents (for any ``epochs_stage1``) is post-processing and costs nothing more.
    * ``diffusion/stage2`` — DP-SGD on the denoiser for ``t < timesteps_split``.
    * ``correlation_prior`` — one Gaussian release of the banded correlation sums.
    * ``allele_frequencies`` — one Gaussian release of allele counts (MAF filter, centring).
    * ``ancestry_spread`` — one Gaussian release of the within-label ancestry second moments
      (when ``ancestry_spread``; :func:`genosynth.privacy.releases.release_ancestry_spread`).
    * ``snp_selection`` — one Gumbel top-``snp_selection_k`` selection (when ``> 0``).

    Returns
    -------
    TrainingPlan
        ``(noise_multipliers, accountant)``: ``noise_multipliers[name]`` is ``z`` (noise std over
        sensitivity; Gumbel scale over sensitivity for selection; the stage-1 entry is the
        forward-process multiplier). ``accountant`` holds the planned events.

    Raises
    ------
    PrivacyError
        When the target cannot be met or an input is invalid; the message names the fix.
    """
    alphas_cumprod = _check_training_inputs(n_samples=n_samples, batch_size=batch_size, T=T,
                                            timesteps_split=timesteps_split, alphas_cumprod=alphas_cumprod,
                                            delta=delta)  # (T,)
    q = batch_size / n_samples
    steps_per_epoch = int(math.ceil(1.0 / q))
    split = dict(DEFAULT_BUDGET_SPLIT if budget_split is None else budget_split)
    plan: list[MechanismSpec] = []

    def share(name: str) -> float:
        if name not in split:
            raise PrivacyError(f"budget_split has no share for {name!r}; add one, e.g. {DEFAULT_BUDGET_SPLIT}")
        return float(split[name])

    if not public_reference and epochs_vae > 0:
        plan.append(MechanismSpec("vae/dpsgd", "subsampled_gaussian", count=epochs_vae * steps_per_epoch,
                                  sample_rate=q, share=share("vae/dpsgd")))  # fmt: skip
    if timesteps_split < T and stage1_releases > 0 and epochs_stage1 > 0:
        plan.append(MechanismSpec("diffusion/stage1", "stage1", count=stage1_releases,
                                  latent_clip=latent_clip,
                                  alpha_bar=float(alphas_cumprod[timesteps_split - 1])))  # fmt: skip
    if epochs_stage2 > 0:
        plan.append(MechanismSpec("diffusion/stage2", "subsampled_gaussian", count=epochs_stage2 * steps_per_epoch,
                                  sample_rate=q, share=share("diffusion/stage2")))  # fmt: skip
    if correlation_prior:
        plan.append(MechanismSpec("correlation_prior", "gaussian", share=share("correlation_prior")))
    if allele_frequencies:
        plan.append(MechanismSpec("allele_frequencies", "gaussian", share=share("allele_frequencies")))
    if ancestry_spread:
        plan.append(MechanismSpec("ancestry_spread", "gaussian", share=share("ancestry_spread")))
    if snp_selection_k > 0:
        plan.append(MechanismSpec("snp_selection", "top_k", k=snp_selection_k, share=share("snp_selection")))
    cal = calibrate_noise(plan, target_epsilon=target_epsilon, delta=delta, n_samples=n_samples,
                          max_noise_multiplier=max_noise_multiplier)  # fmt: skip
    return TrainingPlan(cal.noise_multipliers, cal.accountant)
