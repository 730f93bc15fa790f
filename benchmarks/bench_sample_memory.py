"""Peak memory of ``genosynth sample`` as the number of people grows (it should stay flat).

Trains a tiny generator on a simulated cohort (``--snps`` SNPs, seconds), then runs
``genosynth sample --n N`` for each ``--n`` in its own process and records that process's peak
resident set (``ru_maxrss`` of the child) and wall time. ``--baseline-src`` repeats the runs with
another source tree on ``PYTHONPATH`` (e.g. an export of the previous commit) for a before/after
comparison. Results go to ``--json``.

Usage::

    python benchmarks/bench_sample_memory.py --snps 1000 --n 2000 20000 100000 \
        --json benchmarks/results/sample_memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

_CHILD = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
          "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def train_model(path: str, snps: int, seed: int) -> None:
    from genosynth.models.config import tiny_config
    from genosynth.simulation import simulate_cohort
    from genosynth.training.plain import train_generator

    cohort = simulate_cohort(n_samples=300, sequence_length=snps * 2_500, maf=0.05, max_snps=snps, seed=seed)
    train_generator(cohort, config=tiny_config(), seed=seed, checkpoint=path)


def peak_rss(model: str, n: int, out: str, args, src: str | None) -> dict:
    """Run one ``genosynth sample`` in a child process; return its peak RSS (MB) and wall time."""
    cmd = [sys.executable, "-c", "import sys; from genosynth.cli import main; sys.exit(main())", "sample", "--model", model, "--n", str(n), "--format", args.format,
           "--out", out, "--seed", "1", "--batch-size", str(args.batch_size), "--threads", str(args.threads),
           "--corr-guidance", args.corr_guidance, "--no-progress"]
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    if src:
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _CHILD, *cmd], env=env, check=True, capture_output=True, text=True)
    return {"n": n, "peak_rss_mb": round(int(done.stdout.strip().splitlines()[-1]) / 1024, 1),
            "wall_s": round(time.perf_counter() - t0, 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--snps", type=int, default=1000)
    parser.add_argument("--n", type=int, nargs="+", default=[2_000, 20_000, 100_000])
    parser.add_argument("--format", default="vcf", choices=("vcf", "bed", "pgen", "hapt"))
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--corr-guidance", default="none",
                        help="decoding (default none: the fastest; the batch's own memory does not grow with --n)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--baseline-src", default=None, help="also run with this src folder first on PYTHONPATH")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--json", default=os.path.join(os.path.dirname(__file__), "results", "sample_memory.json"))
    args = parser.parse_args(argv)

    from genosynth import __version__

    with tempfile.TemporaryDirectory() as folder:
        model = os.path.join(folder, "model.pt")
        train_model(model, args.snps, args.seed)
        runs = {}
        for name, src in (("baseline", args.baseline_src), ("current", None)):
            if name == "baseline" and not src:
                continue
            runs[name] = []
            for n in args.n:
                row = peak_rss(model, n, os.path.join(folder, f"{name}_{n}"), args, src)
                print(name, row, flush=True)
                runs[name].append(row)
    results = {"snps": args.snps, "format": args.format, "batch_size": args.batch_size,
               "corr_guidance": args.corr_guidance, "threads": args.threads, "baseline_src": args.baseline_src,
               "genosynth": __version__, "python": platform.python_version(), "cpu_count": os.cpu_count(),
               "load_average_at_end": os.getloadavg(), "runs": runs}
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w", encoding="utf-8") as fh:
        json.dump(results, fh, indent=2)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
