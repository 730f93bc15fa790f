"""Privacy-utility curve of ``genosynth train --epsilon``: one row per ε on the 805-SNP data.

Trains on 80 % of the 1000 Genomes 805-SNP cohort (split stratified by super population, seed
0), samples as many synthetic people as training people, and evaluates them against the training
and held-out people (``genosynth.evaluate``). ε = inf is ordinary training with the same model
and epochs. One JSON per ε in ``benchmarks/results/privacy_eps{E}{TAG}.json`` and a table on
stdout. The curve of RESULTS.md (small model, default shares ``DP_TRAINING_SPLIT``)::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_privacy.py --epsilon 10 3 1 inf \
        --vae-epochs 15 --dit-epochs 30 --threads 1

``--size mid`` / ``default`` train ``GeneratorConfig()`` (``mid``: with a narrower VAE) instead.
``--frequency-denoiser`` / ``--frequency-clip`` set the post-processing and the per-person bound of
the frequency release (``PrivacyConfig``); the ``pop`` runs of RESULTS.md add
``--label-column pop --frequency-clip 0.87`` and re-sample with ``--model ... --temperature 0.85``.

``--phenotype`` adds a simulated liability-threshold trait to the real genotypes before the split
(:func:`genosynth.simulation.simulate_phenotype`, 30 causal SNPs, h2 0.5, prevalence 0.3, centred
within ``pop``, seed ``--seed``), trains a case/control model (``phenotype_column="phenotype"``,
under ``--epsilon`` through DP-SGD and the group frequency release), samples the training numbers of
cases and controls, and adds ``phenotype`` metrics (:func:`phenotype_metrics`): the correlation of
per-SNP case-control ALT-frequency differences with the real training ones, GWAS top-k overlap,
causal recovery and TSTR vs TRTR; the held-out real people give each metric's sampling ceiling::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_privacy.py --epsilon 10 inf --phenotype --threads 1 \
        --tag _pheno

``--save PATH`` keeps the checkpoint, ``--resume`` continues an interrupted DP run saved there,
and ``--model PATH`` re-samples and re-evaluates a saved checkpoint with other sampling options
(``--pairing``, ``--temperature``, ``--guidance``) without training.

Nothing here is released: evaluation compares with the real cohort (custodian-side only).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DATA_805 = Path(os.environ.get("GENOSYNTH_SHARED", REPO.parent / "shared")) / "data" / "1000g_805"
RESULTS = REPO / "benchmarks" / "results"
KEYS = ("af_r", "ld_r_near_within", "aats", "mia_auc", "tstr_super_pop_lr", "trtr_super_pop_lr",
        "identical_to_train", "epsilon", "delta")


def config(args):
    """The configuration shared by every ε: ``--size default`` (``GeneratorConfig()``) or ``small``."""
    from genosynth.models.diffusion import DiffusionConfig
    from genosynth.models.config import GeneratorConfig, SamplingConfig, TrainingConfig
    from genosynth.models.dit import DiTConfig
    from genosynth.models.vae import VAEConfig

    sampling = {"guidance": args.guidance, "temperature": args.temperature, "pairing": args.pairing,
                "corr_guidance": args.corr_guidance, "ancestry_spread": not args.no_ancestry_spread,
                "pheno_guidance": getattr(args, "pheno_guidance", None)}  # bench_transfer.py has no such option
    if args.size in ("default", "mid"):
        vae = {} if args.size == "default" else {"snp_dim": 8, "width": 64, "blocks": 1}
        return GeneratorConfig(mode=args.mode).replace(
            vae=vae,
            training={"vae_epochs": args.vae_epochs, "dit_epochs": args.dit_epochs, "vae_lr": args.vae_lr,
                      "dit_lr": args.dit_lr},
            sampling=sampling)
    return GeneratorConfig(
        mode=args.mode,
        vae=VAEConfig(patch=16, snp_dim=8, width=64, latent_channels=4, blocks=1, kl_weight=0.1),
        dit=DiTConfig(hidden=64, depth=2, heads=4, patch_size=3),
        diffusion=DiffusionConfig(timesteps=1000, schedule="cosine"),
        training=TrainingConfig(vae_epochs=args.vae_epochs, dit_epochs=args.dit_epochs, vae_batch_size=128,
                                dit_batch_size=256, vae_lr=args.vae_lr, dit_lr=args.dit_lr,
                                calibration_rows=256, calibration_steps=20),
        sampling=SamplingConfig(steps=20, batch_size=1024, **sampling),
    )


def load_split(seed: int, *, phenotype: bool = False):
    """The 805-SNP cohort split 80/20, stratified by super population: ``(train, holdout)``.

    ``phenotype``: a simulated trait in the ``phenotype`` column (truth in both halves' ``meta["truth"]``).
    """
    import dataclasses

    from genosynth.evaluate import split_train_holdout
    from genosynth.io import read_cohort
    from genosynth.simulation import PhenotypeSpec, simulate_phenotype

    cohort = read_cohort(hapt=str(DATA_805 / "haplotypes.hapt.gz"), legend=str(DATA_805 / "snps.legend"),
                         samples=str(DATA_805 / "panel.tsv"))
    truth = None
    if phenotype:
        y, truth = simulate_phenotype(cohort, PhenotypeSpec(), seed=seed)
        samples = cohort.samples.copy()
        samples["phenotype"] = y
        cohort = dataclasses.replace(cohort, samples=samples)
    train, holdout = split_train_holdout(cohort, holdout_fraction=0.2, stratify="super_pop", seed=seed)
    for part in (train, holdout):
        if truth is not None:
            part.meta["truth"] = truth
    return train, holdout


def _case_control_difference(cohort, column: str = "super_pop") -> "np.ndarray":
    """Per-SNP ALT frequency of cases minus controls within each ``column`` group, averaged with the
    groups' sizes as weights: float64, shape (V,). Within groups, so that chance differences in the
    population mix of cases and controls (805 ancestry-informative SNPs) do not swamp the trait."""
    import numpy as np

    g = cohort.genotypes().astype(np.float64)  # (N, V)
    y = cohort.samples["phenotype"].to_numpy().astype(float)
    lab = cohort.labels(column)
    out, total = np.zeros(g.shape[1]), 0
    for value in np.unique(lab):
        case, control = (lab == value) & (y == 1), (lab == value) & (y == 0)
        if case.any() and control.any():
            out += (lab == value).sum() * (g[case].mean(0) - g[control].mean(0)) / 2
            total += (lab == value).sum()
    return out / max(total, 1)


def phenotype_metrics(train, holdout, synthetic, *, top_k: int = 20, seed: int = 0) -> dict:
    """How the synthetic cohort keeps the trait's association; the held-out real people as the ceiling.

    ``af_diff_r``: Pearson r of the per-SNP case-control ALT-frequency differences (within super
    population, :func:`_case_control_difference`) with the real training ones (all SNPs; ``_causal``:
    the causal SNPs only). ``top{k}_overlap``: shared SNPs of the ``k`` smallest GWAS p-values
    (logistic, additive, 4 genotype PCs as covariates). ``recovery``: of the causal SNPs the real
    training GWAS (4 PCs) finds at Bonferroni, the fraction the other cohort replicates (0.05 / found).
    ``tstr_auc`` / ``trtr_auc``: PRS (L2 logistic on all SNPs) trained on it, tested on the holdout.
    """
    import numpy as np

    from genosynth.prs import causal_recovery, tstr_trtr
    from genosynth.stats.association import gwas

    truth = train.meta["truth"]
    causal = np.array([row["index"] for row in truth["causal"]])
    real_d = _case_control_difference(train)
    real_top = set(np.argsort(gwas(train, pcs=4)["p"].to_numpy())[:top_k])
    out = {}
    for name, other in (("synthetic", synthetic), ("holdout", holdout)):
        d = _case_control_difference(other)
        top = set(np.argsort(gwas(other, pcs=4)["p"].to_numpy())[:top_k])
        rec = causal_recovery(train, other, truth, alpha="bonferroni", alpha_synthetic="replication", pcs=4)
        out[name] = {"af_diff_r": round(float(np.corrcoef(d, real_d)[0, 1]), 4),
                     "af_diff_r_causal": round(float(np.corrcoef(d[causal], real_d[causal])[0, 1]), 4),
                     f"top{top_k}_overlap": len(real_top & top), "recovery": rec["recovery"],
                     "causal_found_real": len(rec["found_real"]), "causal_found_both": len(rec["found_both"]),
                     "cases": int((other.samples["phenotype"] == 1).sum()), "n": other.n_samples}
    res = tstr_trtr(train, holdout, synthetic, method="logistic_l2", seed=seed)
    out["tstr_auc"], out["trtr_auc"] = round(res["tstr"]["auc"], 4), round(res["trtr"]["auc"], 4)
    return out


def run_one(eps: float, args, train, holdout) -> dict:
    from genosynth.evaluate import evaluate, summary
    from genosynth.training.plain import train_generator
    from genosynth.training.dp_plan import PrivacyConfig
    from genosynth.training.private import train_private

    from genosynth.sampling.generator import Generator

    cfg = config(args).replace(label_column=args.label_column,
                               phenotype_column="phenotype" if args.phenotype else None)
    t0 = time.perf_counter()
    if args.model:  # re-sample a saved checkpoint with this run's sampling options
        model = Generator.load(args.model)
        model.config = model.config.replace(sampling=dataclasses.asdict(cfg.sampling))
        cfg = model.config
        pc = None if model.privacy is None else PrivacyConfig(**model.meta["privacy_config"])
    elif math.isinf(eps):
        model = train_generator(train, config=cfg, seed=args.seed, log=print, checkpoint=args.save or None)
        pc = None
    else:
        pc = PrivacyConfig(epsilon=eps, delta=args.delta, batch_size=args.batch_size, latent_clip=args.latent_clip,
                           timesteps_split=args.split, stage1_epochs=args.stage1_epochs,
                           correlation_window=args.corr_window, max_grad_norm=args.max_grad_norm,
                           budget_split=json.loads(args.budget_split) if args.budget_split else None,
                           frequency_clip=args.frequency_clip,
                           **({"ancestry_dims": args.ancestry_dims} if args.ancestry_dims is not None else {}),
                           **({"frequency_denoiser": args.frequency_denoiser} if args.frequency_denoiser else {}))
        model = train_private(train, config=cfg, privacy=pc, seed=args.seed, log=print,
                              checkpoint=args.save or None, resume=args.resume)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    sample_seed = args.seed + 1 if args.sample_seed is None else args.sample_seed
    if args.phenotype:  # as many cases and controls as the training cohort (custodian-side evaluation)
        n_cases = int((train.samples["phenotype"] == 1).sum())
        synthetic = model.sample(cases=n_cases, controls=train.n_samples - n_cases, seed=sample_seed)
    else:
        synthetic = model.sample(train.n_samples, seed=sample_seed)
    sample_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = evaluate(train, holdout, {"genosynth": synthetic}, label_column="super_pop", seed=args.seed)
    pheno = phenotype_metrics(train, holdout, synthetic, seed=args.seed) if args.phenotype else None
    eval_s = time.perf_counter() - t0
    s, h = summary(res, "genosynth"), summary(res, "holdout")
    row = {k: s.get(k) for k in KEYS}
    row["epsilon"] = None if math.isinf(eps) else (model.privacy or {}).get("epsilon")
    row["delta"] = None if math.isinf(eps) else args.delta
    return {"target_epsilon": eps if not math.isinf(eps) else "inf", "data": "805", "snps": train.n_variants,
            "train_people": train.n_samples, "holdout_people": holdout.n_samples, "seed": args.seed,
            "threads": torch.get_num_threads(), "train_s": None if args.model else round(train_s, 1),
            "resampled_from": args.model or None, "sample_seed": sample_seed, "sample_s": round(sample_s, 1),
            "eval_s": round(eval_s, 1), "metrics": row, "holdout_reference": {k: h.get(k) for k in KEYS},
            "phenotype": pheno, "case_fraction": model.case_fraction,
            "privacy": model.privacy, "privacy_config": None if pc is None else pc.to_dict(),
            "config": cfg.to_dict(), "command": " ".join(sys.argv)}


def add_model_options(p: argparse.ArgumentParser) -> None:
    """The small DP model's training options and their defaults (bench_transfer.py takes the same)."""
    p.add_argument("--vae-epochs", type=int, default=20)
    p.add_argument("--dit-epochs", type=int, default=40)
    p.add_argument("--vae-lr", type=float, default=2e-3)
    p.add_argument("--dit-lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--max-grad-norm", type=float, default=1.0)
    p.add_argument("--latent-clip", type=float, default=4.0)
    p.add_argument("--stage1-epochs", type=int, default=20)
    p.add_argument("--corr-window", type=int, default=32)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epsilon", nargs="+", default=["1", "3", "10", "inf"])
    p.add_argument("--delta", type=float, default=1e-5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--mode", default="auto", choices=("auto", "haplotype", "genotype"))
    add_model_options(p)
    p.add_argument("--split", type=int, default=None, help="stage split S (default 0.9 T)")
    p.add_argument("--budget-split", default=None, help="JSON shares, e.g. '{\"vae/dpsgd\": 0.3, ...}'")
    p.add_argument("--frequency-denoiser", default="", choices=("", "shrink", "low_rank"),
                   help="post-processing of the DP frequency release (default: PrivacyConfig's)")
    p.add_argument("--frequency-clip", type=float, default=1.0,
                   help="per-person bound of the frequency release, fraction of sqrt(V) (1 = no clipping)")
    p.add_argument("--ancestry-dims", type=int, default=None,
                   help="directions of the DP within-label ancestry spread (0 = not released; default PrivacyConfig's)")
    p.add_argument("--sample-seed", type=int, default=None, help="seed of the synthetic draw (default --seed + 1)")
    p.add_argument("--no-ancestry-spread", action="store_true",
                   help="sample without the released ancestry spread (everyone at the label mean)")
    p.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale of sampling")
    p.add_argument("--temperature", type=float, default=1.0, help="decoder logit temperature of sampling")
    p.add_argument("--pheno-guidance", type=float, default=None,
                   help="phenotype models: separate CFG scale of case/control given ancestry (default: joint guidance)")
    p.add_argument("--pairing", default="random", choices=("random", "matched"), help="haplotype pairing of sampling")
    p.add_argument("--corr-guidance", default="latent+copula", choices=("none", "copula", "latent", "latent+copula"))
    p.add_argument("--size", default="small", choices=("small", "mid", "default"),
                   help="small CPU model (default); GeneratorConfig() with the given epochs; 'mid': that with a "
                        "narrower VAE (snp_dim 8, width 64, 1 block: 4x cheaper per-sample gradients)")
    p.add_argument("--save", default="", help="write the trained checkpoint here (one epsilon)")
    p.add_argument("--label-column", default="super_pop",
                   help="what the model conditions on (pop: 26 populations, written out with their super_pop)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted DP run saved to --save")
    p.add_argument("--model", default="", help="evaluate this saved checkpoint instead of training")
    p.add_argument("--tag", default="", help="suffix of the result file names")
    p.add_argument("--phenotype", action="store_true",
                   help="add a simulated trait (30 causal SNPs, h2 0.5), train a case/control model, report its association")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    train, holdout = load_split(args.seed, phenotype=args.phenotype)
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows = []
    for e in args.epsilon:
        eps = float(e)
        out = run_one(eps, args, train, holdout)
        name = f"privacy_eps{'inf' if math.isinf(eps) else f'{eps:g}'}{args.tag}.json"
        (RESULTS / name).write_text(json.dumps(out, indent=2, default=str))
        rows.append(out)
        m = out["metrics"]
        print(f"eps {out['target_epsilon']}: " + ", ".join(f"{k} {m[k]}" for k in KEYS)
              + f"; train {out['train_s']} s", flush=True)
        if out["phenotype"]:
            print(f"eps {out['target_epsilon']} phenotype: {json.dumps(out['phenotype'])}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
