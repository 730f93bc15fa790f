"""Cohort -> training rows: labels, phenotypes and allele-class frequencies (held in memory only, never saved)."""

from __future__ import annotations

from dataclasses import dataclass
import numpy as np
import pandas as pd
import torch
from genosynth.cohort import Cohort
from genosynth.errors import InputError


@dataclass
class TrainingData:
    """Training rows prepared from a cohort (held in memory only, never saved).

    alleles : int8, shape (n_rows, V) - haplotypes (0/1) or ALT counts (0/1/2), -1 missing
    labels : int64, shape (n_rows,) - label index per row
    """

    alleles: torch.Tensor
    labels: torch.Tensor
    vocabulary: list[str]
    label_mix: dict[str, float]
    n_classes: int
    phased: bool
    phenotypes: torch.Tensor | None = None  # int64, shape (n_rows,): 0 control, 1 case, 2 missing (null); None = off
    case_fraction: dict[str, float] | None = None  # per label: cases / people with a phenotype (aggregate)


def phenotype_codes(cohort: Cohort, column: str) -> np.ndarray:
    """A binary trait as DiT phenotype indices: int64, shape (n_samples,), 0 control, 1 case, 2 missing.

    Accepts 0/1 numbers (what ``.fam`` column 6 becomes when read: PLINK 1/2 -> 0/1) or
    ``case``/``control`` strings; NaN or empty is missing (it trains the null phenotype).
    """
    if column not in cohort.samples.columns:
        raise InputError(f"no {column!r} column in the sample table; give --samples with a case/control (or 0/1) "
                         f"{column!r} column, a .fam with the phenotype in column 6, or another --phenotype-column")
    raw = cohort.samples[column]
    if not pd.api.types.is_numeric_dtype(raw):
        words = raw.astype(object).where(raw.notna(), "").astype(str).str.strip().str.lower()
        known = {"case": 1.0, "control": 0.0, "1": 1.0, "0": 0.0, "": np.nan, "na": np.nan, "nan": np.nan}
        unknown = sorted(set(words) - set(known))
        if unknown:
            raise InputError(f"phenotype column {column!r} has values {unknown[:5]}; use case/control or 1/0 "
                             "(empty or NA for missing)")
        raw = words.map(known)
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)  # (N,)
    bad = np.isfinite(values) & ~np.isin(values, (0.0, 1.0))
    if bad.any():
        raise InputError(f"phenotype column {column!r} must be binary (1 case, 0 control, missing allowed); found "
                         f"{sorted(set(values[bad].tolist()))[:5]}. Quantitative traits are not supported: "
                         "dichotomise the trait first")
    codes = np.where(np.isfinite(values), values, 2).astype(np.int64)
    n_case, n_control = int((codes == 1).sum()), int((codes == 0).sum())
    if n_case == 0 or n_control == 0:
        raise InputError(f"phenotype column {column!r} has {n_case} cases and {n_control} controls; conditioning "
                         "needs both (check the coding: .fam uses 2 case / 1 control, tables case/control or 1/0)")
    return codes


