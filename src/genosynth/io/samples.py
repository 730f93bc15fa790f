"""Sample tables: population labels, sex and phenotype joined to a cohort by sample id.

A sample table is a text table with a header line, tab-separated (whitespace-separated when the
header has no tab), such as the 1000 Genomes panel or a plink2 ``.psam``. Recognised columns
(case-insensitive, a leading ``#`` ignored):

* sample id: ``sample``, ``IID``, ``id``, ``sample_id`` (required)
* ``fid`` / ``FID``; ``pop`` / ``population``; ``super_pop`` / ``superpop`` / ``super_population``
* ``sex``: ``male``/``m``/``1``, ``female``/``f``/``2``, anything in ``0``, ``unknown``, ``NA``,
  ``-9`` or empty is unknown
* ``phenotype`` / ``pheno`` / ``pheno1``: ``case``/``control`` strings, PLINK ``1``/``2`` coding
  (``0`` and ``-9`` missing), ``0``/``1`` coding, or any numbers (quantitative); ``NA`` or empty
  is missing

Every other column is kept as text.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pickle
import warnings
from collections.abc import Iterator

import numpy as np
import pandas as pd

from genosynth.cohort import Cohort
from genosynth.errors import InputError
from genosynth.io.atomic import atomic_outputs
from genosynth.io.tokens import is_number

_ALIASES = {
    "sample": ("sample", "iid", "id", "sample_id", "sampleid"),
    "fid": ("fid", "family", "family_id"),
    "pop": ("pop", "population"),
    "super_pop": ("super_pop", "superpop", "super_population"),
    "sex": ("sex", "gender"),
    "phenotype": ("phenotype", "pheno", "pheno1"),
}
_MISSING_TOKENS = frozenset({"", "na", "nan", ".", "-9", "none"})
_SEX_CODES = {"male": 1, "m": 1, "1": 1, "female": 2, "f": 2, "2": 2, "0": 0, "unknown": 0, "u": 0}
_CASE_CONTROL = {"case": 1.0, "affected": 1.0, "control": 0.0, "unaffected": 0.0}
_SEX_NAMES = {1: "male", 2: "female"}


# ---------------------------------------------------------------------------------- reading
def read_sample_table(path: str) -> pd.DataFrame:
    """Read a sample table into a DataFrame with normalised column names and codes.

    Returns
    -------
    DataFrame with column ``sample`` (str) first, then whichever of ``fid, pop, super_pop`` (str),
    ``sex`` (int8 PLINK code: 0 unknown, 1 male, 2 female) and ``phenotype`` (float64: 0 control,
    1 case, NaN missing, or a quantitative value) the file has, then the other columns as text.
    ``DataFrame.attrs["source"]`` holds ``path``.
    """
    if not os.path.exists(path):
        raise InputError(f"{path}: file not found; give the sample table (TSV with a header line) to --samples")
    try:
        with open(path, encoding="utf-8") as fh:
            first = fh.readline()
            fh.read()  # decode it all once, so a binary file fails here with a clear message
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not a UTF-8 text table ({exc}); give the plain-text TSV, not a compressed file") from None
    if not first.strip():
        raise InputError(f"{path}: sample table is empty; it needs a header line (sample pop super_pop ...) and rows")
    sep = "\t" if "\t" in first else r"\s+"
    try:
        raw = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, comment=None, engine="python")
    except (pd.errors.ParserError, ValueError) as exc:
        raise InputError(f"{path}: cannot parse the sample table ({exc}); give one row per sample, tab-separated") from None
    raw = raw.loc[:, [c for c in raw.columns if not str(c).startswith("Unnamed:")]]  # trailing tabs
    renamed = _normalise_columns(raw, path)
    if renamed.empty:
        raise InputError(f"{path}: sample table has a header but no rows; add one row per sample")
    ids = renamed["sample"].str.strip()
    if (ids == "").any():
        row = int(np.flatnonzero(ids == "")[0]) + 2
        raise InputError(f"{path}: line {row} has an empty sample id; every row needs an id")
    dup = ids[ids.duplicated()]
    if len(dup):
        raise InputError(f"{path}: {len(dup)} duplicate sample ids (first: {list(dup[:3])}); keep one row per sample")
    out = pd.DataFrame({"sample": pd.Series(ids.to_numpy(), dtype=object)})
    for col in renamed.columns:
        if col == "sample":
            continue
        values = renamed[col].astype(str).str.strip().to_numpy()
        if col == "sex":
            out[col] = parse_sex(values, path)
        elif col == "phenotype":
            out[col] = parse_phenotype(values, path)
        else:
            out[col] = pd.Series(values, dtype=object)
    out.attrs["source"] = path
    return out


def _normalise_columns(raw: pd.DataFrame, path: str) -> pd.DataFrame:
    lookup = {str(c).lstrip("#").strip().lower(): c for c in raw.columns}
    rename = {}
    for name, aliases in _ALIASES.items():
        found = next((lookup[a] for a in aliases if a in lookup), None)
        if found is not None:
            rename[found] = name
    if "sample" not in rename.values():
        raise InputError(
            f"{path}: no sample id column (header: {' '.join(map(str, raw.columns))}); name it 'sample' or 'IID'"
        )
    table = raw.rename(columns=rename)
    return table[["sample"] + [c for c in table.columns if c != "sample"]]


def parse_sex(values, source: str) -> np.ndarray:
    """Sex tokens -> int8 PLINK codes (0 unknown, 1 male, 2 female), shape (n_samples,)."""
    out = np.zeros(len(values), dtype=np.int8)
    for k, token in enumerate(values):
        t = str(token).strip().lower()
        if t in _MISSING_TOKENS:
            continue
        if t not in _SEX_CODES:
            raise InputError(
                f"{source}: sex value {str(token)!r} is not understood; use male/female, 1/2 (PLINK) or 0/NA for unknown"
            )
        out[k] = _SEX_CODES[t]
    return out


def parse_phenotype(values, source: str) -> np.ndarray:
    """Phenotype tokens -> float64, shape (n_samples,): 0 control, 1 case, NaN missing, or quantitative.

    Case/control strings map to 1/0. Numbers: only {0, 1} is 0/1 coding; {1, 2} (with 0 or -9
    for missing) is PLINK coding; anything else is a quantitative trait with -9 missing.
    """
    tokens = [str(v).strip() for v in values]
    missing = np.array([t.lower() in ("", "na", "nan", ".", "none") for t in tokens])
    present = [t for t, m in zip(tokens, missing) if not m]
    out = np.full(len(tokens), np.nan)
    if not present:
        return out
    lowered = [t.lower() for t in present]
    if all(t in _CASE_CONTROL for t in lowered):
        out[~missing] = [_CASE_CONTROL[t] for t in lowered]
        return out
    try:
        numbers = np.array(present, dtype=np.float64)
    except ValueError:
        bad = next(t for t in present if t.lower() not in _CASE_CONTROL and not is_number(t))
        raise InputError(
            f"{source}: phenotype value {bad!r} is neither case/control nor a number; use case/control, "
            "1/2 (PLINK), 0/1, a number for a quantitative trait, or NA for missing"
        ) from None
    values_set = set(np.unique(numbers[numbers != -9]).tolist())
    if values_set <= {0.0, 1.0} and 0.0 in values_set:  # 0/1 coding
        coded = np.where(numbers == -9, np.nan, numbers)
    elif values_set <= {0.0, 1.0, 2.0} and 2.0 in values_set:  # PLINK 1/2 coding, 0 missing
        coded = np.select([numbers == 1, numbers == 2], [0.0, 1.0], np.nan)
    elif values_set == {1.0}:
        raise InputError(
            f"{source}: every phenotype is 1, which is all controls in PLINK 1/2 coding but all cases in "
            "0/1 coding; write the column as case/control"
        )
    else:
        coded = np.where(numbers == -9, np.nan, numbers)
    out[~missing] = coded
    return out


# ---------------------------------------------------------------------------------- joining
def attach_samples(cohort: Cohort, table: pd.DataFrame, *, allow_unknown: bool = False) -> Cohort:
    """Join ``table`` (from :func:`read_sample_table`) to ``cohort`` by sample id.

    Columns of the table replace the cohort's for the samples the table lists; an empty label,
    unknown sex (0) or missing phenotype in the table keeps the cohort's value (e.g. from the
    ``.fam``). Cohort samples absent from the table keep their labels (empty for new columns);
    their count goes to ``meta["samples_without_table_row"]`` and a :class:`UserWarning`.

    Raises
    ------
    InputError
        When the table lists ids that are not in the cohort, unless ``allow_unknown``.
    """
    source = table.attrs.get("source", "sample table")
    if "sample" not in table.columns:
        raise InputError(f"{source}: no 'sample' column; read it with read_sample_table()")
    ids = cohort.samples["sample"].astype(str)
    table_ids = table["sample"].astype(str)
    unknown = table_ids[~table_ids.isin(set(ids))]
    if len(unknown) and not allow_unknown:
        raise InputError(
            f"{source}: {len(unknown)} sample ids are not in the genotype file (first: {', '.join(unknown[:5])}); "
            "remove those rows from the sample table or pass --allow-unknown-samples to ignore them"
        )
    indexed = table.assign(sample=table_ids).set_index("sample")
    listed = ids.isin(set(table_ids)).to_numpy()  # (N,)
    aligned = indexed.reindex(ids.to_numpy())  # (N, columns), NaN for unlisted samples
    samples = cohort.samples.copy()
    for col in indexed.columns:
        new = aligned[col].to_numpy()
        if col == "sex":
            old = samples["sex"].to_numpy(dtype=np.int8)
            take = listed & (np.nan_to_num(new.astype(np.float64)) != 0)
            samples["sex"] = np.where(take, np.nan_to_num(new.astype(np.float64)), old).astype(np.int8)
        elif col == "phenotype":
            old = samples["phenotype"].to_numpy(dtype=np.float64)
            new = new.astype(np.float64)
            samples["phenotype"] = np.where(listed & np.isfinite(new), new, old)
        else:
            old = samples[col].fillna("").astype(str).to_numpy() if col in samples.columns else np.full(len(ids), "")
            new = pd.Series(new, dtype=object).fillna("").astype(str).to_numpy()
            samples[col] = pd.Series(np.where(listed & (new != ""), new, old), dtype=object)
    meta = dict(cohort.meta)
    n_missing = int((~listed).sum())
    meta["samples_without_table_row"] = n_missing
    if n_missing:
        first = ", ".join(ids[~listed][:5])
        warnings.warn(
            f"{source}: {n_missing} of {len(ids)} samples have no row in the sample table (first: {first}); "
            "they keep empty labels. Add rows for them if they need labels",
            UserWarning,
            stacklevel=2,
        )
    return dataclasses.replace(cohort, samples=samples.reset_index(drop=True), meta=meta)


# ---------------------------------------------------------------------------------- spooling
class SampleSpool:
    """A sample table kept in a temporary file, appended and read back a batch at a time.

    A synthetic cohort's sample table grows with the number of people; the writers of
    :mod:`genosynth.sampling.write` append each batch's table here (pickled) and every per-person
    output (``.fam``, ``.psam``, VCF header ids, ``.hapt`` ids, ``PREFIX.samples.tsv``) is then
    streamed from :meth:`batches`, so memory does not grow with ``--n``. The batches are to have
    the same columns. Closing removes the file.

    >>> import tempfile
    >>> with SampleSpool(os.path.join(tempfile.mkdtemp(), "s.tmp")) as spool:
    ...     spool.append(pd.DataFrame({"sample": ["a", "b"], "phenotype": [1.0, 0.0]}))
    ...     spool.append(pd.DataFrame({"sample": ["c"], "phenotype": [0.5]}))
    ...     len(spool), [list(t["sample"]) for t in spool.batches()], spool.phenotype_binary
    (3, [['a', 'b'], ['c']], False)
    """

    def __init__(self, path: str):
        self.path = path
        self._fh = open(path, "w+b")
        self._n = 0
        self.phenotype_binary = True  # every known phenotype is 0 or 1 (how a whole table is formatted)

    def append(self, table: pd.DataFrame) -> None:
        """Add ``table`` (a batch of rows, in order)."""
        self._fh.seek(0, os.SEEK_END)
        pickle.dump(table, self._fh, protocol=pickle.HIGHEST_PROTOCOL)
        self._n += len(table)
        if "phenotype" in table.columns:
            self.phenotype_binary = self.phenotype_binary and _is_binary(table["phenotype"].to_numpy(dtype=np.float64))

    def batches(self) -> Iterator[pd.DataFrame]:
        """The tables appended so far, in order, one at a time."""
        self._fh.flush()
        with open(self.path, "rb") as fh:
            while True:
                try:
                    yield pickle.load(fh)
                except EOFError:
                    return

    def __len__(self) -> int:
        return self._n

    def close(self) -> None:
        """Close and remove the file."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)

    def __enter__(self) -> "SampleSpool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def sample_batches(samples: pd.DataFrame | SampleSpool) -> Iterator[pd.DataFrame]:
    """The rows of a sample table (one batch) or of a :class:`SampleSpool` (its batches), in order."""
    if isinstance(samples, pd.DataFrame):
        yield samples
    else:
        yield from samples.batches()


