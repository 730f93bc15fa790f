"""Peak memory of ``genosynth sample`` as the number of people grows (it should stay flat).

Trains a tiny generator on a simulated cohort (``--snps`` SNPs, seconds), then runs
``genosynth sample --n N`` for each ``--n`` in its own process and records that process's peak
resident set (``ru_maxrss`` of the child) and wall time. ``--baseline-src`` repeats the runs with
another source tree on ``PYTHONPATH`` (e.g. an export of the previous commit) for a before/after
comparison. Results go to ``--json``.

``--speed MODEL`` times instead ``--people`` people drawn from a trained model (default decoding)
at each of ``--batch-sizes``: ``--what cli`` runs ``genosynth sample --batch-size B`` (people per
written batch; the model draws in its own blocks of ``sampling.batch_size`` whatever B is, so the
output is the same), ``--what block`` sets the model's block size to B (what the draws cost; other
draws, so other output). People/s is from the time of generating and writing (``generate_s`` /
the child's own timer), not loading the model.

Usage::

    python benchmarks/bench_sample_memory.py --snps 1000 --n 2000 20000 100000 \
        --json benchmarks/results/sample_memory.json
    python benchmarks/bench_sample_memory.py --speed model.pt --people 4000 --batch-sizes 256 1024 2048 4096 \
        --what cli --json benchmarks/results/sample_batch_size.json
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


_BLOCK_CHILD = """
import json, resource, sys, time, torch
torch.set_num_threads(1)
from genosynth.sampling.generator import Generator
from genosynth.sampling.write import write_synthetic
model_path, out, n, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
model = Generator.load(model_path)
model.block_size = size
t0 = time.perf_counter()
write_synthetic(model, out, "bed", n=n, seed=1, batch_size=size)
print(json.dumps({"generate_s": time.perf_counter() - t0,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def speed(model: str, size: int, out: str, args) -> dict:
    """People/s and peak RSS of drawing ``args.people`` people at batch (``cli``) or block size ``size``."""
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    if args.what == "block":
        done = subprocess.run([sys.executable, "-c", _BLOCK_CHILD, model, out, str(args.people), str(size)],
                              env=env, check=True, capture_output=True, text=True)
        row = json.loads(done.stdout.strip().splitlines()[-1])
    else:
        cmd = [sys.executable, "-c", "import sys; from genosynth.cli import main; sys.exit(main())", "sample",
               "--model", model, "--n", str(args.people), "--format", args.format, "--out", out, "--seed", "1",
               "--batch-size", str(size), "--threads", str(args.threads), "--no-progress"]
        done = subprocess.run([sys.executable, "-c", _CHILD, *cmd], env=env, check=True, capture_output=True,
                              text=True)
        with open(f"{out}.sample.json", encoding="utf-8") as fh:
            generate_s = json.load(fh)["provenance"]["timings"]["generate_s"]
        row = {"generate_s": generate_s, "peak_rss_mb": int(done.stdout.strip().splitlines()[-1]) / 1024}
    return {"batch_size": size, "generate_s": round(row["generate_s"], 1),
            "people_per_s": round(args.people / row["generate_s"], 1), "peak_rss_mb": round(row["peak_rss_mb"], 1),
            "load_average": os.getloadavg()[0]}


def speed_table(args) -> dict:
    """``--speed``: each batch size in turn, ``--rounds`` times (alternating order against load drift)."""
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for r in range(args.rounds):
            for size in (args.batch_sizes if r % 2 == 0 else args.batch_sizes[::-1]):
                row = dict(speed(args.speed, size, os.path.join(folder, f"b{size}_{r}"), args), round=r)
                print(row, flush=True)
                rows.append(row)
    return {"model": args.speed, "people": args.people, "what": args.what, "rows": rows}


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
    parser.add_argument("--speed", default=None, metavar="MODEL", help="time people/s of this model instead")
    parser.add_argument("--people", type=int, default=4000, help="--speed: people per run")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 1024, 2048, 4096])
    parser.add_argument("--what", choices=("cli", "block"), default="cli",
                        help="--speed: vary genosynth sample --batch-size (cli) or the model's block size (block)")
    parser.add_argument("--rounds", type=int, default=2, help="--speed: runs per batch size")
    parser.add_argument("--json", default=os.path.join(os.path.dirname(__file__), "results", "sample_memory.json"))
    args = parser.parse_args(argv)

    from genosynth import __version__

    if args.speed:
        results = dict(speed_table(args), format=args.format, threads=args.threads, genosynth=__version__,
                       cpu_count=os.cpu_count(), load_average_at_end=os.getloadavg())
        return _save(results, args.json)
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
    return _save(results, args.json)


def _save(results: dict, path: str) -> int:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(results, fh, indent=2)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
