"""Traffic lights of the one-screen summary: each headline figure against the real-holdout ceiling.

A light compares the synthetic value with the value the real holdout reaches against real train
(the best a perfect generator can hope for at that sample size), or with a fixed ideal where the
ideal is known (membership-inference AUC 0.5, no identical people). ``green`` = as good as real data
within the tolerance, ``amber`` = noticeably worse, or better than fresh real people by more than
the tolerance (a synthetic set cannot honestly beat real data drawn from the same population at the
same sample size: the usual causes are copies of training people or sets of unequal size), ``red`` =
fails. Each row carries a ``note`` where the light needs a sentence to be read right.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class LightRule:
    """How one summary key is judged."""

    key: str            # key of summary(results)
    label: str          # row label in the report
    section: str        # fidelity | structure | gwas | privacy
    kind: str           # "higher": closer to the ceiling from below is better; "lower"; "ideal"; "zero"; "info"
    green: float = 0.0  # tolerance for green (absolute, or a ratio for kind "ratio")
    amber: float = 0.0  # tolerance for amber
    ceiling_key: str | None = None  # summary key of the ceiling if not the same key of the holdout set
    ideal: float | None = None      # fixed ideal value (kind "ideal")
    max_slack: float | None = None  # kind "ideal": cap on the holdout's own distance from the ideal (noise)


RULES = (
    LightRule("af_r", "Allele frequency r", "fidelity", "higher", 0.01, 0.05),
    LightRule("ld_r_near_within", "LD r, pairs < 1 Mb, within super population", "fidelity", "higher", 0.10, 0.25),
    LightRule("ld_r_near", "LD r, pairs < 1 Mb, pooled", "fidelity", "higher", 0.10, 0.25),
    LightRule("ld_strength_ratio", "LD strength: synthetic r\u00b2 / real r\u00b2, worst distance bin", "fidelity",
              "ideal", 0.10, 0.25, ideal=1.0, max_slack=0.05),
    LightRule("energy_coefficient", "PCA energy coefficient (top PCs of real train)", "fidelity", "lower",
              0.01, 0.03),
    LightRule("het_mean_abs_diff", "Heterozygosity |mean difference|", "fidelity", "lower", 0.01, 0.03),
    LightRule("dist_wasserstein_rel", "Pairwise distances W1 / mean real distance", "fidelity", "lower", 0.01, 0.03),
    LightRule("tstr_super_pop_lr", "TSTR accuracy, super population (LR)", "structure", "higher", 0.05, 0.15,
              ceiling_key="trtr_super_pop_lr"),
    LightRule("tstr_pop_lr", "TSTR accuracy, population (LR)", "structure", "higher", 0.05, 0.15,
              ceiling_key="trtr_pop_lr"),
    LightRule("gwas_overlap_top10", "GWAS top-10 % overlap with real train", "gwas", "higher", 0.10, 0.25),
    LightRule("gwas_rank_r", "GWAS rank correlation of -log10 p", "gwas", "higher", 0.10, 0.25),
    LightRule("identical_to_train", "People identical to a train person", "privacy", "zero"),
    LightRule("mia_auc", "Membership-inference AUC", "privacy", "ideal", 0.05, 0.10, ideal=0.5),
    LightRule("dcr_closer_to_train", "Share of synthetic closer to train than holdout", "privacy", "ideal",
              0.05, 0.10, ideal=0.5),
    LightRule("aats", "AATS (nearest-neighbour adversarial accuracy)", "privacy", "ideal", 0.05, 0.15, ideal=0.5),
    LightRule("privacy_loss", "Privacy loss AATS(holdout) - AATS(train)", "privacy", "ideal", 0.03, 0.08, ideal=0.0),
    LightRule("epsilon", "Differential privacy epsilon", "privacy", "info"),
)


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def judge(rule: LightRule, value, ceiling) -> str:
    """``green``, ``amber``, ``red``, or ``grey`` (no value / informational).

    Kinds "higher" and "lower": a value that beats the ceiling by more than the green tolerance is
    ``amber`` (see :func:`explain`), never green.
    """
    if rule.kind == "info" or not _finite(value):
        return "grey"
    if rule.kind == "zero":
        base = ceiling if _finite(ceiling) else 0
        return "green" if value <= base else "red"
    if rule.kind == "ideal":
        # distance from the ideal, allowing the sampling noise the holdout itself shows
        slack = abs(ceiling - rule.ideal) if _finite(ceiling) else 0.0
        if rule.max_slack is not None:
            slack = min(slack, rule.max_slack)
        dev = abs(value - rule.ideal)
        return "green" if dev <= slack + rule.green else "amber" if dev <= slack + rule.amber else "red"
    if not _finite(ceiling):
        return "grey"
    if rule.kind in ("higher", "lower"):
        gap = ceiling - value if rule.kind == "higher" else value - ceiling
        if -gap > rule.green:
            return "amber"  # beats fresh real people by more than the tolerance
        return "green" if gap <= rule.green else "amber" if gap <= rule.amber else "red"
    if rule.kind == "ratio":
        base = max(ceiling, 1e-12)
        return "green" if value <= rule.green * base else "amber" if value <= rule.amber * base else "red"
    raise ValueError(f"unknown rule kind {rule.kind}")


def beats_ceiling(rule: LightRule, value, ceiling) -> bool:
    """True when ``value`` is better than the real-holdout ceiling by more than the green tolerance."""
    if rule.kind not in ("higher", "lower") or not (_finite(value) and _finite(ceiling)):
        return False
    return (value - ceiling if rule.kind == "higher" else ceiling - value) > rule.green


def explain(rule: LightRule, value, ceiling, light: str = "amber") -> str | None:
    """The sentence a light needs to be read right, or None (the AATS and LD-strength sentences only
    for a light that is not green)."""
    if beats_ceiling(rule, value, ceiling):
        return ("better than the real holdout by more than the tolerance: fresh real people are the best a "
                "generator can reach, so suspect copies of training people or unequal sample sizes")
    if light == "green" or not _finite(value):
        return None
    if rule.key == "aats":
        if value > 0.5:
            return ("AATS > 0.5: synthetic and real people are easy to tell apart, a realism gap (fidelity), "
                    "not a privacy leak")
        return "AATS < 0.5: synthetic people sit closer to train than real people do, a sign of memorisation"
    if rule.key == "ld_strength_ratio":
        side = "weaker" if value < 1 else "stronger"
        return f"LD is {side} than in real data in at least one distance bin (ratio {value:.2f}; 1 is ideal)"
    return None


def traffic_lights(flat: dict, ceiling: dict) -> list[dict]:
    """Rows of the summary table for one synthetic set (``flat``) against the holdout (``ceiling``)."""
    rows = []
    for rule in RULES:
        if rule.key not in flat and rule.kind != "info":
            continue
        value = flat.get(rule.key)
        ceil = flat.get(rule.ceiling_key) if rule.ceiling_key else ceiling.get(rule.key)
        if rule.kind == "info" and value is None:
            continue
        light = judge(rule, value, ceil)
        rows.append({"key": rule.key, "label": rule.label, "section": rule.section, "value": value,
                     "ceiling": ceil, "ideal": rule.ideal, "light": light, "note": explain(rule, value, ceil, light)})
    return rows


# ---------------------------------------------------------------------------------- verdict
def privacy_status(guarantee: dict | None) -> dict:
    """epsilon, delta and mechanisms of a set's privacy record, or the statement that there is none."""
    g = guarantee or {}
    eps = g.get("epsilon")
    if not _finite(eps):
        return {"formal_dp": False, "epsilon": None, "delta": None, "mechanisms": [],
                "statement": "no formal DP guarantee"}
    mech = g.get("mechanisms") or {k: v for k, v in (g.get("breakdown") or {}).items() if k != "total"}
    names = sorted(mech) if isinstance(mech, dict) else [str(m) for m in mech]
    delta = g.get("delta")
    text = f"(\u03b5 = {eps:.3g}, \u03b4 = {delta:.3g})-DP" if _finite(delta) else f"\u03b5 = {eps:.3g}"
    return {"formal_dp": True, "epsilon": float(eps), "delta": delta, "mechanisms": names,
            "statement": text + (f" over {', '.join(names)}" if names else "")}