def prepare_data(cohort: Cohort, *, label_column: str, mode: str = "auto",
                 phenotype_column: str | None = None) -> TrainingData:
    """Turn a cohort into training rows, label indices and (optionally) phenotype indices; check it at the door."""
    if mode not in ("auto", "haplotype", "genotype"):
        raise InputError(f"mode must be auto, haplotype or genotype, got {mode!r}")
    if cohort.ploidy != 2:
        raise InputError(f"the generator models diploid cohorts; this one has ploidy {cohort.ploidy}")
    if cohort.n_samples < 2:
        raise InputError(f"need at least 2 training people, got {cohort.n_samples}")
    labels = cohort.labels(label_column)
    if (labels == "").any():
        n_missing = int((labels == "").sum())
        raise InputError(
            f"{n_missing} samples have no {label_column!r} label; give a --samples table that labels "
            f"everyone, remove them (--keep/--remove), or choose another --label-column"
        )
    vocabulary, index = np.unique(labels, return_inverse=True)
    haplotype = cohort.phased if mode == "auto" else mode == "haplotype"
    if haplotype and not cohort.phased:
        raise InputError("mode 'haplotype' needs phased input; use mode 'genotype' (or auto) for unphased data")
    if haplotype:
        alleles = cohort.alleles  # (2N, V) rows 2i, 2i+1 = person i
        row_labels = np.repeat(index, 2)
    else:
        alleles = cohort.genotypes()  # (N, V)
        row_labels = index
    counts = np.bincount(index, minlength=len(vocabulary))
    mix = {str(v): float(c / counts.sum()) for v, c in zip(vocabulary, counts)}
    pheno_rows = case_fraction = None
    if phenotype_column is not None:
        codes = phenotype_codes(cohort, phenotype_column)  # (N,)
        pheno_rows = torch.from_numpy(np.repeat(codes, 2) if haplotype else codes)
        overall_cases = float((codes == 1).sum() / (codes < 2).sum())
        case_fraction = {}
        for j, v in enumerate(vocabulary):
            known = codes[(index == j) & (codes < 2)]
            case_fraction[str(v)] = float(known.mean()) if len(known) else overall_cases
    return TrainingData(
        alleles=torch.from_numpy(np.ascontiguousarray(alleles, dtype=np.int8)),
        labels=torch.from_numpy(row_labels.astype(np.int64)),
        vocabulary=[str(v) for v in vocabulary], label_mix=mix,
        n_classes=2 if haplotype else 3, phased=haplotype,
        phenotypes=pheno_rows, case_fraction=case_fraction,
    )


