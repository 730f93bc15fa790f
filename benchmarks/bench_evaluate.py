#!/usr/bin/env python
"""Benchmarks of the evaluation suite; writes ``benchmarks/results/evaluate.json``.

Three parts (all by default, or pick with ``--parts``):

* ``calibration`` - 1000 Genomes 805 SNPs, 80/20 split stratified by super population (seed 1):
  the real holdout, a copy of real train and independent SNPs per population, all evaluated
  with the default configuration. Prints the markdown table of ``benchmarks/RESULTS.md``.
* ``speed805`` - 5,000 synthetic people x 805 SNPs (independent-SNP generator as a stand-in) against
  1,602 train / 400 holdout people: wall time of ``evaluate`` and of ``write_report``.
* ``cli805`` - the same through ``genosynth evaluate`` (.hapt train, .bed holdout, .vcf.gz synthetic).
* ``scale20k`` - msprime out-of-africa cohort, 20,000 SNPs on one 22 Mb chromosome, 2,400 train /
  600 holdout / 3,000 synthetic people: wall time, peak RSS of the process and the peak of
  numpy/Python allocations (tracemalloc) during ``evaluate``.

Usage: OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_evaluate.py [--parts calibration speed805 scale20k]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("GENOSYNTH_SHARED", REPO.parent / "shared")) / "data" / "1000g_805"
OUT = REPO / "benchmarks" / "results" / "evaluate.json"

KEYS = ("af_r", "ld_r_near", "ld_r_near_within", "energy_coefficient", "trtr_super_pop_lr", "tstr_super_pop_lr",
        "tstr_pop_lr", "gwas_overlap_top10", "gwas_rank_r", "identical_to_train", "dcr_closer_to_train", "mia_auc",
        "aats", "aats_holdout", "privacy_loss")


def load_805():
    from genosynth.evaluate import split_train_holdout
    from genosynth.io import read_cohort

    c = read_cohort(hapt=str(DATA / "haplotypes.hapt.gz"), legend=str(DATA / "snps.legend"),
                    samples=str(DATA / "panel.tsv"))
    return split_train_holdout(c, holdout_fraction=0.2, seed=1)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kB


def calibration() -> dict:
    from genosynth.evaluate import copy_generator, evaluate, independent_snps_generator

    train, holdout = load_805()
    sets = {"copy": copy_generator(train, seed=2), "indep": independent_snps_generator(train, seed=3)}
    t = time.perf_counter()
    res = evaluate(train, holdout, sets, seed=0)
    wall = time.perf_counter() - t
    rows = {name: {k: res["summary"][name].get(k) for k in KEYS} for name in ("holdout", "copy", "indep")}
    lights = {name: {r["key"]: r["light"] for r in res["lights"][name]} for name in sets}
    within = {name: {g: round(v["r"], 3) for g, v in res["fidelity"][name]["ld"]["near_within"]["per_group"].items()}
              for name in ("holdout", "copy", "indep")}
    return {"n_train": train.n_samples, "n_holdout": holdout.n_samples, "n_variants": train.n_variants,
            "seconds": round(wall, 1), "summary": rows, "lights": lights, "ld_near_within_per_group": within,
            "near_pairs": res["fidelity"]["holdout"]["ld"]["near"]["n_pairs"]}


def speed805() -> dict:
    from genosynth.evaluate import evaluate, independent_snps_generator, write_report

    train, holdout = load_805()
    syn = independent_snps_generator(train, n=5000, seed=4)
    t = time.perf_counter()
    res = evaluate(train, holdout, syn, seed=0)
    t_eval = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        write_report(res, os.path.join(d, "ev"))
        t_report = time.perf_counter() - t
    return {"n_train": train.n_samples, "n_holdout": holdout.n_samples, "n_synthetic": 5000,
            "n_variants": train.n_variants, "evaluate_seconds": round(t_eval, 1),
            "write_report_seconds": round(t_report, 1), "total_seconds": round(t_eval + t_report, 1),
            "sections_seconds": res["timings"]}


def cli805() -> dict:
    """``genosynth evaluate`` end to end (reading .hapt / .bed / .vcf.gz inputs) at 5,000 x 805."""
    from genosynth.cli import main as cli_main
    from genosynth.evaluate import independent_snps_generator
    from genosynth.io import write_cohort

    train, holdout = load_805()
    syn = independent_snps_generator(train, n=5000, seed=4)
    with tempfile.TemporaryDirectory() as d:
        write_cohort(train, f"{d}/train", "hapt")
        write_cohort(holdout, f"{d}/holdout", "bed")
        write_cohort(syn, f"{d}/syn", "vcf")
        argv = ["evaluate", "--real", f"{d}/train.hapt", "--holdout", f"{d}/holdout", "--synthetic",
                f"{d}/syn.vcf.gz", "--samples", str(DATA / "panel.tsv"), "--out", f"{d}/ev", "--seed", "0"]
        t = time.perf_counter()
        rc = cli_main(argv)
        wall = time.perf_counter() - t
    return {"command": "genosynth " + " ".join(a.replace(d, "TMP") for a in argv), "exit": rc,
            "wall_seconds": round(wall, 1), "n_synthetic": 5000, "n_variants": train.n_variants}


def scale20k() -> dict:
    from genosynth.evaluate import evaluate, independent_snps_generator, split_train_holdout, write_report
    from genosynth.simulation import simulate_cohort

    t = time.perf_counter()
    c = simulate_cohort(n_samples=3000, sequence_length=22_000_000, maf=0.05, max_snps=20_000, seed=5)
    t_sim = time.perf_counter() - t
    train, holdout = split_train_holdout(c, holdout_fraction=0.2, seed=1)
    syn = independent_snps_generator(train, n=3000, seed=2)
    rss_before = rss_mb()
    tracemalloc.start()
    t = time.perf_counter()
    res = evaluate(train, holdout, syn, seed=0)
    t_eval = time.perf_counter() - t
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        write_report(res, os.path.join(d, "ev"))
        t_report = time.perf_counter() - t
    s = res["summary"]
    return {"n_train": train.n_samples, "n_holdout": holdout.n_samples, "n_synthetic": syn.n_samples,
            "n_variants": train.n_variants, "simulate_seconds": round(t_sim, 1),
            "evaluate_seconds": round(t_eval, 1), "write_report_seconds": round(t_report, 1),
            "peak_rss_mb_before_evaluate": round(rss_before), "peak_rss_mb": round(rss_mb()),
            "tracemalloc_peak_mb_during_evaluate": round(peak / 2**20),
            "near_pairs_total": res["fidelity"]["holdout"]["ld"]["near"]["n_pairs_total"],
            "near_pairs_used": res["fidelity"]["holdout"]["ld"]["near"]["n_pairs"],
            "dense_pairs_would_be": train.n_variants * (train.n_variants - 1) // 2,
            "sections_seconds": res["timings"],
            "summary": {k: {kk: s[k].get(kk) for kk in KEYS} for k in ("holdout", "synthetic")}}


def markdown(cal: dict) -> str:
    cols = [("af_r", "AF r"), ("ld_r_near", "LD r <1 Mb pooled"), ("ld_r_near_within", "LD r <1 Mb within"),
            ("tstr_super_pop_lr", "super-pop acc. (LR)"), ("gwas_overlap_top10", "GWAS top-10 %"),
            ("identical_to_train", "identical"), ("dcr_closer_to_train", "closer to train"),
            ("mia_auc", "MIA AUC"), ("aats", "AATS"), ("privacy_loss", "privacy loss")]
    lines = ["| set | " + " | ".join(c[1] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    names = {"holdout": "real holdout (ceiling)", "copy": "copy of train", "indep": "independent SNPs per pop"}
    for key, label in names.items():
        row = cal["summary"][key]
        cells = []
        for k, _ in cols:
            v = row.get(k)
            if k == "tstr_super_pop_lr" and key == "holdout":
                v = row.get("trtr_super_pop_lr")
            light = cal["lights"].get(key, {}).get(k)
            mark = {"green": " 🟢", "amber": " 🟠", "red": " 🔴"}.get(light, "")
            cells.append((f"{v:.3f}" if isinstance(v, float) else str(v)) + mark)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parts = ["calibration", "speed805", "cli805", "scale20k"]
    parser.add_argument("--parts", nargs="+", default=parts, choices=parts)
    args = parser.parse_args(argv)
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    results["machine"] = {"platform": platform.platform(), "python": platform.python_version(),
                          "cpus": os.cpu_count()}
    for part in args.parts:
        t = time.perf_counter()
        results[part] = globals()[part]()
        results[part]["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        print(f"{part}: {time.perf_counter() - t:.1f} s", json.dumps(results[part], indent=1, default=str)[:3000])
        if part == "calibration":
            print(markdown(results[part]))
        OUT.parent.mkdir(parents=True, exist_ok=True)
        from genosynth.io.atomic import atomic_outputs

        with atomic_outputs([OUT]) as (tmp,):
            Path(tmp).write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
