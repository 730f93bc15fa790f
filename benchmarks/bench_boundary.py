"""Where the window-boundary gap of issue 17 item 2 comes from (benchmarks/RESULTS.md, session 17).

Pairs of SNPs in three groups: inside one VAE token (``--patch`` SNPs), straddling two VAE tokens of
one DiT patch (``same``), and straddling two DiT patches (``cross``); synthetic r^2 / held-out r^2
(within population) per narrow distance bin, over **every** pair of 1-100 kb and a sample of the pairs
of 0.1-1 Mb. ``gap`` = straddling (same and cross together) minus inside, the issue's figure. Three modes,
each against the held-out 20 % of ``bench_scale.load_split`` (the split the model was trained on):

* ``score``: synthetic sets (PLINK prefixes from ``genosynth sample``) of the model, matched per population;
* ``roundtrip``: the held-out people themselves through the model's VAE (posterior means, the calibrated
  decoder, alleles drawn at each ``--temperature``): the share of the gap that the VAE makes;
* ``crop``: a DiT alone, trained on the model's VAE latents of the training rows in a crop of VAE tokens
  (``--tokens A B``; DiT overrides ``--dit``, timestep density ``--t-power``; the model's DiT training
  settings otherwise), drawn for the held-out people's labels with the model's sampler, decoded with the
  model's decoder (zeros outside the crop) and scored on the SNPs of tokens A+1 .. B-2: a test bed for a
  DiT change in about 12 minutes (2 threads, 310 tokens, 60 epochs) instead of a full training.

    python benchmarks/bench_boundary.py score --model M.pt --vcf G.vcf.gz --synthetic SYN1 SYN2 --json out.json
    python benchmarks/bench_boundary.py roundtrip --model M.pt --vcf G.vcf.gz --temperature 1 0.41 --json out.json
    python benchmarks/bench_boundary.py crop --model M.pt --vcf G.vcf.gz --tokens 0 310 --dit '{"local_window": 2}' \\
        --t-power 0.5 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_scale import (
    GAP_BINS_BP,
    _ratios,
    decay,
    gap_pairs,
    load_split,
    matched,
    pair_r2,
    pair_table,
)

BINS_BP = GAP_BINS_BP + ((100_000, 300_000), (300_000, 1_000_000))
GROUPS = ("inside", "same", "cross", "straddle", "all")


def pairs(variants, lo: int = 0, hi: int | None = None, *, far_pairs: int = 400_000, seed: int = 0):
    """Every pair of 1-100 kb among SNPs ``lo .. hi - 1`` (``bench_scale.gap_pairs``) and, of a sample of
    ``far_pairs`` pairs below 1 Mb (``bench_scale.pair_table``), those of 0.1-1 Mb: column indices ``i``,
    ``j`` (int64) and distances."""
    sub = variants.iloc[lo:hi].reset_index(drop=True)
    i, j, dist, _ = gap_pairs(sub, 1)
    fi, fj, fdist, _ = pair_table(sub, 1, seed, max_pairs=far_pairs)
    far = fdist >= 100_000
    return np.concatenate([i, fi[far]]) + lo, np.concatenate([j, fj[far]]) + lo, np.concatenate([dist, fdist[far]])


def groups_table(r2h: np.ndarray, r2s: np.ndarray, i, j, dist, *, patch: int, dit_patch: int,
                 min_pairs: int = 200) -> dict:
    """Synthetic / real mean r^2 per group and bin (None below ``min_pairs`` pairs), pair counts, and the gap."""
    straddle = (i // patch) != (j // patch)
    cross = (i // (patch * dit_patch)) != (j // (patch * dit_patch))
    masks = {"inside": ~straddle, "same": straddle & ~cross, "cross": cross, "straddle": straddle,
             "all": np.ones_like(straddle)}
    out = {"bins_bp": BINS_BP}
    for name in GROUPS:
        real, synth = (decay(r2, dist, masks[name], bins=BINS_BP, min_pairs=min_pairs) for r2 in (r2h, r2s))
        out[name] = _ratios(real, synth)
        out[f"{name}_pairs"] = [int((masks[name] & (dist >= lo) & (dist < hi)).sum()) for lo, hi in BINS_BP]
    out["gap"] = [None if a is None or b is None else a - b for a, b in zip(out["straddle"], out["inside"])]
    return out


def show(name: str, table: dict) -> None:
    print(name, "bins (kb)", [f"{lo // 1000}-{hi // 1000}" for lo, hi in BINS_BP], flush=True)
    for group in ("inside", "same", "cross", "gap"):
        print(f"  {group:7s}", " ".join("  -  " if x is None else f"{x:6.3f}" for x in table[group]), flush=True)


def geometry(gen) -> tuple[int, int]:
    """SNPs per VAE token and VAE tokens per DiT patch of a model."""
    return int(gen.vae.config.patch), int(gen.dit.config.patch_size)


def label_rows(gen, labels):
    """Label indices of the model's vocabulary: torch int64, shape (n,)."""
    import torch

    index = {v: k for k, v in enumerate(gen.vocabulary)}
    return torch.tensor([index[v] for v in labels])


