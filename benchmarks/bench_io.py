"""I/O speed: read/write a PLINK bed and a VCF.gz of random genotypes.

Generates a random ``--samples x --variants`` genotype matrix (1% missing), writes it as a
PLINK 1 fileset with bed-reader's ``to_bed`` (an independent writer) into a temporary folder, then
times genosynth's ``read_bed``, ``write_bed``, ``write_vcf`` and ``read_vcf`` on it and checks
that every read returns the generated matrix. Results go to ``--json``.

Usage::

    python benchmarks/bench_io.py --samples 2000 --variants 50000 --json benchmarks/results/io.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np


def _timed(fn, repeats: int):
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return result, times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--variants", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the bed read/write timings")
    parser.add_argument("--threads", type=int, default=2, help="bed-reader and htslib threads")
    parser.add_argument("--skip-vcf", action="store_true", help="time the bed reader and writer only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=os.path.join(os.path.dirname(__file__), "results", "io.json"))
    args = parser.parse_args(argv)

    from bed_reader import to_bed

    from genosynth import __version__
    from genosynth.io.atomic import atomic_outputs
    from genosynth.io.plink import read_bed, write_bed
    from genosynth.io.vcf import read_vcf, write_vcf

    n, v = args.samples, args.variants
    rng = np.random.default_rng(args.seed)
    g = rng.integers(0, 3, size=(n, v), dtype=np.int8)  # (N, V) ALT counts
    g[rng.random((n, v), dtype=np.float32) < 0.01] = -1
    results: dict = {
        "samples": n, "variants": v, "missing_fraction": float((g < 0).mean()), "threads": args.threads,
        "repeats": args.repeats, "genosynth": __version__, "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "seconds": {},
    }
    sec = results["seconds"]
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "src")
        t0 = time.perf_counter()
        to_bed(f"{src}.bed", np.where(g < 0, -127, g).astype(np.int8), count_A1=True, properties={
            "chromosome": np.repeat("1", v), "bp_position": np.arange(1, v + 1) * 100,
            "allele_1": np.repeat("G", v), "allele_2": np.repeat("A", v)})
        sec["generate_bed_with_bed_reader_to_bed"] = time.perf_counter() - t0
        results["bed_bytes"] = os.path.getsize(f"{src}.bed")

        cohort, times = _timed(lambda: read_bed(src, threads=args.threads), args.repeats)
        assert np.array_equal(cohort.alleles, g), "read_bed did not return the generated matrix"
        sec["read_bed"] = {"min": min(times), "median": statistics.median(times)}

        out = os.path.join(d, "out")
        _, times = _timed(lambda: write_bed(cohort, out), args.repeats)
        sec["write_bed"] = {"min": min(times), "median": statistics.median(times)}
        assert open(f"{out}.bed", "rb").read() == open(f"{src}.bed", "rb").read(), "write_bed differs from to_bed"

        if not args.skip_vcf:
            _, times = _timed(lambda: write_vcf(cohort, f"{out}.vcf.gz"), 1)
            sec["write_vcf_gz"] = times[0]
            results["vcf_gz_bytes"] = os.path.getsize(f"{out}.vcf.gz")
            back, times = _timed(lambda: read_vcf(f"{out}.vcf.gz", threads=args.threads), 1)
            sec["read_vcf_gz"] = times[0]
            assert np.array_equal(back.alleles, g), "read_vcf did not return the generated matrix"

    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with atomic_outputs([args.json]) as (tmp,):
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2)
    json.dump(results, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
