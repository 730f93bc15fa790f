"""How many people of each label (and how many cases) a synthetic cohort gets."""

from __future__ import annotations

import numpy as np
from genosynth.errors import InputError


def parse_label_counts(spec: str | dict | None, *, n: int | None, vocabulary: list[str],
                       mix: dict[str, float]) -> dict[str, int]:
    """People per label from ``"EUR=500,AFR=500"`` (or a dict), or ``n`` split by the training mix.

    The training mix is split by largest remainders so the counts sum to ``n`` exactly.
    """
    if spec:
        if isinstance(spec, str):
            counts = {}
            for part in spec.split(","):
                if not part.strip():
                    continue
                if "=" not in part:
                    raise InputError(f"--labels entry {part!r} must look like LABEL=COUNT, e.g. EUR=500,AFR=500")
                key, value = part.split("=", 1)
                try:
                    counts[key.strip()] = int(value)
                except ValueError:
                    raise InputError(f"--labels count {value!r} for {key!r} is not an integer") from None
        else:
            counts = {str(k): int(v) for k, v in spec.items()}
        unknown = [k for k in counts if k not in vocabulary]
        if unknown:
            raise InputError(f"--labels names {unknown}, which the model was not trained on; choose among {vocabulary}")
        if any(v < 0 for v in counts.values()):
            raise InputError("--labels counts must be >= 0")
        if n is not None and sum(counts.values()) != n:
            raise InputError(f"--labels counts sum to {sum(counts.values())} but --n is {n}; make them agree or drop --n")
        return counts
    if n is None or n < 1:
        raise InputError("give --n (people to generate, >= 1) or --labels LABEL=COUNT,...")
    fractions = np.array([mix.get(v, 0.0) for v in vocabulary])
    raw = fractions / fractions.sum() * n
    base = np.floor(raw).astype(int)
    rest = n - base.sum()
    order = np.argsort(-(raw - base), kind="stable")
    base[order[:rest]] += 1
    return {v: int(c) for v, c in zip(vocabulary, base)}


def largest_remainder(weights: dict[str, float], n: int) -> dict[str, int]:
    """Split ``n`` by ``weights`` into integers that sum to ``n`` (largest remainders)."""
    keys = list(weights)
    w = np.array([max(weights[k], 0.0) for k in keys], dtype=np.float64)
    if n == 0 or w.sum() == 0:
        return {k: 0 for k in keys}
    raw = w / w.sum() * n
    base = np.floor(raw).astype(int)
    order = np.argsort(-(raw - base), kind="stable")
    base[order[: n - base.sum()]] += 1
    return {k: int(c) for k, c in zip(keys, base)}


def plan_counts(spec: str | dict | None, *, n: int | None, cases: int | None, controls: int | None,
                vocabulary: list[str], mix: dict[str, float],
                case_fraction: dict[str, float] | None) -> tuple[dict[str, int], dict[str, int] | None]:
    """People per label and cases per label (``None`` for a model without a phenotype).

    * ``cases``/``controls`` without ``spec``: cases are split over labels as in the training
      cases (label mix x case fraction of the label), controls as in the training controls;
    * with ``spec`` (``--labels``) too: the counts per label come from ``spec`` and every label
      gets the same case share ``cases / (cases + controls)`` (largest remainders);
    * neither: :func:`parse_label_counts`, then each label's people are split by its training
      case fraction (a phenotype model always writes a phenotype).
    """
    if cases is not None or controls is not None:
        if case_fraction is None:
            raise InputError("--cases/--controls need a phenotype-conditional model, and this one was trained "
                             "without a phenotype; retrain with `genosynth train ... --phenotype-column phenotype`")
        cases, controls = int(cases or 0), int(controls or 0)
        if min(cases, controls) < 0:
            raise InputError("--cases and --controls must be >= 0")
        total = cases + controls
        if total < 1:
            raise InputError("nothing to generate: --cases + --controls is 0")
        if n is not None and n != total:
            raise InputError(f"--n {n} disagrees with --cases + --controls = {total}; drop --n")
        if spec:
            counts = parse_label_counts(spec, n=total, vocabulary=vocabulary, mix=mix)
            return counts, largest_remainder({v: c * cases / total for v, c in counts.items()}, cases)
        per_case = largest_remainder({v: mix.get(v, 0.0) * case_fraction[v] for v in vocabulary}, cases)
        per_control = largest_remainder({v: mix.get(v, 0.0) * (1 - case_fraction[v]) for v in vocabulary}, controls)
        if cases and not sum(per_case.values()) or controls and not sum(per_control.values()):
            raise InputError("the training cohort had no cases (or no controls) to take the label mix from; "
                             "give --labels too")
        return {v: per_case[v] + per_control[v] for v in vocabulary}, per_case
    counts = parse_label_counts(spec, n=n, vocabulary=vocabulary, mix=mix)
    if case_fraction is None:
        return counts, None
    return counts, {v: int(np.floor(c * case_fraction[v] + 0.5)) for v, c in counts.items()}
