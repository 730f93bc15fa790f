"""Sampling throughput: people/s and genotypes/s end to end into .bed and VCF.gz, per stage, with
FLOPs per person and the machine's measured matmul rate for the same shapes (issue 18).

Trains (or loads, ``--checkpoint``; written there when missing) a generator configured as
``genosynth train --size auto`` would (``--size``) on the 805-SNP 1000 Genomes data (80/20 split
stratified by super population, the split of ``bench_generator.py quality``; the default
configuration) or on a simulated 5,000-SNP cohort (``--data sim5k``: 1,500 people, 8 Mb; a dense
region: the dense configuration); ``--vae-epochs``/``--dit-epochs`` shorten training. Then

1. samples ``--n`` people with :func:`genosynth.sampling.write.write_synthetic` into ``.bed`` and
   into ``.vcf.gz`` and times each run end to end (people/s, genotypes/s = people x SNPs / s) and
   per stage: DiT DDIM steps, haplotype pairing, latent guidance (its decoder forward and backward
   passes included), the final decode, the copula, the other allele draws, and writing (staging and
   the format writer); peak RSS of the process (``resource.getrusage``) is recorded after each run;
2. counts the FLOPs of one batch (``torch.utils.flop_counter.FlopCounterMode``, split by stage) and
   records the shapes of every matrix product in it; each distinct shape is then timed as a plain
   ``torch.matmul`` on this machine, which gives the time the batch's matrix products would take at
   the machine's own rate for those shapes (the matmul limit) and the fraction of it reached.

Usage (2 threads)::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_throughput.py --data 805 --checkpoint /tmp/m805.pt \
        --n 4000 --tag _before
    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_throughput.py --data sim5k --checkpoint /tmp/m5k.pt \
        --vae-epochs 2 --dit-epochs 2 --n 1000

Options ``--steps``, ``--sampler``, ``--corr-guidance``, ``--latent-steps`` and ``--batch-size`` change the
decoding being timed. ``--quality`` also evaluates a sample of the training size against the held-out
20 % (805 only; :func:`genosynth.evaluate.evaluate`), ``--quality-seeds K`` K draws of it and their
means (``--skip-runs``: quality alone). Results: ``benchmarks/results/throughput_<data><tag>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_generator import KEYS, load  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ model
def get_model(args):
    """``(generator, train, holdout)``: load ``--checkpoint`` or train a default-config generator."""
    from genosynth.evaluate import split_train_holdout
    from genosynth.models.config import config_for_variants
    from genosynth.sampling.generator import Generator
    from genosynth.training.plain import train_generator

    cohort = load(args.data, args.seed)
    train, holdout = split_train_holdout(cohort, holdout_fraction=0.2, stratify="super_pop", seed=args.seed)
    if args.checkpoint and os.path.exists(args.checkpoint):
        return Generator.load(args.checkpoint), train, holdout
    cfg = config_for_variants(args.size, train.variants)  # what `genosynth train` picks (805: default; sim5k: dense)
    short = {k: v for k, v in (("vae_epochs", args.vae_epochs), ("dit_epochs", args.dit_epochs)) if v}
    if short:
        cfg = cfg.replace(training=short)
    if args.config:  # e.g. '{"sampling": {"sampler": "ddim", "steps": 20}}'
        cfg = cfg.replace(**json.loads(args.config))
    model = train_generator(train, config=cfg, seed=args.seed, checkpoint=args.checkpoint)
    return model, train, holdout


# ------------------------------------------------------------------ stage timers
class StageTimer:
    """Exclusive wall time per stage: a stage nested in another is subtracted from the outer one;
    calls inside an ``absorbing`` stage (the decoder inside latent guidance) count for that stage."""

    def __init__(self, absorbing=("latent_guidance",)):
        self.seconds: dict[str, float] = defaultdict(float)
        self.flops: dict[str, int] = defaultdict(int)
        self.stack: list[list] = []
        self.absorbing = set(absorbing)
        self.counter = None  # a FlopCounterMode while counting

    def _flops_now(self) -> int:
        return 0 if self.counter is None else int(self.counter.get_total_flops())

    @contextlib.contextmanager
    def stage(self, name: str):
        if any(frame[0] in self.absorbing for frame in self.stack):
            yield
            return
        frame = [name, time.perf_counter(), 0.0, self._flops_now(), 0]  # name, start, nested s, flops0, nested flops
        self.stack.append(frame)
        try:
            yield
        finally:
            self.stack.pop()
            total = time.perf_counter() - frame[1]
            flops = self._flops_now() - frame[3]
            self.seconds[name] += total - frame[2]
            self.flops[name] += flops - frame[4]
            if self.stack:
                self.stack[-1][2] += total
                self.stack[-1][4] += flops

    def wrap(self, owner, attr: str, name: str):
        original = getattr(owner, attr)

        def wrapped(*a, **kw):
            with self.stage(name):
                return original(*a, **kw)

        setattr(owner, attr, wrapped)
        return owner, attr, original


@contextlib.contextmanager
def instrumented(model, timer: StageTimer):
    """Patch the sampling path's stage functions with timers (restored on exit)."""
    import genosynth.io.plink as plink
    import genosynth.io.staging as staging
    import genosynth.io.vcf as vcf
    import genosynth.sampling.generator as gen
    import genosynth.sampling.ld_guidance as ldg

    dit = (gen, "sample_latents") if hasattr(gen, "sample_latents") else (model.diffusion, "ddim_sample")
    patches = [timer.wrap(*dit, "dit_ddim"), timer.wrap(gen, "pair_order", "pairing"),
               timer.wrap(ldg, "latent_guidance", "latent_guidance"), timer.wrap(model.vae, "decode", "decode"),
               timer.wrap(ldg, "copula_sample", "copula"), timer.wrap(gen, "sample_alleles", "allele_draws"),
               timer.wrap(staging.StagingMatrix, "write_rows", "write_staging"),
               timer.wrap(plink, "write_bed_blocks", "write_format"), timer.wrap(vcf, "write_vcf_blocks", "write_format")]
    for name in ("copula_factor", "markov_draw", "threshold"):  # sub-stages of the copula, when present
        for fn in {"copula_factor": ("solve_residual_band", "banded_factor"),
                   "markov_draw": ("sample_markov_gaussian",), "threshold": ("threshold_alleles",)}[name]:
            if hasattr(ldg, fn):
                patches.append(timer.wrap(ldg, fn, name))
    try:
        yield timer
    finally:
        for owner, attr, original in reversed(patches):
            setattr(owner, attr, original)


