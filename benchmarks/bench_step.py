"""Training step time and the fraction of the device's matmul rate it reaches (issue 17).

Builds the networks ``genosynth`` trains for ``--snps`` SNPs (``config_for("auto", snps)``: the
chromosome configuration above 10,000 SNPs) and times ``--steps`` optimiser steps of the VAE and
of the DiT on random rows and latents (the cost does not depend on the values), on ``--device``
(cpu or cuda) in ``--precision`` fp32 or bf16 (autocast). FLOPs per step are counted by
``torch.utils.flop_counter.FlopCounterMode`` (matmuls and attention; elementwise work is not
counted, so the fraction is a lower bound of the device's use). The reference rate is *measured*:
a square matmul of ``--peak-n`` in the same dtype on the same device, so CPU and GPU runs read the
same way. The VAE step is the trainer's (micro-batches and heap reuse of the configuration; ``--config`` overrides
sections, e.g. ``'{"training": {"vae_micro_batch": 0, "heap_reuse": false}}'`` for one pass per batch); CPU user
and system seconds per step and the process's peak RSS are recorded. Writes one JSON record.

Usage::

    python benchmarks/bench_step.py --snps 100000 --json benchmarks/results/step_cpu_100k.json
    python benchmarks/bench_step.py --snps 100000 --device cuda --precision bf16 \\
        --json benchmarks/results/step_cuda_100k.json      # given a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from genosynth.training.plain import forward_precision


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_rate(device: torch.device, dtype: torch.dtype, n: int, repeats: int = 5) -> float:
    """Measured FLOP/s of an n x n matmul (the device's practical peak for this dtype)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - t0)


def build(snps: int, device: torch.device, overrides: dict | None = None):
    from genosynth.models.checkpoint import build_models
    from genosynth.models.config import config_for

    cfg = config_for("auto", snps)
    if overrides:
        cfg = cfg.replace(**overrides)
    vae, dit, _ = build_models(cfg, n_variants=snps, n_classes=2, n_labels=3)
    return cfg, vae.to(device), dit.to(device)


def time_steps(step, steps: int, device: torch.device) -> tuple[float, float, dict]:
    """Median seconds per step, FLOPs of one step, and the timed steps' CPU user / system seconds per step."""
    step()  # warm-up
    with FlopCounterMode(display=False) as counter:
        step()
    times = []
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(steps):
        sync(device)
        t0 = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t0)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    times.sort()
    cpu = {"user_s_per_step": (r1.ru_utime - r0.ru_utime) / steps, "sys_s_per_step": (r1.ru_stime - r0.ru_stime) / steps}
    return times[len(times) // 2], float(counter.get_total_flops()), cpu


def vae_step(vae, cfg, device, precision: str):
    """The trainer's VAE step: fused AdamW, clipping, ``training.vae_micro_batch`` rows per backward pass
    (``training.plain.accumulated_step``) inside ``training.heap_reuse``, as ``training.plain.vae_epoch`` runs them."""
    from types import SimpleNamespace

    from genosynth.runtime import heap_reuse
    from genosynth.training.plain import accumulated_step, micro_batch_rows

    tc = cfg.training
    run = SimpleNamespace(vae=vae, vae_opt=torch.optim.AdamW(vae.parameters(), lr=1e-3,
                                                              fused=device.type in ("cpu", "cuda")))
    b = tc.vae_batch_size
    micro = micro_batch_rows(tc.vae_micro_batch, b)
    x = torch.randint(0, 2, (b, vae.n_variants), dtype=torch.int8, device=device)
    y = torch.randint(0, 3, (b,), device=device)
    parts = [(x[s:s + micro], y[s:s + micro]) for s in range(0, b, micro)]
    gen = torch.Generator(device=device).manual_seed(0)

    def step():
        with heap_reuse(tc.heap_reuse and device.type == "cpu"):
            accumulated_step(run, vae, parts, rows=b, rng=gen, precision=precision, grad_clip=tc.grad_clip)

    return step


def dit_step(dit, cfg, device, precision: str):
    from genosynth.models.diffusion import GaussianDiffusion

    diffusion = GaussianDiffusion(cfg.diffusion)
    opt = torch.optim.AdamW(dit.parameters(), lr=1e-3)
    b = cfg.training.dit_batch_size
    z = torch.randn(b, dit.config.in_channels, dit.config.n_tokens, device=device)
    y = torch.randint(0, 3, (b,), device=device)

    def step():
        t = torch.randint(0, cfg.diffusion.timesteps, (b,), device=device)
        with forward_precision(device, precision):
            loss = diffusion.training_loss(dit, z, t=t, cond={"y": y}).float()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--snps", type=int, default=100_000)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--peak-n", type=int, default=2048)
    p.add_argument("--config", help="JSON overriding config sections, e.g. '{\"training\": {\"vae_micro_batch\": 0}}'")
    p.add_argument("--json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    cfg, vae, dit = build(args.snps, device, json.loads(args.config) if args.config else None)
    peak = matmul_rate(device, dtype, args.peak_n)
    rec = {"snps": args.snps, "device": str(device), "precision": args.precision, "threads": args.threads,
           "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
           "cpu": platform.processor() or platform.machine(), "load": os.getloadavg(),
           "matmul_flops_per_s": peak, "config": args.config}
    for name, step, rows in (("vae", vae_step(vae, cfg, device, args.precision), cfg.training.vae_batch_size),
                             ("dit", dit_step(dit, cfg, device, args.precision), cfg.training.dit_batch_size)):
        sec, flops, cpu = time_steps(step, args.steps, device)
        rec[name] = {"s_per_step": sec, "rows_per_step": rows, "flops_per_step": flops, **cpu,
                     "flops_per_s": flops / sec, "fraction_of_matmul_rate": flops / sec / peak}
    rec["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the process: model, data, steps
    emit(rec, args.json)


def emit(rec: dict, path: str | None) -> None:
    """Print a record as JSON and write it to ``path`` when given."""
    text = json.dumps(rec, indent=1, default=str)
    print(text)
    if path:
        with open(path, "w") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
