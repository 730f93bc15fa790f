"""``genosynth info``: counts, phasing, missingness, populations.

Without ``--samples``, a sample table written beside the input (``PREFIX.samples.tsv`` next to
``PREFIX.vcf.gz``, ``PREFIX.bed`` or ``PREFIX.hapt``, as ``genosynth sample`` and ``convert`` write
it) is joined, and the output says so.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np

from genosynth.cli.common import add_input_arguments, load_input
from genosynth.io.atomic import atomic_outputs

HELP = "summarise a cohort: counts, phasing, missingness, allele frequencies, populations"


def add_arguments(parser) -> None:
    add_input_arguments(parser)
    parser.add_argument("--out", metavar="PREFIX", default=None,
                        help="also write PREFIX.info.json and PREFIX.log")


def summarise(cohort) -> dict:
    """Summary figures of a cohort (no per-person values)."""
    af = cohort.allele_frequencies()
    maf = np.minimum(af, 1 - af)
    out = {
        "samples": cohort.n_samples,
        "variants": cohort.n_variants,
        "phased": cohort.phased,
        "ploidy": cohort.ploidy,
        "chromosomes": sorted(map(str, cohort.variants["chrom"].unique())),
        "missing_rate": cohort.missing_rate(),
        "variants_with_missing": int((cohort.alleles < 0).any(axis=0).sum()),
        "maf_mean": float(np.nanmean(maf)) if len(maf) else float("nan"),
        "monomorphic": int(np.sum(maf == 0)),
    }
    for column in ("super_pop", "pop"):
        labels = cohort.labels(column)
        if (labels != "").any():
            values, counts = np.unique(labels, return_counts=True)
            out[column] = {str(v) if v else "(none)": int(c) for v, c in zip(values, counts)}
    pheno = cohort.samples["phenotype"].to_numpy(dtype=float)
    if np.isfinite(pheno).any():
        ok = pheno[np.isfinite(pheno)]
        if set(np.unique(ok)) <= {0.0, 1.0}:
            out["phenotype"] = {"cases": int((ok == 1).sum()), "controls": int((ok == 0).sum()),
                                "missing": int((~np.isfinite(pheno)).sum())}
        else:
            out["phenotype"] = {"quantitative": True, "mean": float(ok.mean()),
                                "missing": int((~np.isfinite(pheno)).sum())}
    for key, count in cohort.meta.get("skipped", {}).items():
        out.setdefault("skipped", {})[key] = int(count)
    return out


def adjacent_samples(args) -> str | None:
    """``PREFIX.samples.tsv`` beside the ``--vcf``/``--bfile``/``--hapt`` input, if that file exists.

    >>> import argparse
    >>> adjacent_samples(argparse.Namespace(vcf="/no/such/syn.vcf.gz", bfile=None, hapt=None)) is None
    True
    """
    if args.vcf:
        prefix = re.sub(r"\.(vcf\.gz|vcf\.bgz|vcf|bcf)$", "", args.vcf)
    elif args.bfile:
        prefix = args.bfile[:-4] if args.bfile.endswith(".bed") else args.bfile
    elif args.hapt:
        prefix = re.sub(r"\.hapt(\.gz)?$", "", args.hapt)
    else:
        return None
    path = f"{prefix}.samples.tsv"
    return path if os.path.isfile(path) else None


def run(args, log) -> int:
    if not args.samples:
        found = adjacent_samples(args)
        if found:
            log.info(f"Sample table: {found} (found beside the input; give --samples to use another)")
            args.samples, args.allow_unknown_samples = found, True
    cohort = load_input(args, log)
    summary = summarise(cohort)
    for key, value in summary.items():
        log.info(f"{key}: {value if not isinstance(value, float) else round(value, 6)}")
    if args.out:
        path = f"{args.out}.info.json"
        with atomic_outputs([path]) as (tmp,):
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(summary, fh, indent=2)
        log.info(f"Wrote {path}")
    return 0
