"""PLINK 1 binary filesets: ``PREFIX.bed`` + ``PREFIX.bim`` + ``PREFIX.fam``.

Allele coding (the plink2 convention): ``.bim`` column 5 is allele 1 (A1), which plink2 treats
as ALT, and column 6 is allele 2 (A2), treated as REF. The ``.bed`` stores A1 counts, so a cohort
read here holds ALT = A1 counts and ``plink2 --bfile PREFIX --freq`` reports the same ALT allele
and ``ALT_FREQS`` as :meth:`Cohort.allele_frequencies`. A missing allele code (``0`` in a
``.bim``) is ``"."`` in the cohort, as in VCF.

``.fam``: ``FID IID PAT MAT SEX PHENO``. ``SEX`` 1 = male, 2 = female, anything else unknown.
``PHENO`` is case/control when every value lies in {-9, 0, 1, 2} (1 = control -> 0, 2 = case -> 1,
-9 and 0 missing), otherwise quantitative (-9 and NA missing).

Reading uses bed-reader (multi-threaded Rust); writing packs the 2-bit codes with numpy.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from genosynth.cohort import MISSING, Cohort, make_samples, make_variants
from genosynth.errors import InputError
from genosynth.io.atomic import atomic_outputs
from genosynth.io.order import in_genomic_order
from genosynth.io.samples import phenotype_is_binary, sample_batches
from genosynth.io.tokens import check_tokens, is_number

BED_MAGIC = b"\x6c\x1b\x01"  # SNP-major .bed
# 2-bit .bed code of an A1 (= ALT) count: 2 -> 00 (hom A1), 1 -> 10 (het), 0 -> 11 (hom A2), missing -> 01.
_CODE_OF_COUNT = np.array([0b01, 0b11, 0b10, 0b00], dtype=np.uint8)  # index = count + 1
_CHUNK_BYTES = 64 << 20  # genotypes packed per write when writing a .bed
_FIELDS = "PLINK and VCF files separate fields by whitespace"  # why ids must be single tokens


# ---------------------------------------------------------------------------------- reading
def read_bim(path: str) -> pd.DataFrame:
    """Read a ``.bim`` file into a variant table (``alt`` = column 5 A1, ``ref`` = column 6 A2).

    Raises :class:`InputError` naming the line for a wrong column count or a non-integer position.
    """
    rows = _read_table(path, 6, "CHROM ID CM POS A1 A2")
    chrom, vid, cm, pos, a1, a2 = (rows[:, k] for k in range(6))
    pos_int = _to_int(pos, path, "position (column 4)")
    try:
        cm_f = cm.astype(np.float64)
    except ValueError:
        bad = next(i for i, t in enumerate(cm) if not is_number(t))
        raise InputError(
            f"{path}: line {bad + 1} has a non-numeric centimorgan value {str(cm[bad])!r} in column 3; "
            "use 0 when the genetic position is unknown"
        ) from None
    multi = np.flatnonzero(np.char.find(a1.astype(str), ",") >= 0) if len(a1) else np.zeros(0, int)
    multi = multi if len(multi) else np.flatnonzero(np.char.find(a2.astype(str), ",") >= 0)
    if len(multi):
        raise InputError(f"{path}: line {multi[0] + 1} has a multi-allelic allele list; split or drop multi-allelic "
                         "sites first (bcftools norm -m -, or plink2 --max-alleles 2)")
    a1 = np.where(a1 == "0", ".", a1)
    a2 = np.where(a2 == "0", ".", a2)
    variants = make_variants(chrom=chrom, pos=pos_int, ref=a2, alt=a1, id=vid)
    if np.any(cm_f != 0):
        variants["cm"] = cm_f
    return variants


def read_fam(path: str) -> pd.DataFrame:
    """Read a ``.fam`` file into a sample table (see the module notes for SEX and PHENO)."""
    rows = _read_table(path, 6, "FID IID PAT MAT SEX PHENO")
    fid, iid, pat, mat, sex, pheno = (rows[:, k] for k in range(6))
    sex_code = np.select([sex == "1", sex == "2"], [1, 2], 0).astype(np.int8)
    phenotype = parse_plink_phenotype(pheno, path)
    extra = {}
    if np.any(pat != "0") or np.any(mat != "0"):
        extra = {"pat": pat.tolist(), "mat": mat.tolist()}
    return make_samples(iid, fid=fid, sex=sex_code, phenotype=phenotype, **extra)


def parse_plink_phenotype(tokens: np.ndarray, source: str) -> np.ndarray:
    """PLINK phenotype tokens -> float64 (binary 0 control / 1 case, else quantitative, NaN missing).

    Parameters
    ----------
    tokens : str array, shape (n_samples,)
    source : name of the file, for error messages.
    """
    tokens = np.asarray(tokens, dtype=str)
    missing = np.isin(np.char.lower(tokens), ["na", "nan", ".", ""])
    try:
        values = np.where(missing, "-9", tokens).astype(np.float64)  # (N,)
    except ValueError:
        bad = next(t for t in tokens if not is_number(t) and t.lower() not in ("na", "nan", "."))
        raise InputError(
            f"{source}: phenotype value {str(bad)!r} is not a number; use 1/2 for control/case, a number for a "
            "quantitative trait, or -9 for missing"
        ) from None
    if np.isin(values, [-9.0, 0.0, 1.0, 2.0]).all():
        out = np.full(values.shape, np.nan)
        out[values == 1] = 0.0
        out[values == 2] = 1.0
        return out
    return np.where(values == -9, np.nan, values)


def read_bed(prefix: str, *, threads: int | None = None) -> Cohort:
    """Read ``PREFIX.bed/.bim/.fam`` into an unphased diploid :class:`Cohort` of ALT (= A1) counts.

    Parameters
    ----------
    prefix : path without extension (a trailing ``.bed`` is accepted and stripped).
    threads : bed-reader threads (default: all cores).

    Returns
    -------
    Cohort with ``alleles`` int8, shape (n_samples, n_variants), values 0/1/2 and -1 missing.

    Notes
    -----
    ``prefix`` may name several filesets separated by commas (``chr1,chr2``: one per chromosome,
    the same samples in each): they are read in turn and joined along the variants
    (:func:`genosynth.cohort.concat_variants`).
    """
    if "," in prefix and not os.path.exists(prefix + ".bed") and not os.path.exists(prefix):
        from genosynth.cohort import concat_variants

        prefixes = [p.strip() for p in prefix.split(",") if p.strip()]
        return concat_variants([read_bed(p, threads=threads) for p in prefixes], names=prefixes)
    if prefix.endswith(".bed"):
        prefix = prefix[:-4]
    bed, bim, fam = f"{prefix}.bed", f"{prefix}.bim", f"{prefix}.fam"
    absent = [p for p in (bed, bim, fam) if not os.path.exists(p)]
    if absent:
        raise InputError(
            f"{', '.join(absent)}: file not found; --bfile PREFIX needs PREFIX.bed, PREFIX.bim and PREFIX.fam"
        )
    variants = read_bim(bim)
    samples = read_fam(fam)
    n_var, n_smp = len(variants), len(samples)
    _check_bed_size(bed, n_smp, n_var, bim, fam)

    from bed_reader import open_bed

    with open_bed(bed, iid_count=n_smp, sid_count=n_var, count_A1=True, num_threads=threads,
                  properties={}) as reader:
        g = reader.read(dtype="int8", order="C", num_threads=threads)  # (N, V), -127 missing
    g[g < 0] = MISSING
    return Cohort(alleles=g, variants=variants, samples=samples, phased=False, ploidy=2,
                  meta={"source": os.path.abspath(bed), "format": "bed"})


def _check_bed_size(bed: str, n_smp: int, n_var: int, bim: str, fam: str) -> None:
    with open(bed, "rb") as fh:
        magic = fh.read(3)
    if magic != BED_MAGIC:
        raise InputError(
            f"{bed}: not a SNP-major PLINK 1 .bed (first bytes {magic.hex() or 'none'}, expected 6c1b01); "
            "re-export it with plink2 --make-bed"
        )
    expected = 3 + n_var * ((n_smp + 3) // 4)
    size = os.path.getsize(bed)
    if size != expected:
        kind = "truncated" if size < expected else "longer than expected"
        raise InputError(
            f"{bed}: file is {kind} ({size} bytes; {n_var} variants in {os.path.basename(bim)} x {n_smp} samples "
            f"in {os.path.basename(fam)} need {expected}). The .bim/.fam line counts do not match the .bed or "
            "the .bed is incomplete; use the .bim and .fam written with this .bed, or re-export all three"
        )


def _read_table(path: str, n_cols: int, columns: str) -> np.ndarray:
    """Whitespace-separated text with exactly ``n_cols`` columns -> str array (n_lines, n_cols)."""
    if not os.path.exists(path):
        raise InputError(f"{path}: file not found; check the path")
    try:
        with open(path, encoding="utf-8") as fh:
            rows = [line.split() for line in fh]
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not a text file ({exc}); give the plain-text file, not a compressed or binary one") from None
    for lineno, parts in enumerate(rows, start=1):
        if len(parts) != n_cols:
            raise InputError(
                f"{path}: line {lineno} has {len(parts)} columns, expected {n_cols} ({columns}); "
                "fix or re-export the file with plink2 --make-bed"
            )
    if not rows:
        raise InputError(f"{path}: file is empty; a PLINK fileset needs at least one sample and one variant")
    return np.array(rows, dtype=object).astype(str)


def _to_int(tokens: np.ndarray, path: str, what: str) -> np.ndarray:
    try:
        return tokens.astype(np.int64)
    except ValueError:
        bad = next(i for i, t in enumerate(tokens) if not t.lstrip("-").isdigit())
        raise InputError(
            f"{path}: line {bad + 1} has a non-integer {what} {str(tokens[bad])!r}; positions must be whole base-pair "
            "coordinates"
        ) from None


# ---------------------------------------------------------------------------------- writing
def write_bed(cohort: Cohort, prefix: str, *, fid_column: str | None = None) -> list[str]:
    """Write ``PREFIX.bed/.bim/.fam``; return the three paths.

    Phased cohorts are written as genotype counts (a ``.bed`` holds no phase). ``.bim`` column 5
    is ALT and column 6 REF, so plink2 reads the same ALT allele back. Variants are written in
    genomic order (:func:`genosynth.io.order.genomic_order`), which plink2 requires.

    Parameters
    ----------
    cohort : diploid cohort.
    prefix : output path without extension.
    fid_column : sample-table column whose label becomes the ``.fam`` FID (e.g. ``super_pop``);
        samples with an empty label keep their ``fid``. Default: the ``fid`` column.
    """
    if cohort.ploidy != 2:
        raise InputError(f"a .bed holds diploid genotypes; this cohort has ploidy {cohort.ploidy}. Choose --format vcf")
    cohort = in_genomic_order(cohort)
    g = cohort.genotypes()  # (N, V)
    step = max(1, _CHUNK_BYTES // max(cohort.n_samples, 1))
    blocks = (g[:, s:s + step].T for s in range(0, cohort.n_variants, step))  # (v, N)
    return write_bed_blocks(prefix, blocks, variants=cohort.variants, samples=cohort.samples, fid_column=fid_column)


def write_bed_blocks(prefix: str, blocks, *, variants: pd.DataFrame, samples,
                     fid_column: str | None = None) -> list[str]:
    """:func:`write_bed` from variant-major blocks of ALT counts, so a cohort larger than memory can be written.

    blocks : iterable of int8 arrays, shape (v, n_samples), -1 missing: the variants of
        ``variants`` in order (already in genomic order).
    samples : the sample table, or a :class:`genosynth.io.samples.SampleSpool` whose batches
        are written to the ``.fam`` one at a time.
    """
    bim_lines = _bim_lines(variants)
    binary = phenotype_is_binary(samples)
    paths = [f"{prefix}.bed", f"{prefix}.bim", f"{prefix}.fam"]
    with atomic_outputs(paths) as (tmp_bed, tmp_bim, tmp_fam):
        with open(tmp_fam, "w", encoding="utf-8") as fh:  # first: a bad id fails before the genotypes
            for part in sample_batches(samples):
                fh.writelines(_fam_lines(part, fid_column, binary=binary))
        _write_bed_matrix(blocks, len(samples), tmp_bed)
        with open(tmp_bim, "w", encoding="utf-8") as fh:
            fh.writelines(bim_lines)
    return paths


def _write_bed_matrix(blocks, n_smp: int, path: str) -> None:
    """Pack variant-major blocks of ALT counts (int8, shape (v, n_samples), -1 missing) as a SNP-major .bed."""
    n_bytes = (n_smp + 3) // 4
    pad = n_bytes * 4 - n_smp
    with open(path, "wb") as fh:
        fh.write(BED_MAGIC)
        for block in blocks:  # (v, N)
            codes = _CODE_OF_COUNT[block.astype(np.int16) + 1]  # (v, N) uint8
            if pad:
                codes = np.pad(codes, ((0, 0), (0, pad)))  # padding bits are 00
            codes = codes.reshape(len(block), n_bytes, 4)  # (v, B, 4): 4 samples per byte, low bits first
            packed = codes[..., 0] | (codes[..., 1] << 2) | (codes[..., 2] << 4) | (codes[..., 3] << 6)
            fh.write(np.ascontiguousarray(packed, dtype=np.uint8).tobytes())


def _bim_lines(variants: pd.DataFrame) -> list[str]:
    cm = variants["cm"].to_numpy(dtype=float) if "cm" in variants.columns else np.zeros(len(variants))
    for col in ("chrom", "id", "ref", "alt"):
        check_tokens(variants[col], f"variant {col}", fields=_FIELDS)
    lines = []
    for chrom, vid, c, pos, ref, alt in zip(variants["chrom"], variants["id"], cm, variants["pos"],
                                            variants["ref"], variants["alt"]):
        a1 = "0" if alt in (".", "") else alt
        a2 = "0" if ref in (".", "") else ref
        lines.append(f"{chrom}\t{vid}\t{c:g}\t{int(pos)}\t{a1}\t{a2}\n")
    return lines


def _fam_lines(s: pd.DataFrame, fid_column: str | None, *, binary: bool | None = None) -> list[str]:
    iid = s["sample"].astype(str).to_numpy()
    fid = s["fid"].fillna("").astype(str).to_numpy()
    fid = np.where(fid == "", iid, fid)
    if fid_column:
        if fid_column not in s.columns:
            raise InputError(f"sample table has no column {fid_column!r} (has {list(s.columns)}); "
                             "give a --samples table with that column or choose another label column")
        labels = s[fid_column].fillna("").astype(str).to_numpy()
        fid = np.where(labels != "", labels, fid)
    check_tokens(iid, "sample id", fields=_FIELDS)
    check_tokens(fid, "family id (FID)", fields=_FIELDS)
    pat = s["pat"].astype(str).to_numpy() if "pat" in s.columns else np.full(len(s), "0")
    mat = s["mat"].astype(str).to_numpy() if "mat" in s.columns else np.full(len(s), "0")
    sex = s["sex"].to_numpy(dtype=np.int64)
    sex = np.where(np.isin(sex, [1, 2]), sex, 0)
    pheno = format_plink_phenotype(s["phenotype"].to_numpy(dtype=np.float64), binary=binary)
    return [f"{f}\t{i}\t{p}\t{m}\t{x}\t{y}\n" for f, i, p, m, x, y in zip(fid, iid, pat, mat, sex, pheno)]


def format_plink_phenotype(phenotype: np.ndarray, *, binary: bool | None = None) -> list[str]:
    """float64 phenotype, shape (n_samples,) -> PLINK tokens (binary as 1/2, missing -9).

    ``binary``: whether the whole table is binary (default: whether ``phenotype`` is), so that
    the batches of one table are formatted alike.
    """
    ok = np.isfinite(phenotype)
    if np.isin(phenotype[ok], [0.0, 1.0]).all() if binary is None else binary:
        return ["-9" if not k else ("2" if v == 1 else "1") for v, k in zip(phenotype, ok)]
    return ["-9" if not k else repr(float(v)) for v, k in zip(phenotype, ok)]


__all__ = ["read_bed", "read_bim", "read_fam", "write_bed", "write_bed_blocks", "parse_plink_phenotype", "format_plink_phenotype"]
