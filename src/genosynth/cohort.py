"""The cohort data model: one object for alleles, variants and samples.

A :class:`Cohort` holds

* ``alleles`` : int8, shape ``(n_rows, n_variants)``. When ``phased`` the rows are haplotypes,
  ``ploidy`` consecutive rows per sample (rows ``2i`` and ``2i+1`` are sample ``i`` when diploid),
  coded 0 (REF) / 1 (ALT). When unphased the rows are samples and the values are ALT allele
  counts ``0..ploidy``. Missing is ``-1`` in both cases.
* ``variants`` : DataFrame with columns ``chrom, pos, id, ref, alt`` (+ optional ``cm``), one row
  per column of ``alleles``.
* ``samples`` : DataFrame with columns ``sample, fid, pop, super_pop, sex, phenotype`` (+ any
  extra columns), one row per sample. ``sex`` is the PLINK code (0 unknown, 1 male, 2 female);
  ``phenotype`` is float, NaN when missing, and a binary trait is coded 0 = control, 1 = case.

Everything is validated at construction; errors name the fix.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from genosynth.errors import InputError
from genosynth.stats.frequency import allele_frequencies

VARIANT_COLUMNS = ("chrom", "pos", "id", "ref", "alt")
SAMPLE_COLUMNS = ("sample", "fid", "pop", "super_pop", "sex", "phenotype")
MISSING = -1


def make_variants(
    *,
    chrom,
    pos,
    ref,
    alt,
    id=None,  # noqa: A002 - the column is called id in every genetics format
    cm=None,
) -> pd.DataFrame:
    """Build a variant table with the standard columns and dtypes.

    ``id`` defaults to ``CHROM:POS_REF_ALT`` (the 1000 Genomes legend style); ids given as
    ``"."`` or empty are filled the same way.
    """
    chrom = np.asarray(chrom).astype(str)
    pos = np.asarray(pos, dtype=np.int64)
    ref = np.asarray(ref).astype(str)
    alt = np.asarray(alt).astype(str)
    n = len(pos)
    default_ids = np.array([f"{c}:{p}_{r}_{a}" for c, p, r, a in zip(chrom, pos, ref, alt)], dtype=object)
    if id is None:
        ids = default_ids
    else:
        ids = np.asarray(id).astype(str).astype(object)
        blank = (ids == ".") | (ids == "")
        ids[blank] = default_ids[blank]
    table = pd.DataFrame(
        {
            "chrom": pd.Series(chrom, dtype=object),
            "pos": pos,
            "id": pd.Series(ids, dtype=object),
            "ref": pd.Series(ref, dtype=object),
            "alt": pd.Series(alt, dtype=object),
        }
    )
    if cm is not None:
        table["cm"] = np.asarray(cm, dtype=np.float64)
    if len(table) != n:
        raise InputError("variant columns have different lengths; give one value per variant")
    return table


def make_samples(
    ids,
    *,
    fid=None,
    pop=None,
    super_pop=None,
    sex=None,
    phenotype=None,
    **extra,
) -> pd.DataFrame:
    """Build a sample table with the standard columns and dtypes.

    Missing labels are empty strings, missing sex is 0, missing phenotype is NaN.
    """
    ids = [str(i) for i in ids]
    n = len(ids)

    def text(values, default):
        if values is None:
            return pd.Series([default] * n, dtype=object)
        out = pd.Series(list(values), dtype=object).fillna("").astype(str)
        return out

    table = pd.DataFrame(
        {
            "sample": pd.Series(ids, dtype=object),
            "fid": text(fid, None) if fid is not None else pd.Series(ids, dtype=object),
            "pop": text(pop, ""),
            "super_pop": text(super_pop, ""),
            "sex": np.zeros(n, dtype=np.int8) if sex is None else np.asarray(sex, dtype=np.int8),
            "phenotype": np.full(n, np.nan) if phenotype is None else np.asarray(phenotype, dtype=np.float64),
        }
    )
    for name, values in extra.items():
        values = list(values)
        numeric = all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
                      for v in values)
        table[name] = values if numeric else pd.Series(values, dtype=object)  # text stays object dtype
    return table


@dataclass(eq=False)
class Cohort:
    """A genotype cohort: alleles, variant table, sample table.

    Parameters
    ----------
    alleles : int8, shape (n_rows, n_variants)
        Haplotype rows (0/1, ``ploidy`` rows per sample) when ``phased``, else allele counts
        ``0..ploidy`` per sample. ``-1`` is missing.
    variants : DataFrame, one row per variant (see :func:`make_variants`).
    samples : DataFrame, one row per sample (see :func:`make_samples`).
    phased : bool
    ploidy : int
    meta : dict
        Provenance and side information (source file, skipped-record counts, privacy
        guarantee of a synthetic cohort). Never holds per-person data beyond the tables.
    """

    alleles: np.ndarray
    variants: pd.DataFrame
    samples: pd.DataFrame
    phased: bool
    ploidy: int = 2
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Check shapes, dtypes, value ranges and ids; raise :class:`InputError` naming the fix."""
        a = self.alleles
        if not isinstance(a, np.ndarray) or a.ndim != 2:
            raise InputError("alleles must be a 2-D numpy array (rows x variants)")
        if a.dtype != np.int8:
            raise InputError(f"alleles must have dtype int8, got {a.dtype}; convert with .astype(np.int8)")
        if self.ploidy < 1:
            raise InputError(f"ploidy must be >= 1, got {self.ploidy}")
        missing_cols = [c for c in VARIANT_COLUMNS if c not in self.variants.columns]
        if missing_cols:
            raise InputError(f"variant table lacks columns {missing_cols}; build it with make_variants()")
        missing_cols = [c for c in SAMPLE_COLUMNS if c not in self.samples.columns]
        if missing_cols:
            raise InputError(f"sample table lacks columns {missing_cols}; build it with make_samples()")
        n_variants = len(self.variants)
        n_samples = len(self.samples)
        if a.shape[1] != n_variants:
            raise InputError(
                f"alleles have {a.shape[1]} variant columns but the variant table has {n_variants} rows"
            )
        expected_rows = n_samples * self.ploidy if self.phased else n_samples
        if a.shape[0] != expected_rows:
            kind = f"{self.ploidy} haplotype rows per sample" if self.phased else "one row per sample"
            raise InputError(
                f"alleles have {a.shape[0]} rows but {n_samples} samples need {expected_rows} ({kind})"
            )
        if a.size:
            lo, hi = int(a.min()), int(a.max())
            top = 1 if self.phased else self.ploidy
            if lo < MISSING or hi > top:
                raise InputError(
                    f"allele values must lie in -1..{top} ({'haplotypes 0/1' if self.phased else 'ALT counts'}, "
                    f"-1 missing); found {lo}..{hi}. Recode the input (multi-allelic sites must be split or dropped)"
                )
        dup = self.samples["sample"][self.samples["sample"].duplicated()]
        if len(dup):
            raise InputError(
                f"{len(dup)} duplicate sample ids (first: {list(dup[:3])}); make sample ids unique"
            )
        dup = self.variants["id"][self.variants["id"].duplicated()]
        if len(dup):
            raise InputError(
                f"{len(dup)} duplicate variant ids (first: {list(dup[:3])}); make them unique, "
                "e.g. plink2 --set-all-var-ids @:#_\\$r_\\$a"
            )
        if (np.asarray(self.variants["pos"]) < 0).any():
            raise InputError("variant positions must be >= 0")

    # ------------------------------------------------------------------ shape helpers
    @property
    def n_samples(self) -> int:
        return len(self.samples)

    @property
    def n_variants(self) -> int:
        return len(self.variants)

    @property
    def n_haplotypes(self) -> int:
        if not self.phased:
            raise InputError("cohort is unphased: it has no haplotypes; give phased input (VCF with '|')")
        return self.n_samples * self.ploidy

    def genotypes(self) -> np.ndarray:
        """ALT allele counts per sample.

        Returns
        -------
        int8, shape (n_samples, n_variants); -1 where any allele of the sample is missing.
        """
        if not self.phased:
            return self.alleles
        h = self.haplotypes()  # (N, P, V)
        g = h.sum(axis=1, dtype=np.int8)  # (N, V)
        g[(h < 0).any(axis=1)] = MISSING
        return g

    def haplotypes(self) -> np.ndarray:
        """Haplotypes as int8, shape (n_samples, ploidy, n_variants); a view of ``alleles``."""
        if not self.phased:
            raise InputError("cohort is unphased: it has no haplotypes; give phased input (VCF with '|')")
        return self.alleles.reshape(self.n_samples, self.ploidy, self.n_variants)

    def allele_frequencies(self) -> np.ndarray:
        """ALT allele frequency per variant over called alleles, float64 shape (n_variants,); NaN where
        none is called (:func:`genosynth.stats.frequency.allele_frequencies`, ``missing="skip"``).

        Phased cohorts count haplotype rows (one missing allele drops only itself); unphased ones
        count genotype rows.
        """
        return allele_frequencies(self.alleles, ploidy=1 if self.phased else self.ploidy, missing="skip")

    def missing_rate(self) -> float:
        """Fraction of missing allele calls."""
        return float((self.alleles < 0).mean()) if self.alleles.size else 0.0

    # ------------------------------------------------------------------ transforms
    def subset(self, *, samples=None, variants=None) -> "Cohort":
        """A new cohort restricted to the given sample and/or variant indices (or boolean masks)."""
        s_idx = np.arange(self.n_samples) if samples is None else _as_index(samples, self.n_samples)
        v_idx = np.arange(self.n_variants) if variants is None else _as_index(variants, self.n_variants)
        if self.phased:
            rows = (s_idx[:, None] * self.ploidy + np.arange(self.ploidy)[None, :]).ravel()
        else:
            rows = s_idx
        return dataclasses.replace(
            self,
            alleles=np.ascontiguousarray(self.alleles[np.ix_(rows, v_idx)]),
            variants=self.variants.iloc[v_idx].reset_index(drop=True),
            samples=self.samples.iloc[s_idx].reset_index(drop=True),
            meta=dict(self.meta),
        )

    def unphased(self) -> "Cohort":
        """The same cohort as genotype counts (drops phase)."""
        if not self.phased:
            return self
        return dataclasses.replace(self, alleles=self.genotypes().copy(), phased=False, meta=dict(self.meta))

    def labels(self, column: str) -> np.ndarray:
        """Sample labels from ``column`` of the sample table as a str array, shape (n_samples,)."""
        if column not in self.samples.columns:
            raise InputError(
                f"sample table has no column {column!r} (has {list(self.samples.columns)}); "
                "give a --samples table with that column or choose another label column"
            )
        return self.samples[column].fillna("").astype(str).to_numpy()

    def __repr__(self) -> str:
        kind = "haplotypes" if self.phased else "genotypes"
        return f"Cohort({self.n_samples} samples x {self.n_variants} variants, {kind}, ploidy={self.ploidy})"


