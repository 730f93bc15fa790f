"""Streaming a synthetic cohort to files with flat memory."""

from __future__ import annotations

import contextlib
import json
import os
import re

import pandas as pd

from genosynth.errors import InputError
from genosynth.io.atomic import atomic_outputs
from genosynth.io.samples import SampleSpool
from genosynth.io.staging import StagingMatrix, check_staging_space
from genosynth.runtime import progress_bar
from genosynth.sampling.counts import plan_counts
from genosynth.sampling.generator import Generator


def staging_path(prefix: str) -> str:
    """The staging file of a run writing ``prefix`` (removed when the run ends, however it ends
    short of SIGKILL; a stale one is replaced by the next run)."""
    return f"{prefix}.staging.tmp"


def sample_spool_path(prefix: str) -> str:
    """The file of a run's sample table until the outputs are written (removed as the staging file is)."""
    return f"{prefix}.samples.staging.tmp"


def default_id_prefix(prefix: str, seed: int) -> str:
    """Synthetic sample ids start with ``<output basename>_s<seed>_`` so that two runs never share ids.

    >>> default_id_prefix("runs/syn.v1", 7)
    'syn.v1_s7_'
    """
    base = re.sub(r"[^A-Za-z0-9_.-]", "_", os.path.basename(prefix)) or "syn"
    return f"{base}_s{seed}_"


