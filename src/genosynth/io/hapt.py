"""Yelmen ``.hapt`` haplotype files with a ``.legend`` variant table.

``.hapt``: one line per haplotype, space separated: a tag (``Real`` in the 1000 Genomes file,
a label or ``Syn`` in ours), the haplotype id (sample id + ``_A``/``_B``), then one 0/1 allele per
SNP. Consecutive ``_A``/``_B`` lines are one person. ``.legend``: header ``id position a0 a1``, then
one line per SNP in column order, ``id`` being ``CHROM:POS_REF_ALT``; ``a0`` is coded 0.

References
----------
Yelmen B. et al. (2021) Creating artificial human genomes using generative neural networks.
PLOS Genetics 17(2): e1009303.
"""

from __future__ import annotations

import gzip
import io
import os
import zlib

import numpy as np
import pandas as pd

from genosynth.cohort import Cohort, make_samples, make_variants
from genosynth.errors import InputError
from genosynth.io.atomic import atomic_outputs

HAPLOTYPE_SUFFIXES = ("_A", "_B")


def _open_text(path: str):
    if not os.path.exists(path):
        raise InputError(f"{path}: file not found; check the path")
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")


def read_legend(path: str) -> pd.DataFrame:
    """Read a ``.legend`` file (``id position a0 a1``) into a variant table."""
    with _open_text(path) as fh:
        header = fh.readline().split()
        if header[:4] != ["id", "position", "a0", "a1"]:
            raise InputError(
                f"{path}: legend header must start with 'id position a0 a1', found {' '.join(header[:4])!r}"
            )
        rows = [line.split() for line in fh if line.strip()]
    bad = [i + 2 for i, r in enumerate(rows) if len(r) < 4]
    if bad:
        raise InputError(f"{path}: line {bad[0]} has fewer than 4 fields (id position a0 a1)")
    if not rows:
        raise InputError(f"{path}: legend lists no variants")
    ids = [r[0] for r in rows]
    try:
        pos = [int(r[1]) for r in rows]
    except ValueError as exc:
        raise InputError(f"{path}: non-integer position ({exc}); fix the legend's position column") from None
    chrom = [i.split(":", 1)[0] if ":" in i else "0" for i in ids]
    return make_variants(chrom=chrom, pos=pos, ref=[r[2] for r in rows], alt=[r[3] for r in rows], id=ids)


def read_hapt(path: str, legend: str) -> Cohort:
    """Read a ``.hapt`` file and its legend into a phased diploid :class:`Cohort`.

    The tag column is kept as sample column ``tag`` (the label of a synthetic file written by
    genosynth, ``Real`` in the 1000 Genomes file).
    """
    variants = read_legend(legend)
    n_var = len(variants)
    tags: list[str] = []
    hap_ids: list[str] = []
    chunks: list[np.ndarray] = []
    for lineno, line in _numbered_lines(path):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != n_var + 2:
            raise InputError(
                f"{path}: line {lineno} has {len(parts) - 2} alleles but the legend lists {n_var} SNPs; "
                "give the legend that belongs to this file"
            )
        try:
            row = np.array(parts[2:], dtype=np.int8)
        except ValueError:
            bad = next(t for t in parts[2:] if not t.lstrip("-").isdigit())
            raise InputError(
                f"{path}: line {lineno} has a non-numeric allele {bad!r}; alleles must be 0 or 1"
            ) from None
        if row.min() < 0 or row.max() > 1:
            raise InputError(f"{path}: line {lineno} has alleles outside 0/1; .hapt holds haplotypes only: "
                             "give genotype counts as --vcf or --bfile instead")
        tags.append(parts[0])
        hap_ids.append(parts[1])
        chunks.append(row)
    if not chunks:
        raise InputError(f"{path}: no haplotypes found (empty file)")
    if len(chunks) % 2:
        raise InputError(f"{path}: odd number of haplotype lines ({len(chunks)}); each person needs _A and _B lines")
    sample_ids = []
    for k in range(0, len(hap_ids), 2):
        a, b = hap_ids[k], hap_ids[k + 1]
        base_a, base_b = _strip_suffix(a), _strip_suffix(b)
        if base_a != base_b:
            raise InputError(
                f"{path}: haplotype lines {k + 1} and {k + 2} ({a}, {b}) are not the two haplotypes of one person; "
                "sort the file so that ID_A is followed by ID_B"
            )
        sample_ids.append(base_a)
    samples = make_samples(sample_ids, tag=tags[::2])
    alleles = np.stack(chunks)  # (2N, V)
    return Cohort(alleles=alleles, variants=variants, samples=samples, phased=True, ploidy=2,
                  meta={"source": os.path.abspath(path), "format": "hapt"})