def concat_variants(cohorts, *, names=None) -> Cohort:
    """Join cohorts of the same people along the variants: one file per chromosome -> one cohort.

    Parameters
    ----------
    cohorts : sequence of Cohort
        The same sample ids in the same order and the same ploidy; variants in the given order
        (chromosome after chromosome). When some are phased and others not, all are joined as
        genotypes (phase dropped).
    names : sequence of str, optional
        What each cohort was read from, for error messages and ``meta["sources"]``.

    Returns
    -------
    Cohort
        ``alleles`` of the parts side by side (int8, shape (rows, sum of n_variants)); the sample
        table of the first part; ``meta["sources"]`` the parts' sources and ``meta["skipped"]``
        their summed skipped-record counts.

    >>> a = Cohort(np.zeros((2, 1), np.int8), make_variants(chrom=["1"], pos=[5], ref=["A"], alt=["C"]),
    ...            make_samples(["x", "y"]), phased=False)
    >>> b = Cohort(np.ones((2, 2), np.int8), make_variants(chrom=["2", "2"], pos=[1, 9], ref=["G", "G"],
    ...            alt=["T", "A"]), make_samples(["x", "y"]), phased=False)
    >>> joined = concat_variants([a, b])
    >>> joined.n_variants, list(joined.variants["chrom"])
    (3, ['1', '2', '2'])
    """
    cohorts = list(cohorts)
    names = [str(n) for n in names] if names is not None else [f"part {k + 1}" for k in range(len(cohorts))]
    if not cohorts:
        raise InputError("no cohort to join; give one file per chromosome")
    if len(cohorts) == 1:
        return cohorts[0]
    first = cohorts[0]
    ids = first.samples["sample"].astype(str).tolist()
    for c, name in zip(cohorts[1:], names[1:]):
        other = c.samples["sample"].astype(str).tolist()
        if other != ids:
            what = "other sample ids" if set(other) != set(ids) else "the same sample ids in another order"
            raise InputError(f"{name} has {what} than {names[0]} ({len(other)} vs {len(ids)} samples); files "
                             "joined by chromosome must hold the same people in the same order (bcftools view -S "
                             "samples.txt, or plink2 --indiv-sort f samples.txt, then join)")
        if c.ploidy != first.ploidy:
            raise InputError(f"{name} has ploidy {c.ploidy}, {names[0]} {first.ploidy}; join files of one ploidy")
    phased = all(c.phased for c in cohorts)
    parts = [c if phased else c.unphased() for c in cohorts]
    alleles = np.concatenate([c.alleles for c in parts], axis=1)  # (rows, V_total)
    variants = pd.concat([c.variants for c in parts], ignore_index=True)
    skipped: dict[str, int] = {}
    for c in parts:
        for key, count in c.meta.get("skipped", {}).items():
            skipped[key] = skipped.get(key, 0) + int(count)
    meta = {**first.meta, "sources": [c.meta.get("source", n) for c, n in zip(parts, names)]}
    if skipped:
        meta["skipped"] = skipped
    return Cohort(alleles=alleles, variants=variants, samples=first.samples.copy(), phased=phased,
                  ploidy=first.ploidy, meta=meta)


def _as_index(sel, n: int) -> np.ndarray:
    sel = np.asarray(sel)
    if sel.dtype == bool:
        if sel.shape != (n,):
            raise InputError(f"boolean selection has length {sel.shape[0]}, expected {n}")
        return np.flatnonzero(sel)
    return sel.astype(np.int64)
