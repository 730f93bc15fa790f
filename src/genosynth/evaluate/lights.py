"""Traffic lights of the one-screen summary: each headline figure against the real-holdout ceiling.

A light compares the synthetic value with the value the real holdout reaches against real train
(the best a perfect generator can hope for at that sample size), or with a fixed ideal where the
ideal is known (membership-inference AUC 0.5, no identical people). ``green`` = as good as real data
within the tolerance, ``amber`` = noticeably worse, ``red`` = fails.
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


RULES = (
    LightRule("af_r", "Allele frequency r", "fidelity", "higher", 0.01, 0.05),
    LightRule("ld_r_near_within", "LD r, pairs < 1 Mb, within super population", "fidelity", "higher", 0.10, 0.25),
    LightRule("ld_r_near", "LD r, pairs < 1 Mb, pooled", "fidelity", "higher", 0.10, 0.25),
    LightRule("energy_coefficient", "PCA energy coefficient (top PCs of real train)", "fidelity", "lower",
              0.01, 0.03),
    LightRule("het_mean_abs_diff", "Heterozygosity |mean difference|", "fidelity", "lower", 0.01, 0.03),
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
    """``green``, ``amber``, ``red``, or ``grey`` (no value / informational)."""
    if rule.kind == "info" or not _finite(value):
        return "grey"
    if rule.kind == "zero":
        base = ceiling if _finite(ceiling) else 0
        return "green" if value <= base else "red"
    if rule.kind == "ideal":
        # distance from the ideal, allowing the sampling noise the holdout itself shows
        slack = abs(ceiling - rule.ideal) if _finite(ceiling) else 0.0
        dev = abs(value - rule.ideal)
        return "green" if dev <= slack + rule.green else "amber" if dev <= slack + rule.amber else "red"
    if not _finite(ceiling):
        return "grey"
    if rule.kind == "higher":
        gap = ceiling - value
        return "green" if gap <= rule.green else "amber" if gap <= rule.amber else "red"
    if rule.kind == "lower":
        gap = value - ceiling
        return "green" if gap <= rule.green else "amber" if gap <= rule.amber else "red"
    if rule.kind == "ratio":
        base = max(ceiling, 1e-12)
        return "green" if value <= rule.green * base else "amber" if value <= rule.amber * base else "red"
    raise ValueError(f"unknown rule kind {rule.kind}")


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
        rows.append({"key": rule.key, "label": rule.label, "section": rule.section, "value": value,
                     "ceiling": ceil, "ideal": rule.ideal, "light": judge(rule, value, ceil)})
    return rows
