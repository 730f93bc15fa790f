"""Ablation of correlation-guided decoding: vanilla vs guided, same marginals, same seed.

Two datasets, split 80/20 by person (stratified by super population, seed 0):

* ``805``   - 1000 Genomes, 805 ancestry-informative SNPs genome-wide, 2,002 people (shared data);
* ``dense`` - ``simulate_cohort(n_samples=1500, sequence_length=2_000_000, seed=7)``: ~2,200 SNPs
  in one 2 Mb region with strong LD.

Two marginal models (the decoder's per-row allele probabilities):

* ``indep`` - per-super-population allele frequencies of train (the "independent SNPs" baseline
  of ``genosynth.evaluate.baselines``, as a decoder that outputs the same marginals for everyone);
* ``model`` - a trained genosynth generator (VAE + latent DiT): latents are drawn **once** by
  DDIM and decoded by every method, so the rows differ only in the decoding.

Each method samples the same number of people with the same label counts; every set is
evaluated together by ``genosynth.evaluate.evaluate`` against real train with the real holdout as
ceiling. Results go to ``--json`` and an HTML report (LD heatmaps real vs every set) to ``--report``.

Usage::

    python benchmarks/bench_corrguide.py --dataset dense --marginals indep \
        --methods none,copula --json benchmarks/results/corrguide_dense_indep.json
    python benchmarks/bench_corrguide.py --dataset dense --marginals model --vae-epochs 10 --dit-epochs 30 \
        --methods none,copula,latent --json benchmarks/results/corrguide_dense_model.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np
import torch

KEYS = ("ld_r_near_within", "ld_r_near", "af_r", "af_mean_abs_diff", "gwas_overlap_top10",
        "gwas_overlap_top20", "gwas_overlap_top30", "aats", "mia_auc", "identical_to_train", "energy_coefficient")


def load_dataset(name: str):
    from genosynth.evaluate import split_train_holdout

    if name == "805":
        from genosynth.io import read_cohort

        root = os.environ.get("GENOSYNTH_805", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data",
                                                            "1000g_805"))
        cohort = read_cohort(hapt=os.path.join(root, "haplotypes.hapt.gz"), legend=os.path.join(root, "snps.legend"),
                             samples=os.path.join(root, "panel.tsv"))
    elif name == "dense":
        from genosynth.simulation import simulate_cohort

        cohort = simulate_cohort(n_samples=1500, sequence_length=2_000_000, seed=7)
    else:
        raise SystemExit(f"unknown dataset {name!r}")
    train, holdout = split_train_holdout(cohort, holdout_fraction=0.2, stratify="super_pop", seed=0)
    return cohort, train, holdout


def indep_probs(train, labels_of_rows: np.ndarray, vocab: list[str]) -> torch.Tensor:
    """Per-label ALT frequencies of train as (R, 2, V) class probabilities."""
    y = train.labels("super_pop")
    g = train.genotypes()
    af = np.stack([np.where(g[y == lab] >= 0, g[y == lab], 0).sum(0) / np.maximum(2 * (g[y == lab] >= 0).sum(0), 1)
                   for lab in vocab])  # (L, V)
    p = torch.from_numpy(af[labels_of_rows])  # (R, V)
    return torch.stack([1 - p, p], dim=1)


def rows_to_cohort(rows: np.ndarray, lab_people: np.ndarray, vocab: list[str], variants, tag: str):
    from genosynth.cohort import Cohort, make_samples

    names = np.array(vocab, dtype=object)[lab_people]
    samples = make_samples([f"{tag}{k}" for k in range(len(lab_people))], super_pop=names)
    return Cohort(alleles=rows.astype(np.int8), variants=variants, samples=samples, phased=True, ploidy=2,
                  meta={"generator": tag})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", choices=("805", "dense"), required=True)
    ap.add_argument("--marginals", choices=("indep", "model"), required=True)
    ap.add_argument("--methods", default="none,copula", help="comma list of none,copula,latent,latent+copula")
    ap.add_argument("--window", type=int, default=64, help="copula band (SNPs)")
    ap.add_argument("--latent-window", type=int, default=None,
                    help="latent-guidance band (SNPs; default --window, as when these tables were made; "
                         "the pipeline now stores up to 768 within 1 Mb)")
    ap.add_argument("--n", type=int, default=None, help="synthetic people (default: train size)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vae-epochs", type=int, default=None)
    ap.add_argument("--dit-epochs", type=int, default=None)
    ap.add_argument("--steps", type=int, default=20, help="sampler steps (model marginals)")
    ap.add_argument("--sampler", default="ddim", choices=("ddim", "dpm++2m"), help="latent sampler (model marginals)")
    ap.add_argument("--checkpoint", default=None, help="reuse/write the trained generator here")
    ap.add_argument("--json", required=True)
    ap.add_argument("--report", default=None, help="PREFIX of an HTML/JSON evaluation report")
    ap.add_argument("--latent-steps", type=int, default=None, help="override CorrGuideConfig.latent_steps")
    ap.add_argument("--latent-lr", type=float, default=None, help="override CorrGuideConfig.latent_lr")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--config", default=None, metavar="JSON",
                    help='training: config sections to change, e.g. \'{"dit": {"local_mlp": 128}}\'')
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    from genosynth.models.ld_prior import CorrGuideConfig
    from genosynth.sampling.ld_guidance import copula_sample, guided_decode
    from genosynth.training.ld_fit import fit_prior
    from genosynth.evaluate import EvalConfig, evaluate, summary

    t0 = time.perf_counter()
    cohort, train, holdout = load_dataset(a.dataset)
    vocab = sorted(set(train.labels("super_pop").tolist()))
    n = a.n or train.n_samples
    timings: dict[str, float] = {}
    t = time.perf_counter()
    latent_window = a.latent_window or a.window
    prior = fit_prior(train, label_column="super_pop", labels=vocab, window=max(a.window, latent_window))
    timings["fit_prior"] = time.perf_counter() - t
    chrom = train.variants["chrom"].astype(str).to_numpy()
    pos = train.variants["pos"].to_numpy()
    # people per label by the training mix (largest remainders), in a seeded order
    from genosynth.sampling.counts import parse_label_counts

    mix = {lab: float((train.labels("super_pop") == lab).mean()) for lab in vocab}
    counts = parse_label_counts(None, n=n, vocabulary=vocab, mix=mix)
    lab_people = np.concatenate([np.full(c, vocab.index(k)) for k, c in counts.items()])
    lab_people = lab_people[np.random.default_rng(a.seed).permutation(n)]
    lab_rows = np.repeat(lab_people, 2)  # haplotype rows
    methods = [m for m in a.methods.split(",") if m]
    over = {k: v for k, v in (("latent_steps", a.latent_steps), ("latent_lr", a.latent_lr)) if v is not None}
    sets, extra = {}, {}
    if a.marginals == "indep":
        probs = indep_probs(train, lab_rows, vocab)  # (2n, 2, V)
        for m in methods:
            if m.startswith("latent"):
                raise SystemExit("latent guidance needs --marginals model")
            gen = torch.Generator().manual_seed(a.seed + 1)
            t = time.perf_counter()
            if m == "none":
                from genosynth.models.vae import sample_alleles

                rows = sample_alleles(probs.log(), rng=gen)
            else:
                rows = copula_sample(probs, prior, torch.from_numpy(lab_rows), rng=gen,
                                     config=CorrGuideConfig(method=m, window=a.window), chrom=chrom, pos=pos)
            timings[f"decode_{m}"] = time.perf_counter() - t
            sets[m] = rows_to_cohort(rows.numpy(), lab_people, vocab, train.variants, f"{m}_")
    else:
        from genosynth.sampling.generator import Generator
        from genosynth.models.config import GeneratorConfig
        from genosynth.models.solvers import sample_latents
        from genosynth.training.plain import train_generator

        if a.checkpoint and os.path.exists(a.checkpoint):
            model = Generator.load(a.checkpoint)
            timings["train"] = 0.0
        else:
            cfg = GeneratorConfig()
            if a.config:
                cfg = cfg.replace(**json.loads(a.config))
            changes = {}
            if a.vae_epochs is not None:
                changes["vae_epochs"] = a.vae_epochs
            if a.dit_epochs is not None:
                changes["dit_epochs"] = a.dit_epochs
            if changes:
                cfg = cfg.replace(training=changes)
            t = time.perf_counter()
            model = train_generator(train, config=cfg, seed=a.seed, checkpoint=a.checkpoint, log=print)
            timings["train"] = time.perf_counter() - t
        assert model.vocabulary == vocab, (model.vocabulary, vocab)
        extra["generator_config"] = model.config.to_dict()
        extra["generator_metrics"] = model.meta.get("metrics")
        y = torch.from_numpy(lab_rows)
        shape = (len(lab_rows), model.vae.config.latent_channels, model.vae.n_tokens)
        gen = torch.Generator().manual_seed(a.seed)
        t = time.perf_counter()
        zs = []
        with torch.no_grad():
            for s in range(0, len(lab_rows), 1024):
                sl = slice(s, s + 1024)
                noise = torch.randn((len(lab_rows[sl]),) + shape[1:], generator=gen)
                zs.append(sample_latents(model.diffusion, model.dit, noise.shape, sampler=a.sampler,
                                         cond={"y": y[sl]}, steps=a.steps,
                                         guidance=model.config.sampling.guidance, noise=noise))
        z = torch.cat(zs) / model.latent_scale  # (2n, C, T)
        timings["ddim"] = time.perf_counter() - t
        for m in methods:
            gen = torch.Generator().manual_seed(a.seed + 1)
            t = time.perf_counter()
            out = []
            for s in range(0, len(lab_rows), 2048):
                sl = slice(s, s + 2048)
                out.append(guided_decode(model.vae.decode, z[sl], y[sl], prior, rng=gen,
                                         config=CorrGuideConfig(method=m, window=a.window, latent_window=latent_window,
                                                                **over), chrom=chrom,
                                         pos=pos))
            timings[f"decode_{m}"] = time.perf_counter() - t
            sets[m] = rows_to_cohort(torch.cat(out).numpy(), lab_people, vocab, train.variants, f"{m}_")
    t = time.perf_counter()
    res = evaluate(train, holdout, sets, label_column="super_pop", config=EvalConfig(), seed=a.seed)
    timings["evaluate"] = time.perf_counter() - t
    table = {name: {k: summary(res, name).get(k) for k in KEYS} for name in ["holdout", *sets]}
    for name in sets:
        table[name]["ld_decay_within"] = res["fidelity"][name]["ld"]["decay_within"]
    table["train"] = {"ld_decay_within": None}
    table["holdout"]["ld_decay_within"] = res["fidelity"]["holdout"]["ld"]["decay_within"]
    out = {"dataset": a.dataset, "marginals": a.marginals, "n_variants": cohort.n_variants,
           "n_train": train.n_samples, "n_holdout": holdout.n_samples, "n_synthetic": n, "window": a.window,
           "latent_window": latent_window,
           "seed": a.seed, "steps": a.steps, "sampler": a.sampler, "methods": methods, "overrides": over, "table": table,
           "ld_decay_edges_bp": list(res["config"]["ld_decay_edges_bp"]), "timings": timings,
           "total_s": time.perf_counter() - t0, "argv": sys.argv if argv is None else argv,
           "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
                       "threads": a.threads}, **extra}
    os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
    with open(a.json, "w", encoding="utf-8") as fh:
        json.dump(out, fh, indent=2, default=float)
    if a.report:
        from genosynth.evaluate import write_report

        try:
            write_report(res, a.report, title=f"correlation-guided decoding, {a.dataset}, {a.marginals} marginals")
        except Exception as exc:  # noqa: BLE001 - the report is a by-product; the JSON is written already
            print(f"report not written: {exc!r}", file=sys.stderr)
    for name, row in table.items():
        if name == "train":
            continue
        print(f"{name:>14} " + " ".join(f"{k}={row[k]:.4g}" if isinstance(row[k], float) else f"{k}={row[k]}"
                                        for k in KEYS))
    print("timings", {k: round(v, 2) for k, v in timings.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
