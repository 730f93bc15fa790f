"""Streaming a synthetic cohort to files with flat memory."""

from __future__ import annotations

import contextlib
import json
import os
import numpy as np
import pandas as pd
from genosynth.cohort import Cohort
from genosynth.errors import InputError
from genosynth.io.atomic import atomic_outputs
from genosynth.sampling.generator import Generator
from genosynth.sampling.counts import plan_counts


def write_synthetic(model: Generator, prefix: str, fmt: str, *, n: int | None = None,
                    labels: str | dict | None = None, seed: int = 0, steps: int | None = None,
                    guidance: float | None = None, argmax: bool | None = None,
                    batch_size: int | None = None, progress: bool = False,
                    corr_guidance: str | None = None, cases: int | None = None,
                    controls: int | None = None, pheno_guidance: float | None = None) -> list[str]:
    """Sample and write a synthetic cohort with flat memory; return the paths written.

    ``cases``/``controls`` (phenotype models): generate that many cases and controls; their
    phenotype goes to ``.fam`` column 6 (PLINK 2 case / 1 control) and the samples table.

    Batches are drawn and written into an on-disk staging matrix (``PREFIX.staging.tmp``,
    removed afterwards), which the format writers then stream from. Writes ``PREFIX`` in
    ``fmt`` (bed, vcf -> ``PREFIX.vcf.gz``, hapt), ``PREFIX.samples.tsv`` with the labels, and
    ``PREFIX.privacy.json`` when the model carries a privacy guarantee.
    """
    from genosynth.io import FORMATS, write_cohort
    from genosynth.io.samples import write_sample_table

    if fmt not in FORMATS:
        raise InputError(f"unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "hapt" and not model.phased:
        raise InputError("this model generates genotypes (it was trained on unphased data); .hapt needs "
                         "haplotypes: choose --format bed or vcf")
    counts, per_case = plan_counts(labels, n=n, cases=cases, controls=controls, vocabulary=model.vocabulary,
                                   mix=model.label_mix, case_fraction=model.case_fraction)
    total = sum(counts.values())
    if total < 1:
        raise InputError("nothing to generate: all label counts are 0")
    phased_out = model.phased and fmt != "bed"  # .bed holds genotype counts only
    rows_per = 2 if phased_out else 1
    v = len(model.variants)
    folder = os.path.dirname(os.path.abspath(prefix))
    os.makedirs(folder, exist_ok=True)
    staging = f"{prefix}.staging.tmp"
    written: list[str] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="sample", unit="people", dynamic_ncols=True)
    try:
        mat = np.lib.format.open_memmap(staging, mode="w+", dtype=np.int8, shape=(total * rows_per, v))
        batches = model.iter_batches(counts, seed=seed, steps=steps, guidance=guidance, argmax=argmax,
                                     batch_size=batch_size, corr_guidance=corr_guidance, cases=per_case,
                                     pheno_guidance=pheno_guidance)
        samples, meta = _stage_batches(batches, mat, phased=phased_out, bar=bar)
        cohort = Cohort(alleles=mat, variants=model.variants, samples=samples, phased=phased_out,
                        ploidy=2, meta=meta)
        written += write_cohort(cohort, prefix, fmt, tag_column=model.config.label_column)
        written += write_sample_table(cohort, f"{prefix}.samples.tsv")
        if model.privacy:
            written.append(_write_privacy(model.privacy, f"{prefix}.privacy.json"))
        del cohort, mat
    finally:
        if bar is not None:
            bar.close()
        with contextlib.suppress(FileNotFoundError):
            os.remove(staging)
    return written


def _stage_batches(batches, mat: np.ndarray, *, phased: bool, bar=None) -> tuple[pd.DataFrame, dict]:
    """Copy each batch's rows into the staging matrix in order; return (samples, last batch's meta).

    mat : int8, shape (n_rows, V) - haplotype rows when ``phased``, else genotype counts.
    """
    samples_parts = []
    row = 0
    for part in batches:
        block = part.alleles if phased else part.genotypes()  # (b*rows_per, V)
        mat[row:row + block.shape[0]] = block
        row += block.shape[0]
        samples_parts.append(part.samples)
        meta = part.meta
        if bar is not None:
            bar.update(part.n_samples)
    mat.flush()
    return pd.concat(samples_parts, ignore_index=True), meta


def _write_privacy(privacy: dict, path: str) -> str:
    """Write the model's privacy guarantee as ``PREFIX.privacy.json``; return the path."""
    with atomic_outputs([path]) as (tmp,):
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(privacy, fh, indent=2, default=str)
    return path