def class_counts(alleles: torch.Tensor, labels: torch.Tensor, n_labels: int,
                 n_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Allele-class counts and called rows per label, counted in row chunks (memory flat in the cohort).

    Returns
    -------
    count : int64, shape (n_labels + 1, V, K) - row ``n_labels`` counts all rows
    seen : int64, shape (n_labels + 1, V) - called (non-missing) rows, the same layout
    """
    v = alleles.shape[1]
    count = torch.zeros(n_labels + 1, v, n_classes, dtype=torch.int64)  # (L+1, V, K)
    seen = torch.zeros(n_labels + 1, v, dtype=torch.int64)  # (L+1, V)
    step = chunk_rows(v)  # int64 temporaries of about CHUNK_BYTES (39 rows at 10^5 SNPs; was 1024 = 0.8 GB)
    for start in range(0, alleles.shape[0], step):
        a = alleles[start : start + step]  # (r, V) int8
        lab = labels[start : start + step]
        keep = (lab >= 0) & (lab < n_labels)
        a_kept, lab_kept = a[keep], lab[keep]  # (r', V), (r',)
        for k in range(n_classes):
            count[n_labels, :, k] += (a == k).sum(0)
            count[:n_labels, :, k].index_add_(0, lab_kept, (a_kept == k).long())
        seen[n_labels] += (a >= 0).sum(0)
        seen[:n_labels].index_add_(0, lab_kept, (a_kept >= 0).long())
    return count, seen


#: bytes of the largest temporary a row-chunked pass over the training rows makes (below glibc's 32 MiB mmap ceiling)
CHUNK_BYTES = 30 << 20


def chunk_rows(width: int, *, itemsize: int = 8, most: int = 1024, budget: int | None = None) -> int:
    """Rows per chunk so that a (rows, width) temporary of ``itemsize``-byte entries takes about ``budget`` bytes.

    ``budget`` defaults to :data:`CHUNK_BYTES`.

    Passes over all training rows (allele counts, VAE metrics, the posterior) go in chunks of this
    many rows (1 to ``most``): at 10^5 SNPs a 1024-row chunk of (rows, K, V) float logits is
    0.8 GB, and glibc returns every block above its mmap threshold (32 MB at most) to the system
    when freed, which the kernel zero-fills again at the next allocation (system time).
    """
    return max(1, min(most, (budget or CHUNK_BYTES) // max(1, width * itemsize)))


def smoothed_frequencies(count: torch.Tensor, seen: torch.Tensor, *,
                         pseudo_count: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Overall (V, K) and per-label (L, V, K) class frequencies of :func:`class_counts`, with pseudo-counts."""
    n_labels, n_classes = count.shape[0] - 1, count.shape[2]
    freq = (count.float() + pseudo_count) / (seen.float()[:, :, None] + n_classes * pseudo_count)  # (L+1, V, K)
    return freq[n_labels], freq[:n_labels]


def class_frequencies(alleles: torch.Tensor, labels: torch.Tensor, n_labels: int, n_classes: int,
                      *, pseudo_count: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Smoothed allele-class frequencies overall and per label.

    Returns
    -------
    overall : float, shape (V, K)
    per_label : float, shape (n_labels, V, K)
    """
    return smoothed_frequencies(*class_counts(alleles, labels, n_labels, n_classes), pseudo_count=pseudo_count)


def group_frequencies(data: TrainingData, per_label: torch.Tensor, *, pseudo_count: float) -> torch.Tensor:
    """Smoothed allele-class frequencies per (label, phenotype) group, group index ``2 * label + phenotype``.

    Rows with a missing phenotype are left out; a group with nobody in it (e.g. no controls of
    one ancestry) takes its label's frequencies.

    per_label : float, shape (n_labels, V, K) -> float, shape (2 * n_labels, V, K)
    """
    n_labels = per_label.shape[0]
    known = data.phenotypes < 2  # (R,)
    groups = data.labels[known] * 2 + data.phenotypes[known]  # (R',)
    _, per_group = class_frequencies(data.alleles[known], groups, 2 * n_labels, data.n_classes,
                                     pseudo_count=pseudo_count)  # (2L, V, K)
    empty = torch.bincount(groups, minlength=2 * n_labels) == 0  # (2L,)
    per_group[empty] = per_label.repeat_interleave(2, dim=0)[empty]
    return per_group


def label_parents(cohort: Cohort, label_column: str, vocabulary: list[str]) -> dict[str, dict[str, str]]:
    """Coarser label columns that the training label determines, e.g. ``{"super_pop": {"CEU": "EUR", ...}}``.

    A model conditioned on ``pop`` then also writes each synthetic person's ``super_pop``. Only the
    ``pop``/``super_pop`` columns are considered, and only when every training label maps to one
    non-empty value (the panel's label hierarchy, not a per-person value).
    """
    out: dict[str, dict[str, str]] = {}
    labels = cohort.labels(label_column)
    for column in ("pop", "super_pop"):
        if column == label_column or column not in cohort.samples:
            continue
        other = cohort.labels(column)
        mapping = {}
        for lab in vocabulary:
            values = set(other[labels == lab]) - {""}
            if len(values) != 1:
                break
            mapping[lab] = values.pop()
        else:
            out[column] = mapping
    return out


def person_dosages(data_alleles: torch.Tensor, rows_per_person: int) -> np.ndarray:
    """ALT dosages per person, float64 shape (N, V), from training rows (R, V).

    The ``missing="raise"`` rule of :mod:`genosynth.stats.frequency` (missingness is private under
    a budget), with a message that names the fix of a DP run; there is nothing to fill, so
    :func:`~genosynth.stats.frequency.dosage` does not apply. Haplotype rows of a person are summed.
    """
    a = data_alleles.long()
    if (a < 0).any():
        raise InputError(
            "training under --epsilon needs complete genotypes (missingness is itself private); impute "
            "first (e.g. beagle) or remove the incomplete variants with a public list (--exclude)"
        )
    n = a.shape[0] // rows_per_person
    return a.reshape(n, rows_per_person, -1).sum(dim=1).double().numpy()  # (N, V)


def alt_frequency(freq: torch.Tensor) -> torch.Tensor:
    """ALT allele frequency of class frequencies: (..., V, K) -> (..., V); K=2 haplotypes, K=3 genotypes."""
    k = freq.shape[-1]
    return (freq * torch.arange(k, dtype=freq.dtype)).sum(-1) / (k - 1)


def shrink_label_frequencies(per_label: torch.Tensor, counts: torch.Tensor, groups: list[list[int]], *,
                             alleles_per_row: int, raw: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """Per-label frequencies shrunk toward their group's, by how much the labels of a group really differ.

    With few people a label's allele frequencies are mostly sampling noise. Within each group of
    labels (populations of one region, or all labels) the labels' ALT frequencies ``q_l`` are
    modelled as Balding-Nichols draws around the group frequency ``q_g`` (the mean of its labels)
    with divergence ``F``: ``Var(q_l) = F q_g (1 - q_g)``. ``F`` is estimated by moments over all
    SNPs, the expected sampling variance ``q_g (1 - q_g) / n_l`` removed first (Weir & Cockerham
    style), and a label's frequencies become the posterior mean
    ``(n_l f_l + kappa f_g) / (n_l + kappa)`` with ``kappa = (1 - F) / F`` prior alleles: 15
    people of a European population (``F`` ~ 0.01) are pulled most of the way to the European
    frequencies; 400 people of a super population (``F`` ~ 0.1-0.3 between continents) are hardly
    moved. Groups of one label are left as they are.

    Parameters
    ----------
    per_label : float, shape (L, V, K)
        Smoothed class frequencies per label.
    counts : int, shape (L, V)
        Called rows per label and SNP (``seen[:L]`` of :func:`class_counts`).
    groups : list of lists of label indices
        Labels that share a parent (e.g. populations of a super population).
    alleles_per_row : int
        1 for haplotype rows, 2 for genotype rows (allele draws per row).
    raw : float, shape (L, V, K), optional
        The same frequencies without the pseudo-count, from which ``F`` is estimated. A pseudo-count
        pulls a thin label's frequencies toward 1/2 and so shrinks their spread; with the sampling
        variance then removed, ``F`` from smoothed frequencies comes out 2-3x too low at 15 people
        and every thin label is pulled too far. Without ``raw``, ``per_label`` is used.

    Returns
    -------
    (shrunk per_label, float, shape (L, V, K); info: ``{"F": [per group], "kappa": [per group]}``)
    """
    out = per_label.clone()
    info: dict = {"F": [], "kappa": []}
    n_alleles = counts.double() * alleles_per_row  # (L, V)
    for members in groups:
        if len(members) < 2:
            info["F"].append(None)
            info["kappa"].append(None)
            continue
        m = torch.as_tensor(members)
        q = alt_frequency((per_label if raw is None else raw)[m].double())  # (G, V)
        qg = q.mean(0)  # (V,)
        het = (qg * (1 - qg)).clamp_min(1e-12)  # (V,)
        between = ((q - qg) ** 2).mean(0) * len(members) / (len(members) - 1)  # (V,) unbiased variance
        noise = (het / n_alleles[m].clamp_min(1)).mean(0)  # (V,) expected sampling variance
        f = float(((between - noise).sum() / het.sum()).clamp(1e-4, 0.9999))
        kappa = (1 - f) / f
        fg = per_label[m].double().mean(0)  # (V, K)
        w = n_alleles[m] / (n_alleles[m] + kappa)  # (G, V)
        out[m] = (w[..., None] * per_label[m].double() + (1 - w[..., None]) * fg[None]).to(per_label.dtype)
        info["F"].append(f)
        info["kappa"].append(kappa)
    return out, info


def label_groups(vocabulary: list[str], parents: dict[str, dict[str, str]]) -> list[list[int]]:
    """Groups of label indices that share a parent label (``super_pop`` before ``pop``); one group of all without one."""
    for column in ("super_pop", "pop"):
        mapping = parents.get(column)
        if mapping:
            by_parent: dict[str, list[int]] = {}
            for j, lab in enumerate(vocabulary):
                by_parent.setdefault(mapping[lab], []).append(j)
            return list(by_parent.values())
    return [list(range(len(vocabulary)))]


def parent_index(groups: list[list[int]], n_labels: int) -> tuple[int, ...] | None:
    """Parent index of every label from :func:`label_groups`; None when no group has two labels (no hierarchy)."""
    if len(groups) < 2 or all(len(g) < 2 for g in groups):
        return None
    out = [0] * n_labels
    for parent, members in enumerate(groups):
        for j in members:
            out[j] = parent
    return tuple(out)