def _numbered_lines(path: str):
    """Yield ``(line number, line)``; a truncated or undecodable file is an InputError."""
    try:
        with _open_text(path) as fh:
            yield from enumerate(fh, start=1)
    except (EOFError, OSError, UnicodeDecodeError, zlib.error) as exc:
        raise InputError(f"{path}: cannot be read to the end ({exc}); the file is truncated or corrupt, re-create it") from None


def _strip_suffix(hap_id: str) -> str:
    for suf in HAPLOTYPE_SUFFIXES:
        if hap_id.endswith(suf):
            return hap_id[: -len(suf)]
    return hap_id


def write_legend(variants: pd.DataFrame, path: str) -> None:
    """Write ``variants`` as a ``.legend`` file (plain text)."""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("id position a0 a1\n")
        for vid, pos, ref, alt in zip(variants["id"], variants["pos"], variants["ref"], variants["alt"]):
            fh.write(f"{vid} {int(pos)} {ref} {alt}\n")


def write_hapt(cohort: Cohort, prefix: str, *, tag_column: str | None = None) -> list[str]:
    """Write ``PREFIX.hapt`` and ``PREFIX.legend``; return the paths written.

    The tag column holds ``tag_column``'s label (e.g. ``super_pop``) when given and non-empty,
    else the sample's ``tag`` if present, else ``Syn``. Requires a phased cohort without
    missing alleles (``.hapt`` cannot encode either).
    """
    if not cohort.phased or cohort.ploidy != 2:
        raise InputError(".hapt holds phased diploid haplotypes; this cohort is unphased. Choose --format bed or vcf")
    if (cohort.alleles < 0).any():
        raise InputError(".hapt cannot encode missing alleles; choose --format bed or vcf, or impute first")
    return write_hapt_blocks(prefix, [cohort.alleles], samples=cohort.samples, variants=cohort.variants,
                             tags=hapt_tags(cohort.samples, tag_column))


def hapt_tags(samples: pd.DataFrame, tag_column: str | None = None) -> np.ndarray:
    """The tag column of a ``.hapt``: ``tag_column``'s label, else ``tag``, else (and when empty) ``Syn``."""
    column = tag_column if tag_column and tag_column in samples.columns else "tag" if "tag" in samples.columns else None
    if column is None:
        return np.full(len(samples), "Syn", dtype=object)
    tags = samples[column].fillna("").astype(str).to_numpy()
    return np.where(tags == "", "Syn", tags)


def write_hapt_blocks(prefix: str, blocks, *, samples, variants: pd.DataFrame,
                      tags: np.ndarray | None = None, tag_column: str | None = None) -> list[str]:
    """:func:`write_hapt` from blocks of haplotype rows, so a cohort larger than memory can be written.

    blocks : iterable of int8 arrays, shape (2 b, n_variants): the haplotype rows of the next
        ``b`` people in order (0/1 only). tags : str, shape (n_samples,), or ``None`` for
        :func:`hapt_tags` of ``tag_column``. samples : the sample table, or a
        :class:`genosynth.io.samples.SampleSpool` read a batch at a time.
    """
    hapt_path, legend_path = f"{prefix}.hapt", f"{prefix}.legend"
    names = _tagged_ids(samples, tags, tag_column)
    with atomic_outputs([hapt_path, legend_path]) as (tmp_hapt, tmp_legend):
        with open(tmp_hapt, "w", encoding="utf-8") as fh:
            for block in blocks:
                h = block.reshape(-1, 2, block.shape[1])  # (b, 2, V)
                for person in h:
                    tag, pid = next(names)
                    for j, suf in enumerate(HAPLOTYPE_SUFFIXES):
                        fh.write(f"{tag} {pid}{suf} ")
                        fh.write(" ".join(map(str, person[j].tolist())))
                        fh.write("\n")
        write_legend(variants, tmp_legend)
    return [hapt_path, legend_path]


def _tagged_ids(samples, tags: np.ndarray | None, tag_column: str | None):
    """(tag, sample id) of each person in order, a batch of the sample table at a time."""
    from genosynth.io.samples import sample_batches

    start = 0
    for part in sample_batches(samples):
        ids = part["sample"].astype(str).to_numpy()
        part_tags = hapt_tags(part, tag_column) if tags is None else tags[start:start + len(ids)]
        start += len(ids)
        yield from zip(part_tags, ids)
