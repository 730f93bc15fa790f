"""``genosynth evaluate``: compare synthetic cohort(s) with real train, the real holdout as ceiling.

Writes ``PREFIX.json`` (every figure), ``PREFIX.html`` (self-contained report) and ``PREFIX.log``.
Inputs may be PLINK prefixes (or ``.bed``), VCF/VCF.gz/BCF, or ``.hapt``/``.hapt.gz`` with a legend
(``PREFIX.legend`` beside the file, else ``--legend``).
"""

from __future__ import annotations

import json
import os
import time

from genosynth.cli.common import (HAPT_SUFFIXES, PLINK_SUFFIXES, VCF_SUFFIXES, cohort_files, positive_int, reading,
                                   resolve_seed, set_threads, strip_suffix)
from genosynth.errors import InputError
from genosynth.provenance import provenance, sha256_file

HELP = "evaluate synthetic cohort(s) against real train and a real holdout: fidelity, structure, GWAS, privacy"

def add_arguments(parser) -> None:
    g = parser.add_argument_group("inputs")
    g.add_argument("--real", metavar="PATH", required=True,
                   help="real training cohort (PLINK prefix or .bed, VCF/BCF, or .hapt[.gz])")
    g.add_argument("--holdout", metavar="PATH", required=True,
                   help="real holdout cohort the generator never saw (same variants)")
    g.add_argument("--synthetic", metavar="[NAME=]PATH", action="append", required=True,
                   help="synthetic cohort; repeat with NAME=PATH to compare several sets (e.g. vanilla=a.vcf.gz)")
    g.add_argument("--legend", metavar="FILE",
                   help="legend of .hapt inputs whose PREFIX.legend is not beside them")
    g.add_argument("--samples", metavar="TSV",
                   help="sample table of the real people (train and holdout): sample, pop, super_pop[, phenotype]")
    g.add_argument("--synthetic-samples", metavar="[NAME=]TSV", action="append", default=[],
                   help="sample table of synthetic people (else labels come from the file: genosynth's .hapt "
                        "column 1 or .fam FID, or are pseudo-labelled)")
    o = parser.add_argument_group("evaluation")
    o.add_argument("--label-column", default="super_pop",
                   help="population label column (default super_pop; pop is added when present)")
    o.add_argument("--gwas-groups", metavar="CASE,CONTROL",
                   help="two labels of --label-column used as cases and controls (default: the two largest)")
    o.add_argument("--gwas-phenotype", metavar="COLUMN",
                   help="use a 0/1 sample-table column (e.g. phenotype) as case/control instead of two groups")
    o.add_argument("--config", metavar="JSON", help="JSON file of EvalConfig fields (see docs/evaluate.md)")
    o.add_argument("--title", default=None, help="title of the HTML report")
    parser.add_argument("--out", metavar="PREFIX", required=True, help="output prefix: PREFIX.json, PREFIX.html")
    parser.add_argument("--seed", type=int, default=None,
                        help="random seed of subsamples and classifiers; drawn and recorded when omitted")
    parser.add_argument("--threads", type=positive_int, default=None, help="CPU threads (default: all cores)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def file_prefix(path: str) -> str:
    """``path`` without its genotype-format extension (the prefix a sidecar file shares)."""
    for group in (HAPT_SUFFIXES, VCF_SUFFIXES, PLINK_SUFFIXES):
        stem = strip_suffix(path, group)
        if stem is not None:
            return stem
    return path


def read_any(path: str, *, legend: str | None = None, samples: str | None = None, allow_unknown: bool = False):
    """Read a cohort from a path in any supported format; attach a sample table when given.

    An error names ``path`` (text that is not UTF-8 included).
    """
    with reading(path):
        return _read_any(path, legend=legend, samples=samples, allow_unknown=allow_unknown)


def _read_any(path: str, *, legend: str | None, samples: str | None, allow_unknown: bool):
    from genosynth.io import read_cohort

    kwargs = {"samples": samples, "allow_unknown_samples": allow_unknown}
    if strip_suffix(path, HAPT_SUFFIXES) is not None:
        sibling = strip_suffix(path, HAPT_SUFFIXES) + ".legend"
        leg = sibling if os.path.exists(sibling) else legend
        if not leg:
            raise InputError(f"{path}: a .hapt file needs its legend; put {sibling} beside it or give --legend FILE")
        return read_cohort(hapt=path, legend=leg, **kwargs)
    if strip_suffix(path, VCF_SUFFIXES) is not None:
        return read_cohort(vcf=path, **kwargs)
    stem = strip_suffix(path, PLINK_SUFFIXES)
    if stem is not None or os.path.exists(path + ".bed"):
        return read_cohort(bfile=stem if stem is not None else path, **kwargs)
    raise InputError(f"{path}: cannot tell the format; give a PLINK prefix (PREFIX.bed/.bim/.fam present), "
                     "a .bed, a .vcf/.vcf.gz/.bcf, or a .hapt/.hapt.gz file")


def attach_privacy_sidecar(cohort, path: str) -> str | None:
    """Put ``PREFIX.privacy.json`` (written by ``genosynth sample``) into ``cohort.meta["privacy"]``.

    A guarantee already in the file (VCF ``##genosynth_privacy``) is kept. Returns the sidecar path
    used, or None.
    """
    sidecar = file_prefix(path) + ".privacy.json"
    if not os.path.exists(sidecar) or cohort.meta.get("privacy"):
        return None
    try:
        with open(sidecar, encoding="utf-8") as fh:
            cohort.meta["privacy"] = json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{sidecar}: cannot read the privacy sidecar ({exc}); fix or remove it") from None
    return sidecar


def _named(values: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in enumerate(values):
        name, sep, path = v.partition("=")
        if not sep or os.path.exists(v):
            name, path = ("synthetic" if len(values) == 1 else f"synthetic{k + 1}"), v
        if not name or name == "holdout" or name in out:
            raise InputError(f"{what} {v!r}: names must be unique, non-empty and not 'holdout'; use NAME=PATH")
        out[name] = path
    return out


def build_config(args):
    from genosynth.evaluate import EvalConfig

    values = {}
    if args.config:
        if not os.path.exists(args.config):
            raise InputError(f"{args.config}: file not found; give a JSON file of evaluation options")
        try:
            with open(args.config, encoding="utf-8") as fh:
                values = json.load(fh)
        except json.JSONDecodeError as exc:
            raise InputError(f"{args.config}: not valid JSON ({exc}); fix the file") from None
        if not isinstance(values, dict):
            raise InputError(f"{args.config}: expected a JSON object of option: value")
    if args.gwas_groups:
        parts = [p.strip() for p in args.gwas_groups.split(",")]
        if len(parts) != 2 or not all(parts):
            raise InputError(f"--gwas-groups {args.gwas_groups!r}: give two labels, CASE,CONTROL (e.g. EUR,EAS)")
        values["gwas_groups"] = parts
    if args.gwas_phenotype:
        values["gwas_phenotype"] = args.gwas_phenotype
    if args.threads:
        values["threads"] = args.threads
    return EvalConfig.from_dict(values)


def run(args, log) -> int:
    from genosynth.evaluate import evaluate, summary, write_report

    seed = resolve_seed(args.seed, log)
    set_threads(args.threads, log)
    config = build_config(args)
    syn_paths = _named(args.synthetic, "--synthetic")
    syn_tables = _named(args.synthetic_samples, "--synthetic-samples") if args.synthetic_samples else {}
    if len(syn_tables) == 1 and "synthetic" in syn_tables and len(syn_paths) > 1:
        syn_tables = {name: syn_tables["synthetic"] for name in syn_paths}  # one table for every set
    unknown = sorted(set(syn_tables) - set(syn_paths))
    if unknown:
        raise InputError(f"--synthetic-samples names {unknown} match no --synthetic NAME ({sorted(syn_paths)})")

    t0 = time.perf_counter()
    real = read_any(args.real, legend=args.legend, samples=args.samples, allow_unknown=True)
    holdout = read_any(args.holdout, legend=args.legend, samples=args.samples, allow_unknown=True)
    synthetic = {}
    for name, path in syn_paths.items():
        synthetic[name] = read_any(path, legend=args.legend, samples=syn_tables.get(name),
                                   allow_unknown=bool(syn_tables.get(name)))
        sidecar = attach_privacy_sidecar(synthetic[name], path)
        if sidecar:
            log.info(f"{name}: privacy guarantee read from {sidecar}")
    log.info(f"Loaded real train {real.n_samples}, holdout {holdout.n_samples}, "
             + ", ".join(f"{k} {c.n_samples}" for k, c in synthetic.items())
             + f" people x {real.n_variants} variants in {time.perf_counter() - t0:.1f} s")
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=args.threads):  # BLAS threads; None keeps the library default
        results = evaluate(real, holdout, synthetic, label_column=args.label_column, config=config, seed=seed,
                           progress=not args.no_progress)
    paths_in = {"real": args.real, "holdout": args.holdout, **{f"synthetic:{k}": v for k, v in syn_paths.items()}}
    if args.samples:
        paths_in["samples"] = args.samples
    paths_in.update({f"synthetic-samples:{k}": v for k, v in syn_tables.items()})
    checksums = {key: {f: sha256_file(f) for f in cohort_files(p) if os.path.exists(f)} for key, p in paths_in.items()}
    results["provenance"] = provenance(command=log.argv, inputs=checksums)
    for note in results["notes"]:
        log.warn(note)
    paths = write_report(results, args.out, title=args.title)
    for name in synthetic:
        s = summary(results, name)
        log.info(f"{name}: " + ", ".join(f"{k}={_short(v)}" for k, v in s.items() if v is not None))
        reds = [r["key"] for r in results["lights"][name] if r["light"] == "red"]
        log.info(f"{name}: red lights: {', '.join(reds) if reds else 'none'}")
    log.record("timings", results["timings"])
    log.info("Wrote " + ", ".join(paths))
    return 0


def _short(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