def haplotype_rows(gen, cohort):
    """A phased cohort's haplotypes as model rows and their label indices: int64 (2N, V) and (2N,)."""
    import torch

    x = torch.from_numpy(cohort.haplotypes().reshape(-1, cohort.n_variants).astype(np.int64))  # (2N, V)
    return x, label_rows(gen, np.repeat(cohort.labels(gen.config.label_column), 2))


def decoded_people(gen, z, y, *, rng, temperature: float) -> np.ndarray:
    """Unscaled latents ``z`` (2N, C, T) of labels ``y`` through the calibrated decoder, alleles drawn at
    ``temperature``, rows 2i and 2i+1 summed into person i's genotypes: int (N, V)."""
    from genosynth.models.vae import sample_alleles

    hap = sample_alleles(gen._logits(z, y), rng=rng, temperature=temperature).numpy()  # (2N, V)
    return hap.reshape(len(y) // 2, 2, -1).sum(1)


def pair_scorer(gen, ho):
    """The held-out people's within-population r² of every pair, and a function that scores another set's
    genotypes (N, V) and population labels (N,) against it: :func:`groups_table` at the model's geometry."""
    patch, dit_patch = geometry(gen)
    i, j, dist = pairs(ho.variants)
    r2h = pair_r2(ho.genotypes(), ho.labels("pop"), i, j)
    return lambda g, labels: groups_table(r2h, pair_r2(g, labels, i, j), i, j, dist, patch=patch, dit_patch=dit_patch)


def run_score(args, gen, tr, ho) -> dict:
    from genosynth.io import read_cohort

    score = pair_scorer(gen, ho)
    out = {}
    for prefix in args.synthetic:
        sm = matched(read_cohort(bfile=prefix, samples=prefix + ".samples.tsv"), ho, args.seed)
        out[prefix] = score(sm.genotypes(), sm.labels("pop"))
        show(prefix, out[prefix])
    return out


def run_roundtrip(args, gen, tr, ho) -> dict:
    import torch

    from genosynth.training.plain import encode_posterior

    score = pair_scorer(gen, ho)
    x, y = haplotype_rows(gen, ho)  # (2N, V), (2N,)
    mu, _ = encode_posterior(gen.vae, x, torch.device("cpu"))  # (2N, C, T)
    rng = torch.Generator().manual_seed(args.seed)
    out = {}
    with torch.no_grad():
        for temp in args.temperature:
            g = decoded_people(gen, mu, y, rng=rng, temperature=temp)  # (N, V)
            out[f"T={temp}"] = score(g, ho.labels("pop"))
            show(f"round trip at temperature {temp}", out[f"T={temp}"])
    return out


def train_crop(args, gen, tr):
    """The crop's DiT, trained as the model's DiT stage trains (batch, learning-rate schedule, EMA, target,
    clipping) for ``--epochs``; returns it with its EMA weights."""
    import torch

    from genosynth.models.dit import DiT1D, DiTConfig
    from genosynth.models.ema import EMA
    from genosynth.training.plain import (
        dit_learning_rate,
        encode_posterior,
        optimizer_step,
    )

    a, b = args.tokens
    tc = gen.config.training
    x, y = haplotype_rows(gen, tr)  # (2N, V), (2N,)
    mu, sd = encode_posterior(gen.vae, x, torch.device("cpu"))  # (2N, C, T)
    mu, sd = mu[:, :, a:b].contiguous(), sd[:, :, a:b].contiguous()  # (2N, C, b - a)
    cfg = {**gen.dit.config.to_dict(), "n_tokens": b - a, **json.loads(args.dit)}
    torch.manual_seed(args.seed)
    dit = DiT1D(DiTConfig.from_dict(cfg))
    ema = EMA(dit, decay=tc.ema_decay, warmup=True)
    opt = torch.optim.AdamW(dit.parameters(), lr=tc.dit_lr, weight_decay=tc.weight_decay, fused=True)
    rng = torch.Generator().manual_seed(args.seed)
    steps = -(-len(y) // tc.dit_batch_size)
    dit.train()
    for epoch in range(args.epochs):
        order, total = torch.randperm(len(y), generator=rng), 0.0
        for k, s in enumerate(range(0, len(y), tc.dit_batch_size)):
            for group in opt.param_groups:  # the model's schedule (constant for the chromosome configuration)
                group["lr"] = dit_learning_rate(epoch * steps + k, steps * args.epochs, tc)
            idx = order[s:s + tc.dit_batch_size]
            noise = torch.randn(mu[idx].shape, generator=rng) if tc.dit_target != "mean" else 0.0
            z0 = (mu[idx] + sd[idx] * noise) * gen.latent_scale  # (B, C, b - a)
            per_row = gen.diffusion.training_loss(dit, z0, cond={"y": y[idx]}, reduction="none", rng=rng,
                                                  model_kwargs={"rng": rng}, t_power=args.t_power)  # (B,)
            optimizer_step(dit, opt, per_row, grad_clip=tc.grad_clip)
            ema.update(dit)
            total += float(per_row.detach().sum())
        if epoch % 10 == 9:
            print(f"epoch {epoch + 1} loss {total / len(y):.4f}", flush=True)
    ema.copy_to(dit)
    return dit.eval()


def run_crop(args, gen, tr, ho) -> dict:
    import torch

    from genosynth.models.solvers import sample_latents

    patch = geometry(gen)[0]
    a, b = args.tokens
    t0 = time.perf_counter()
    dit = train_crop(args, gen, tr)
    train_s = time.perf_counter() - t0
    sc = gen.config.sampling
    _, y = haplotype_rows(gen, ho)  # labels of two haplotypes per held-out person, (2N,)
    rng = torch.Generator().manual_seed(1000 + args.seed)
    with torch.no_grad():
        noise = torch.randn((len(y), gen.vae.config.latent_channels, b - a), generator=rng)
        z = sample_latents(gen.diffusion, dit, noise.shape, sampler=sc.sampler, cond={"y": y}, steps=sc.steps,
                           eta=sc.eta, guidance=sc.guidance, noise=noise, rng=rng, device=torch.device("cpu"))
        full = torch.zeros((len(y), gen.vae.config.latent_channels, gen.vae.n_tokens))  # (2N, C, T)
        full[:, :, a:b] = z / gen.latent_scale
        g = decoded_people(gen, full, y, rng=rng, temperature=sc.temperature)  # (N, V)
    i, j, dist = pairs(ho.variants, (a + 1) * patch, (b - 1) * patch)
    lab = ho.labels("pop")
    table = groups_table(pair_r2(ho.genotypes(), lab, i, j), pair_r2(g, lab, i, j), i, j, dist,
                         patch=patch, dit_patch=dit.config.patch_size)
    show(f"crop {a}-{b} {args.dit} t-power {args.t_power}", table)
    return {"crop": table, "train_s": train_s, "dit": dit.config.to_dict()}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("mode", choices=("score", "roundtrip", "crop"))
    p.add_argument("--model", required=True, help="checkpoint trained on the split below")
    p.add_argument("--vcf", required=True, help="the phased cohort the model was trained on (80 %% of it)")
    p.add_argument("--samples", help="sample table (default: VCF prefix .samples.tsv)")
    p.add_argument("--synthetic", nargs="+", default=[], help="score: PLINK prefixes of synthetic sets")
    p.add_argument("--temperature", type=float, nargs="+", default=[1.0], help="roundtrip: decoder temperatures")
    p.add_argument("--tokens", type=int, nargs=2, default=(0, 310), metavar=("A", "B"), help="crop: VAE tokens")
    p.add_argument("--dit", default="{}", metavar="JSON", help="crop: DiT config overrides")
    p.add_argument("--t-power", type=float, default=None, help="crop: timestep density (default: the model's)")
    p.add_argument("--epochs", type=int, default=None, help="crop: DiT epochs (default: the model's)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--split-seed", type=int, default=0, help="the 80/20 split the model was trained on")
    p.add_argument("--seed", type=int, default=0, help="draws (and the crop's DiT training)")
    p.add_argument("--json", help="write the record here")
    args = p.parse_args(argv)
    import torch

    from genosynth.sampling.generator import Generator

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    gen = Generator.load(args.model)
    args.epochs = args.epochs or gen.config.training.dit_epochs
    args.t_power = gen.config.training.dit_timestep_power if args.t_power is None else args.t_power
    _, tr, ho = load_split(None, 0, args.split_seed, vcf=args.vcf, samples=args.samples)
    rec = {"mode": args.mode, "args": vars(args), "load": os.getloadavg()}
    rec["result"] = {"score": run_score, "roundtrip": run_roundtrip, "crop": run_crop}[args.mode](args, gen, tr, ho)
    rec["seconds"], rec["load_after"] = time.perf_counter() - t0, os.getloadavg()
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rec, fh, indent=1)


if __name__ == "__main__":
    main()