def phenotype_is_binary(samples: pd.DataFrame | SampleSpool) -> bool:
    """Whether every known phenotype of the table is 0 or 1 (then written as case/control)."""
    if isinstance(samples, pd.DataFrame):
        return _is_binary(samples["phenotype"].to_numpy(dtype=np.float64))
    return samples.phenotype_binary


def _is_binary(phenotype: np.ndarray) -> bool:
    ok = np.isfinite(phenotype)
    return bool(np.isin(phenotype[ok], [0.0, 1.0]).all())


# ---------------------------------------------------------------------------------- writing
def write_sample_table(cohort: Cohort | pd.DataFrame | SampleSpool, path: str) -> list[str]:
    """Write the cohort's sample table (or a sample table itself, or a :class:`SampleSpool` batch by
    batch) as TSV (readable by :func:`read_sample_table`); return ``[path]``.

    ``sex`` is written as male/female/unknown, a binary ``phenotype`` as case/control, a
    quantitative one as numbers, missing as ``NA``.
    """
    samples = cohort.samples if isinstance(cohort, Cohort) else cohort
    binary = phenotype_is_binary(samples)
    with atomic_outputs([path]) as (tmp,):
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            for k, part in enumerate(sample_batches(samples)):
                _sample_rows(part, binary=binary).to_csv(fh, sep="\t", index=False, header=k == 0)
    return [path]