def verdict(name: str, rows: list[dict], described: dict, real: dict, guarantee: dict | None,
            matching: dict | None) -> dict:
    """The answer to "faithful? private?" for one synthetic set, from its lights and inputs.

    ``rows`` are its :func:`traffic_lights`; ``described`` / ``real`` the input descriptions of the
    set and of real train (with ``origin``); ``matching`` how its fidelity sample matched the holdout.
    """
    by_key = {r["key"]: r for r in rows}
    quality = [r for r in rows if r["section"] != "privacy"]
    counts = {c: sum(r["light"] == c for r in quality) for c in ("green", "amber", "red", "grey")}
    flagged = [{"key": r["key"], "label": r["label"], "light": r["light"]} for r in quality
               if r["light"] in ("amber", "red")]
    mia, ident = by_key.get("mia_auc", {}), by_key.get("identical_to_train", {})
    return {
        "set": name, "n_people": described["n_samples"], "n_snps": described["n_variants"],
        "source": described.get("source") or "in memory (no file)", "origin": described.get("origin"),
        "real_cohort": real.get("origin"), "real_source": real.get("source") or "in memory (no file)",
        "fidelity": {**counts, "flagged": flagged},
        "privacy": privacy_status(guarantee),
        "mia_auc": mia.get("value"), "mia_light": mia.get("light", "grey"),
        "identical_people": ident.get("value"), "identical_light": ident.get("light", "grey"),
        "matched_sizes": None if matching is None else bool(matching.get("matched")),
    }