# ------------------------------------------------------------------ end-to-end runs
def run_write(model, fmt: str, n: int, folder: str, args) -> dict:
    """Sample ``n`` people into ``fmt``; wall time, rates, stage split and peak RSS."""
    from genosynth.sampling.write import write_synthetic

    timer = StageTimer()
    prefix = os.path.join(folder, f"syn_{fmt}")
    t0 = time.perf_counter()
    with instrumented(model, timer):
        with timer.stage("other"):
            paths = write_synthetic(model, prefix, fmt, n=n, seed=args.seed + 1, steps=args.steps,
                                    batch_size=args.batch_size, corr_guidance=args.corr_guidance)
    wall = time.perf_counter() - t0
    v = len(model.variants)
    size = sum(os.path.getsize(p) for p in paths if os.path.exists(p))
    return {"format": fmt, "people": n, "snps": v, "wall_s": round(wall, 3), "people_per_s": round(n / wall, 1),
            "genotypes_per_s": round(n * v / wall), "output_mb": round(size / 2 ** 20, 2),
            "stage_s": {k: round(s, 3) for k, s in sorted(timer.seconds.items(), key=lambda kv: -kv[1])},
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


# ------------------------------------------------------------------ FLOPs and the matmul limit
class MatmulShapes(torch.utils._python_dispatch.TorchDispatchMode):
    """Records ``(batch, M, K, N)`` of every mm / addmm / bmm / baddbmm run under it."""

    def __init__(self):
        super().__init__()
        self.shapes: dict[tuple, int] = defaultdict(int)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        aten = torch.ops.aten
        packet = getattr(func, "overloadpacket", None)
        if packet in (aten.mm, aten.addmm):
            a, b = (args[0], args[1]) if packet is aten.mm else (args[1], args[2])
            self.shapes[(1, a.shape[0], a.shape[1], b.shape[1])] += 1
        elif packet in (aten.bmm, aten.baddbmm):
            a, b = (args[0], args[1]) if packet is aten.bmm else (args[1], args[2])
            self.shapes[(a.shape[0], a.shape[1], a.shape[2], b.shape[2])] += 1
        return func(*args, **(kwargs or {}))


def matmul_rate(shape: tuple, *, min_s: float = 0.05) -> float:
    """Measured float32 FLOP/s of ``torch.matmul`` for one ``(batch, M, K, N)`` shape on this machine."""
    bt, m, k, n = shape
    a = torch.randn(bt, m, k) if bt > 1 else torch.randn(m, k)
    b = torch.randn(bt, k, n) if bt > 1 else torch.randn(k, n)
    torch.matmul(a, b)
    reps, t = 1, 0.0
    while True:
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.matmul(a, b)
        t = time.perf_counter() - t0
        if t >= min_s:
            break
        reps *= 4
    return 2.0 * bt * m * k * n * reps / t


def flops_and_limit(model, people: int, args) -> dict:
    """FLOPs per person by stage (FlopCounterMode over one batch of ``people``) and the matmul limit."""
    from torch.utils.flop_counter import FlopCounterMode

    from genosynth.sampling.counts import plan_counts

    counts, _ = plan_counts(None, n=people, cases=None, controls=None, vocabulary=model.vocabulary,
                            mix=model.label_mix, case_fraction=None)
    timer = StageTimer()
    shapes = MatmulShapes()
    counter = FlopCounterMode(display=False)
    with instrumented(model, timer), counter, shapes:
        timer.counter = counter
        with timer.stage("other"):
            for _ in model.iter_batches(counts, seed=args.seed, steps=args.steps, batch_size=people,
                                        corr_guidance=args.corr_guidance):
                pass
    total = int(counter.get_total_flops())
    mm_flops, limit_s, rates = 0, 0.0, []
    for shape, calls in sorted(shapes.shapes.items(), key=lambda kv: -np.prod(kv[0]) * kv[1]):
        f = 2 * int(np.prod(shape)) * calls
        rate = matmul_rate(shape)
        mm_flops += f
        limit_s += f / rate
        rates.append({"batch_m_k_n": list(shape), "calls": calls, "gflop": round(f / 1e9, 3),
                      "gflop_per_s": round(rate / 1e9, 2)})
    return {"people": people, "flops_per_person": round(total / people), "matmul_flops_per_person": round(mm_flops / people),
            "flops_per_person_by_stage": {k: round(v / people) for k, v in timer.flops.items() if v},
            "matmul_limit_s_per_person": limit_s / people,
            "matmul_limit_people_per_s": round(people / limit_s, 1) if limit_s else None,
            "mean_matmul_gflop_per_s": round(mm_flops / limit_s / 1e9, 2) if limit_s else None,
            "top_shapes": rates[:12]}


# ------------------------------------------------------------------ quality
def quality(model, train, holdout, args, *, draw: int = 1) -> dict:
    """:func:`genosynth.evaluate.evaluate` of a sample of the training size (seed ``args.seed + draw``)
    against the holdout, plus the within-super-population LD decay of the whole synthetic sample
    (``ld_decay_within_full``: the evaluation matches a synthetic set to the holdout's size first,
    whose r^2 per bin then moves by about 0.01 from draw to draw)."""
    from genosynth.evaluate import evaluate, summary

    syn = model.sample(train.n_samples, seed=args.seed + draw, steps=args.steps, batch_size=args.batch_size,
                       corr_guidance=args.corr_guidance)
    res = evaluate(train, holdout, {"genosynth": syn}, label_column="super_pop", seed=args.seed)
    s = summary(res, "genosynth")
    out = {k: (round(s[k], 4) if isinstance(s.get(k), float) else s.get(k)) for k in KEYS + ("ld_strength_ratio",)}
    ld = res["fidelity"]["genosynth"]["ld"]
    out["ld_decay_within"] = [None if d is None else round(float(d), 4) for d in ld["decay_within"]]
    out["ld_decay_within_full"] = full_decay_within(syn, train, args.seed)
    out["seed"] = args.seed + draw
    return out


def full_decay_within(syn, train, seed: int) -> list[float]:
    """Mean r^2 per LD-decay bin (< 1 Mb) within each super population of the whole synthetic set,
    weighted by the training people per group, on the evaluation's own decay pairs."""
    from genosynth.evaluate.core import _ld_pairs, _rng
    from genosynth.evaluate.settings import EvalConfig
    from genosynth.stats.ld import pair_correlations

    cfg = EvalConfig()
    pairs = _ld_pairs(train.variants, cfg, _rng(seed, "pairs"))
    (i, j), dist = pairs["decay"], pairs["decay_dist"]
    edges = cfg.ld_decay_edges_bp[:5]
    g, lab, lab_train = syn.genotypes(), syn.labels("super_pop"), train.labels("super_pop")
    total, weight = np.zeros(len(edges) - 1), 0
    for group in np.unique(lab):
        w = int((lab_train == group).sum())
        r2 = pair_correlations(g[lab == group], i, j, fill=np.zeros(g.shape[1])) ** 2
        total += w * np.array([np.nanmean(r2[(dist >= lo) & (dist < hi)]) for lo, hi in zip(edges[:-1], edges[1:])])
        weight += w
    return [round(float(x), 4) for x in total / max(weight, 1)]


def quality_over_draws(model, train, holdout, args) -> dict:
    """:func:`quality` for draws 1..``args.quality_seeds``: each draw and the mean of every figure."""
    runs = [quality(model, train, holdout, args, draw=k) for k in range(1, args.quality_seeds + 1)]
    if len(runs) == 1:
        return runs[0]
    mean = {}
    for key, value in runs[0].items():
        if isinstance(value, (int, float)) and key != "seed":
            mean[key] = round(float(np.mean([r[key] for r in runs])), 4)
        elif isinstance(value, list):
            mean[key] = [None if any(r[key][b] is None for r in runs) else round(float(np.mean([r[key][b] for r in runs])), 4)
                         for b in range(len(value))]
    return {"mean": mean, "draws": runs}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="805", choices=("805", "sim5k"))
    p.add_argument("--checkpoint", default=None, help="load this model (trained and written here when missing)")
    p.add_argument("--vae-epochs", type=int, default=None, help="shorten training (default: the config's)")
    p.add_argument("--dit-epochs", type=int, default=None)
    p.add_argument("--size", default="auto", choices=("auto", "default", "dense"),
                   help="training configuration, as `genosynth train --size` (default auto)")
    p.add_argument("--config", default=None, help="training: JSON of config sections to change, "
                   "e.g. '{\"sampling\": {\"sampler\": \"ddim\"}}'")
    p.add_argument("--n", type=int, default=2000, help="people per end-to-end run")
    p.add_argument("--formats", nargs="+", default=["bed", "vcf"])
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--steps", type=int, default=None, help="sampler steps (default: the model's)")
    p.add_argument("--sampler", default=None, choices=("ddim", "dpm++2m"), help="latent sampler (default: the model's)")
    p.add_argument("--corr-guidance", default=None, choices=("none", "auto", "copula", "latent", "latent+copula"))
    p.add_argument("--latent-steps", type=int, default=None, help="latent guidance steps (default: the prior's)")
    p.add_argument("--latent-lr", type=float, default=None, help="latent guidance Adam rate (default: 0.05)")
    p.add_argument("--reach", default=None, choices=("never", "copula", "always"),
                   help="copula marginal mixing (CorrGuideConfig.reach; default: the prior's, copula)")
    p.add_argument("--flop-people", type=int, default=256, help="people in the FLOP-counted batch")
    p.add_argument("--quality", action="store_true", help="also evaluate against the holdout (805)")
    p.add_argument("--quality-seeds", type=int, default=1, help="--quality: evaluate this many draws (seeds seed+1..)")
    p.add_argument("--skip-runs", action="store_true", help="no end-to-end runs nor FLOP count (--quality only)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tag", default="")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.threads > 1 and os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE":
        print("warning: OMP_WAIT_POLICY is not PASSIVE; on a loaded machine OpenMP's spinning threads slow "
              "2-thread sampling ~8x (RESULTS.md, session 10)", file=sys.stderr)
    t0 = time.perf_counter()
    model, train, holdout = get_model(args)
    train_s = time.perf_counter() - t0
    if args.sampler is not None:
        model.config.sampling.sampler = args.sampler
    for key in ("latent_steps", "latent_lr", "reach"):  # CorrGuideConfig overrides (Generator.corr_options)
        if getattr(args, key) is not None and hasattr(model, "corr_options"):
            model.corr_options[key] = getattr(args, key)
    model.sample(8, seed=0, steps=args.steps, corr_guidance=args.corr_guidance)  # warm-up
    out = {"data": args.data, "snps": len(model.variants), "threads": torch.get_num_threads(),
           "decoding": args.corr_guidance or model.config.sampling.corr_guidance,
           "decoding_resolved": model.decoding(args.corr_guidance) if hasattr(model, "decoding") else None,
           "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
           "steps": args.steps or model.config.sampling.steps,
           "sampler": getattr(model.config.sampling, "sampler", "ddim"),
           "batch_size": args.batch_size or model.config.sampling.batch_size,
           "corr_options": dict(getattr(model, "corr_options", {})),
           "model_load_or_train_s": round(train_s, 1), "load_average": os.getloadavg(),
           "machine": platform.processor() or platform.machine(), "torch": torch.__version__, "runs": []}
    if not args.skip_runs:
        with tempfile.TemporaryDirectory() as folder:
            for fmt in args.formats:
                row = run_write(model, fmt, args.n, folder, args)
                print(json.dumps(row), flush=True)
                out["runs"].append(row)
        out["flops"] = flops_and_limit(model, args.flop_people, args)
        bed = next((r for r in out["runs"] if r["format"] == "bed"), out["runs"][0])
        out["percent_of_matmul_limit"] = round(100 * out["flops"]["matmul_limit_s_per_person"] * bed["people_per_s"], 2)
    if args.quality:
        out["quality"] = quality_over_draws(model, train, holdout, args)
    out["load_average_end"] = os.getloadavg()
    out["command"] = "python benchmarks/bench_throughput.py " + " ".join(sys.argv[1:] if argv is None else argv)
    folder = REPO / "benchmarks" / "results"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"throughput_{args.data}{args.tag}.json"
    path.write_text(json.dumps(out, indent=2, default=str))
    print(json.dumps({k: v for k, v in out.items() if k not in ("runs",)}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