def write_synthetic(model: Generator, prefix: str, fmt: str, *, n: int | None = None,
                    labels: str | dict | None = None, seed: int = 0, steps: int | None = None,
                    guidance: float | None = None, argmax: bool | None = None,
                    batch_size: int | None = None, progress: bool = False,
                    corr_guidance: str | None = None, cases: int | None = None,
                    controls: int | None = None, pheno_guidance: float | None = None,
                    id_prefix: str = "syn") -> list[str]:
    """Sample and write a synthetic cohort with flat memory; return the paths written.

    ``cases``/``controls`` (phenotype models): generate that many cases and controls; their
    phenotype goes to ``.fam`` column 6 (PLINK 2 case / 1 control) and the samples table.
    Sample ids are ``{id_prefix}{k:07d}``.

    Batches are drawn and written into an on-disk staging matrix (``PREFIX.staging.tmp``, see
    :class:`genosynth.io.staging.StagingMatrix`; removed afterwards), which the format writers
    then stream from a block of variants at a time; each batch's sample table is appended to
    ``PREFIX.samples.staging.tmp`` (:class:`genosynth.io.samples.SampleSpool`, removed
    afterwards), from which the per-person outputs (``.fam``, ``.psam``, VCF sample ids, ``.hapt``
    ids, ``PREFIX.samples.tsv``) are streamed, so memory does not grow with the number of people.
    Writes ``PREFIX`` in ``fmt`` (bed, vcf -> ``PREFIX.vcf.gz``,
    hapt, pgen; VCF and PGEN headers name the model's digest, the seed and the privacy status),
    ``PREFIX.samples.tsv`` with the labels, and ``PREFIX.privacy.json`` when the model carries a
    privacy guarantee.
    """
    from genosynth.io import FORMATS
    from genosynth.io.samples import write_sample_table

    if fmt not in FORMATS:
        raise InputError(f"unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "hapt" and not model.phased:
        raise InputError("this model generates genotypes (it was trained on unphased data); .hapt needs "
                         "haplotypes: choose --format bed, vcf or pgen")
    counts, per_case = plan_counts(labels, n=n, cases=cases, controls=controls, vocabulary=model.vocabulary,
                                   mix=model.label_mix, case_fraction=model.case_fraction)
    total = sum(counts.values())
    if total < 1:
        raise InputError("nothing to generate: all label counts are 0")
    phased_out = model.phased and fmt != "bed"  # .bed holds genotype counts only
    rows_per = 2 if phased_out else 1
    v = len(model.variants)
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    staging = staging_path(prefix)
    for stale in (staging, sample_spool_path(prefix)):
        with contextlib.suppress(FileNotFoundError):
            os.remove(stale)  # a stale file of a killed run
    check_staging_space(staging, total * rows_per * v, what=f"{total} people x {v} SNPs")
    bar = progress_bar(total, "sample", progress, unit="people")
    if bar is not None:  # the stage inside the current block (minutes of LD-factor setup at 10^4+ SNPs)
        model.report = lambda text: bar.set_postfix_str(text, refresh=True)
    try:
        with StagingMatrix(staging, n_rows=total * rows_per, n_cols=v) as mat, \
                SampleSpool(sample_spool_path(prefix)) as samples:
            batches = model.iter_batches(counts, seed=seed, steps=steps, guidance=guidance, argmax=argmax,
                                         batch_size=batch_size, corr_guidance=corr_guidance, cases=per_case,
                                         pheno_guidance=pheno_guidance, id_prefix=id_prefix)
            meta = _stage_batches(batches, mat, samples, phased=phased_out, bar=bar)
            if model.path:
                from genosynth.provenance import sha256_file

                meta.update(model=os.path.basename(model.path), model_sha256=sha256_file(model.path))
            written = _write_staged(mat, fmt, prefix, samples=samples, variants=model.variants, meta=meta,
                                    phased=phased_out, tag_column=model.config.label_column, progress=progress)
            written += write_sample_table(samples, f"{prefix}.samples.tsv")
        if model.privacy:
            written.append(_write_privacy(model.privacy, f"{prefix}.privacy.json"))
    finally:
        model.report = None
        if bar is not None:
            bar.close()
    return written


def _stage_batches(batches, mat: StagingMatrix, samples: SampleSpool, *, phased: bool, bar=None) -> dict:
    """Write each batch's rows into the staging matrix and its sample table into ``samples``, in
    order; return the last batch's meta.

    mat : int8, shape (n_rows, V) - haplotype rows when ``phased``, else genotype counts.
    """
    row = 0
    meta: dict = {}
    for part in batches:
        block = part.alleles if phased else part.genotypes()  # (b*rows_per, V)
        mat.write_rows(row, block)
        row += block.shape[0]
        samples.append(part.samples)
        meta = dict(part.meta)
        if bar is not None:
            bar.update(part.n_samples)
    return meta


def _write_staged(mat: StagingMatrix, fmt: str, prefix: str, *, samples: SampleSpool, variants: pd.DataFrame,
                  meta: dict, phased: bool, tag_column: str, progress: bool) -> list[str]:
    """Stream the staged matrix into ``fmt``: variant blocks in genomic order (bed, vcf, pgen) or
    blocks of people (hapt)."""
    from genosynth.io.order import genomic_order

    if fmt == "hapt":
        from genosynth.io.hapt import write_hapt_blocks

        return write_hapt_blocks(prefix, mat.row_blocks(multiple=2), samples=samples, variants=variants,
                                 tag_column=tag_column)
    order = genomic_order(variants)
    ordered = variants.iloc[order].reset_index(drop=True)
    bar = progress_bar(len(order), f"write {fmt}", progress, unit="SNPs")
    blocks = _counted(mat.column_blocks(order, block_bytes=(4 << 20) if fmt == "pgen" else (8 << 20)), bar)
    try:
        if fmt == "vcf":
            from genosynth.io.vcf import write_vcf_blocks

            return write_vcf_blocks(f"{prefix}.vcf.gz", blocks, variants=ordered, samples=samples, meta=meta,
                                    phased=phased, ploidy=2)
        if fmt == "pgen":
            from genosynth.io.pgen import write_pgen_blocks

            return write_pgen_blocks(prefix, blocks, variants=ordered, samples=samples, meta=meta, phased=phased,
                                     fid_column=tag_column)
        from genosynth.io.plink import write_bed_blocks

        return write_bed_blocks(prefix, blocks, variants=ordered, samples=samples, fid_column=tag_column)
    finally:
        if bar is not None:
            bar.close()


def _counted(blocks, bar):
    """``blocks`` unchanged, advancing ``bar`` by each block's variant count."""
    for block in blocks:
        yield block
        if bar is not None:
            bar.update(block.shape[0])


def _write_privacy(privacy: dict, path: str) -> str:
    """Write the model's privacy guarantee as ``PREFIX.privacy.json``; return the path."""
    with atomic_outputs([path]) as (tmp,):
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(privacy, fh, indent=2, default=str)
    return path