def _sample_rows(s: pd.DataFrame, *, binary: bool) -> pd.DataFrame:
    """The text columns of :func:`write_sample_table` for the rows of ``s``."""
    out = pd.DataFrame({"sample": s["sample"].astype(str)})
    for col in ("fid", "pop", "super_pop"):
        out[col] = s[col].fillna("").astype(str)
    out["sex"] = [_SEX_NAMES.get(int(x), "unknown") for x in s["sex"]]
    out["phenotype"] = format_phenotype(s["phenotype"].to_numpy(dtype=np.float64), binary=binary)
    for col in s.columns:
        if col not in out.columns:
            out[col] = s[col].astype(object).where(s[col].notna(), "").astype(str)
    bad = [c for c in out.columns if out[c].astype(str).str.contains(r"[\t\n]", regex=True).any()]
    if bad:
        raise InputError(f"sample table columns {bad} contain tabs or newlines; remove them before writing")
    return out


def format_phenotype(phenotype: np.ndarray, *, binary: bool | None = None) -> list[str]:
    """float64 phenotype, shape (n_samples,) -> case/control (binary), numbers (quantitative), NA.

    ``binary``: whether the whole table is binary (default: whether ``phenotype`` is), so that
    the batches of one table are formatted alike.
    """
    ok = np.isfinite(phenotype)
    if _is_binary(phenotype) if binary is None else binary:
        return ["NA" if not k else ("case" if v == 1 else "control") for v, k in zip(phenotype, ok)]
    return ["NA" if not k else repr(float(v)) for v, k in zip(phenotype, ok)]


__all__ = ["read_sample_table", "attach_samples", "write_sample_table", "parse_sex", "parse_phenotype",
           "format_phenotype", "SampleSpool", "sample_batches", "phenotype_is_binary"]
