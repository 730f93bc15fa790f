"""Phenotype-supervised generation: GWAS-guided selection, TSTR vs TRTR, recovery of causal SNPs.

Three sub-commands:

``baseline``
    Simulates a cohort with a known liability-threshold trait (YRI/CEU/CHB, 30 causal SNPs,
    h2 = 0.5, prevalence 0.3; 7,000 people by default), splits it into a training cohort A
    (3,000: with the holdout, the issue's 4,000-person cohort), a second real cohort B of the
    same size and a real holdout T (1,000), selects SNPs on A
    (:func:`genosynth.selection.select_snps`) and measures the acceptance metrics of issue 7 for
    reference "generators" whose answer is known:

    * ``copy``: the synthetic cohort is A itself (TSTR must equal TRTR, recovery 100 %);
    * ``independent real``: B, fresh people from the same population - the best a perfect
      generator can do (sampling noise only);
    * ``broken``: A with its phenotype permuted (genotypes kept, genotype-trait link destroyed):
      the metrics must fail;
    * ``DP selection``: TRTR with the SNPs chosen by the DP selection (``--epsilon``).

    ``--repeats R`` re-splits R times (fresh selection each time) for ``independent real`` and
    reports the mean and sd of the TSTR-TRTR gap and of the recovery: the sampling noise of the
    measurement itself, against which a generator's gap must be read.

    Then the same flow on the 1000 Genomes 805-SNP cohort with cases and controls defined by two
    populations (``--case-pop``/``--control-pop``; default AFR vs EUR).
``simulate --out DIR``
    Writes the simulated training cohort (``DIR/train.bed``), holdout (``DIR/holdout.bed``),
    independent real cohort (``DIR/independent.bed``, the reference "generator"), the
    truth (``DIR/truth.json``) and the selection (``DIR/train.snplist``), for a generator to be
    trained on ``DIR/train`` restricted to ``DIR/train.snplist``.
``evaluate --data DIR --synthetic-bfile P | --synthetic-vcf F``
    Scores any synthetic cohort against ``DIR``: TSTR vs TRTR on the holdout and causal recovery.
``generate``
    The end-to-end check of issue 7: the same simulated split and selection as ``baseline``;
    a phenotype-conditional generator (``GeneratorConfig(phenotype_column="phenotype")``) is
    trained on A restricted to the selected SNPs, samples as many cases and controls as A has,
    and is scored like the reference rows (TSTR vs TRTR on T, causal recovery at ``--alpha`` and
    at the replication threshold). From the one trained model it also scores two calibration
    ablations (per-label instead of per-(label, phenotype) frequency calibration; none) and a
    guidance sweep (``--guidance``). Then (unless ``--skip-805``) the same on the 1000 Genomes
    805 SNPs with ``--case-pop`` cases and ``--control-pop`` controls.

Run from the repository root, e.g.::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_phenotype.py baseline --out bench_pheno.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time

import numpy as np

from genosynth import __version__
from genosynth.selection import population_phenotype, select_snps
from genosynth.prs import causal_recovery, tstr_trtr

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED_805 = os.path.join(HERE, "..", "..", "shared", "data", "1000g_805")


def simulate(args):
    from genosynth.simulation import PhenotypeSpec, simulate_cohort

    t0 = time.perf_counter()
    cohort = simulate_cohort(n_samples=2 * args.n_train + args.n_holdout,
                             sequence_length=int(args.length_mb * 1e6), seed=args.seed,
                             phenotype=PhenotypeSpec(n_causal=args.causal, heritability=args.h2,
                                                     prevalence=args.prevalence))
    return cohort, time.perf_counter() - t0


def split(cohort, seed, sizes):
    """A (train), B (independent real), T (holdout; the rest) by a seeded permutation."""
    perm = np.random.default_rng(seed).permutation(cohort.n_samples)
    a, b = sizes
    return (cohort.subset(samples=perm[:a]), cohort.subset(samples=perm[a:a + b]),
            cohort.subset(samples=perm[a + b:]))


def permuted(cohort, seed):
    samples = cohort.samples.copy()
    samples["phenotype"] = np.random.default_rng(seed).permutation(samples["phenotype"].to_numpy())
    return dataclasses.replace(cohort, samples=samples)


def measure(train, test, synthetic, snps, truth, *, alpha, methods=("logistic_l2", "clumped_beta"), seed=0):
    row = {}
    for method in methods:
        t0 = time.perf_counter()
        res = tstr_trtr(train, test, synthetic, snps=snps, method=method, seed=seed)
        row[method] = {"trtr": round(res["trtr"]["auc"], 4), "tstr": round(res["tstr"]["auc"], 4),
                       "gap": round(res["gap"], 4), "seconds": round(time.perf_counter() - t0, 1),
                       "snps_used_trtr": res["trtr"]["n_snps_used"], "snps_used_tstr": res["tstr"]["n_snps_used"]}
    if truth is not None:
        t0 = time.perf_counter()
        rec = causal_recovery(train, synthetic, truth, alpha=alpha)
        row["recovery"] = {k: rec[k] for k in ("recovery", "n_causal", "hits_real", "hits_synthetic",
                                               "sign_agreement")}
        row["recovery"]["found_real"] = len(rec["found_real"])
        row["recovery"]["found_both"] = len(rec["found_both"])
        row["recovery"]["seconds"] = round(time.perf_counter() - t0, 1)
        rep = causal_recovery(train, synthetic, truth, alpha=alpha, alpha_synthetic="replication")
        row["recovery"]["replication"] = rep["recovery"]
        row["recovery"]["alpha_replication"] = rep["alpha_synthetic"]
    return row


def baseline(args):
    out = {"machine": f"{platform.machine()} {os.cpu_count()} cores, python {platform.python_version()}",
           "genosynth": __version__, "args": vars(args)}
    cohort, t_sim = simulate(args)
    truth = cohort.meta["truth"]
    a, b, t = split(cohort, args.seed, (args.n_train, args.n_train))
    out["simulated"] = {"samples": cohort.n_samples, "variants": cohort.n_variants, "seconds": round(t_sim, 1),
                        "realised_h2": round(truth["realised_h2"], 3), "cases": truth["n_cases"],
                        "split": [a.n_samples, b.n_samples, t.n_samples]}
    t0 = time.perf_counter()
    sel = select_snps(a, k=args.k, seed=args.seed)
    causal = {row["index"] for row in truth["causal"]}
    out["select"] = {"selected": len(sel.ids), "seconds": round(time.perf_counter() - t0, 1),
                     "causal_selected": len(causal & set(sel.indices.tolist())), "notes": sel.notes}
    print(f"selected {len(sel.ids)} SNPs in {out['select']['seconds']} s", file=sys.stderr)
    t0 = time.perf_counter()
    dp = select_snps(a, k=args.k, epsilon=args.epsilon, delta=args.delta, seed=args.seed)
    out["select_dp"] = {"selected": len(dp.ids), "seconds": round(time.perf_counter() - t0, 1),
                        "causal_selected": len(causal & set(dp.indices.tolist())),
                        "epsilon": dp.privacy["epsilon"], "delta": dp.privacy["delta"],
                        "epsilon_step": dp.privacy["epsilon_step"],
                        "accountant_epsilon": dp.privacy["accountant_epsilon"]}
    from genosynth.stats.association import association_scores, binary_phenotype

    scores, _ = association_scores(a.genotypes(), binary_phenotype(a))  # simulated data: not private here
    idx = sorted(causal)
    out["select_dp"]["gumbel_scale"] = round(dp.privacy["noise_multiplier"] * dp.privacy["sensitivity"], 1)
    out["select_dp"]["score_median_all"] = round(float(np.median(scores)), 1)
    out["select_dp"]["score_causal_quartiles"] = np.percentile(scores[idx], [25, 50, 75]).round(1).tolist()
    sweep = []
    for k in (100, args.k):
        for eps in (1.0, 4.0, 16.0, 64.0):
            got = select_snps(a, k=k, epsilon=eps, delta=args.delta, seed=args.seed, clump_r2=None)
            sweep.append({"k": k, "epsilon": eps, "causal_selected": len(causal & set(got.indices.tolist())),
                          "expected_by_chance": round(k * len(causal) / a.n_variants, 1),
                          "gumbel_scale": round(got.privacy["noise_multiplier"] * got.privacy["sensitivity"], 1)})
    top = select_snps(a, k=100, clump_r2=None, seed=args.seed)
    sweep.append({"k": 100, "epsilon": None, "causal_selected": len(causal & set(top.indices.tolist()))})
    out["select_dp"]["sweep"] = sweep
    scenarios = {"copy": a, "independent real": b, "broken (permuted phenotype)": permuted(a, args.seed)}
    out["scenarios"] = {}
    for name, synthetic in scenarios.items():
        out["scenarios"][name] = measure(a, t, synthetic, sel.ids, truth, alpha=args.alpha, seed=args.seed)
        print(name, json.dumps(out["scenarios"][name]), file=sys.stderr)
    out["scenarios"]["independent real, DP-selected SNPs"] = measure(a, t, b, dp.ids, truth, alpha=args.alpha,
                                                                     seed=args.seed)
    reps = []
    for r in range(1, args.repeats):
        ar, br, tr = split(cohort, args.seed + r, (args.n_train, args.n_train))
        sel_r = select_snps(ar, k=args.k, seed=args.seed + r)
        reps.append(measure(ar, tr, br, sel_r.ids, truth, alpha=args.alpha, seed=args.seed + r))
        print("repeat", r, json.dumps(reps[-1]), file=sys.stderr)
    if reps:
        reps.insert(0, out["scenarios"]["independent real"])
        summary = {}
        for key, get in (("gap_l2", lambda x: x["logistic_l2"]["gap"]), ("gap_ct", lambda x: x["clumped_beta"]["gap"]),
                         ("trtr_l2", lambda x: x["logistic_l2"]["trtr"]),
                         ("recovery", lambda x: x["recovery"]["recovery"]),
                         ("replication", lambda x: x["recovery"]["replication"]),
                         ("found_real", lambda x: x["recovery"]["found_real"])):
            vals = np.array([get(x) for x in reps], dtype=float)
            summary[key] = {"mean": round(float(np.nanmean(vals)), 4), "sd": round(float(np.nanstd(vals, ddof=1)), 4),
                            "max_abs": round(float(np.nanmax(np.abs(vals))), 4), "values": vals.round(4).tolist()}
        out["independent_real_repeats"] = summary
    if not args.skip_805 and os.path.exists(SHARED_805):
        out["1000g_805"] = bench_805(args)
    return out


def case_control_805(args):
    """The 805-SNP cohort with cases = ``--case-pop``, controls = ``--control-pop``, split 40/40/20."""
    from genosynth.io import read_cohort

    d = SHARED_805
    cohort = read_cohort(hapt=os.path.join(d, "haplotypes.hapt.gz"), legend=os.path.join(d, "snps.legend"),
                         samples=os.path.join(d, "panel.tsv"))
    cc = population_phenotype(cohort, [args.case_pop], [args.control_pop])
    return cc, split(cc, args.seed, (int(0.4 * cc.n_samples), int(0.4 * cc.n_samples)))


def bench_805(args):
    cc, (a, b, t) = case_control_805(args)
    t0 = time.perf_counter()
    sel = select_snps(a, k=args.k_805, seed=args.seed)
    res = {"cases": args.case_pop, "controls": args.control_pop, "samples": cc.n_samples,
           "split": [a.n_samples, b.n_samples, t.n_samples], "selected": len(sel.ids),
           "select_seconds": round(time.perf_counter() - t0, 1), "scenarios": {}}
    # no causal truth: "recovery" of every SNP the real GWAS finds (Bonferroni), as GWAS-hit replication
    all_ids = list(a.variants["id"])
    for name, synthetic in {"copy": a, "independent real": b, "broken (permuted phenotype)": permuted(a, 1)}.items():
        res["scenarios"][name] = measure(a, t, synthetic, sel.ids, all_ids, alpha="bonferroni",
                                         methods=("logistic_l2",), seed=args.seed)
    return res


def write_data(args):
    from genosynth.io.plink import write_bed

    cohort, _ = simulate(args)
    a, b, t = split(cohort, args.seed, (args.n_train, args.n_train))  # the same split as 'baseline'
    os.makedirs(args.out, exist_ok=True)
    write_bed(a, os.path.join(args.out, "train"))
    write_bed(b, os.path.join(args.out, "independent"))  # fresh real people: the reference 'generator'
    write_bed(t, os.path.join(args.out, "holdout"))
    sel = select_snps(a, k=args.k, seed=args.seed)
    with open(os.path.join(args.out, "train.snplist"), "w") as fh:
        fh.writelines(f"{i}\n" for i in sel.ids)
    with open(os.path.join(args.out, "truth.json"), "w") as fh:
        json.dump(cohort.meta["truth"], fh, indent=1)
    print(f"wrote {args.out}/train.bed ({a.n_samples} x {a.n_variants}), independent.bed ({b.n_samples}), "
          f"holdout.bed ({t.n_samples}), "
          f"train.snplist ({len(sel.ids)} SNPs), truth.json")
    return {"train": a.n_samples, "holdout": t.n_samples, "selected": len(sel.ids)}


def evaluate(args):
    from genosynth.io import read_cohort

    train = read_cohort(bfile=os.path.join(args.data, "train"))
    test = read_cohort(bfile=os.path.join(args.data, "holdout"))
    truth = json.load(open(os.path.join(args.data, "truth.json")))
    snps = open(os.path.join(args.data, "train.snplist")).read().split()
    synthetic = read_cohort(bfile=args.synthetic_bfile, vcf=args.synthetic_vcf, samples=args.synthetic_samples)
    present = set(synthetic.variants["id"])
    snps = [s for s in snps if s in present]
    causal = [row["id"] for row in truth["causal"] if row["id"] in present]
    return {"synthetic": args.synthetic_bfile or args.synthetic_vcf, "snps": len(snps),
            "causal_present": len(causal),
            **measure(train, test, synthetic, snps, causal, alpha=args.alpha, seed=args.seed)}


def train_phenotype_model(train, args, *, label_column="super_pop"):
    """A phenotype-conditional generator trained on ``train`` (default config, shortened epochs)."""
    import torch

    from genosynth.models.config import GeneratorConfig
    from genosynth.training.plain import train_generator

    torch.set_num_threads(args.threads)
    cfg = GeneratorConfig(label_column=label_column, phenotype_column="phenotype")
    cfg = cfg.replace(training={"vae_epochs": args.vae_epochs, "dit_epochs": args.dit_epochs})
    if args.model:
        from genosynth.sampling.generator import Generator

        model = Generator.load(args.model)
        return model, model.config, None
    t0 = time.perf_counter()
    model = train_generator(train, config=cfg, seed=args.seed, log=lambda m: print(m, file=sys.stderr),
                            checkpoint=args.save)
    return model, cfg, round(time.perf_counter() - t0, 1)


def hit_replication(real, synthetic, alpha):
    """Of all selected SNPs the real GWAS finds at ``alpha`` (causal or tagging), the fraction the
    synthetic GWAS finds at ``alpha`` and at the replication threshold."""
    ids = list(real.variants["id"])
    at = causal_recovery(real, synthetic, ids, alpha=alpha)
    rep = causal_recovery(real, synthetic, ids, alpha=alpha, alpha_synthetic="replication")
    return {"hits_real": len(at["found_real"]), "hits_synthetic": len(at["found_synthetic"]),
            "both": len(at["found_both"]), "recovery": at["recovery"], "replication": rep["recovery"],
            "sign_agreement": at["sign_agreement"]}


def sampling_options(args) -> dict:
    return {} if args.corr_guidance is None else {"corr_guidance": args.corr_guidance}


def calibration_variants(model, train, cfg, seed, rows=None):
    """The trained model with its calibration per (label, phenotype), per label only, and none.

    ``rows``: also the per-(label, phenotype) calibration redone with that many rows per group
    (post-training: the networks are the same).
    """
    import copy

    import torch

    from genosynth.training.calibration import calibrate_frequencies as _calibrate
    from genosynth.training.data import class_frequencies, prepare_data

    data = prepare_data(train, label_column=cfg.label_column, mode=cfg.mode, phenotype_column=cfg.phenotype_column)
    tc = cfg.training
    _, per_label = class_frequencies(data.alleles, data.labels, len(data.vocabulary), data.n_classes,
                                     pseudo_count=tc.pseudo_count)
    by_label = copy.copy(model)
    by_label.calibration = _calibrate(model.vae, model.dit, model.diffusion, per_label, model.latent_scale,
                                      rows=tc.calibration_rows, steps=tc.calibration_steps,
                                      rng=torch.Generator().manual_seed(seed), dev=torch.device("cpu"))
    by_label.calibration_by_phenotype = False
    none = copy.copy(model)
    none.calibration = None
    none.calibration_by_phenotype = False
    out = {"calibration per (label, phenotype)": model, "calibration per label": by_label, "no calibration": none}
    if rows:
        from genosynth.training.data import group_frequencies

        more = copy.copy(model)
        more.calibration = _calibrate(model.vae, model.dit, model.diffusion,
                                      group_frequencies(data, per_label, pseudo_count=tc.pseudo_count),
                                      model.latent_scale, rows=rows, steps=tc.calibration_steps,
                                      rng=torch.Generator().manual_seed(seed), dev=torch.device("cpu"),
                                      by_phenotype=True)
        out[f"calibration per (label, phenotype) from {rows} rows per group"] = more
    for m in list(out.values())[1:]:
        m._corr_cache = {}  # correlation-guided decoding caches per-label factors: not shared across variants
    return out


def generate(args):
    """Train a phenotype-conditional generator, sample cases/controls, score it (issue 7)."""
    out = {"machine": f"{platform.machine()} {os.cpu_count()} cores, python {platform.python_version()}",
           "genosynth": __version__, "args": vars(args)}
    if args.only_805:
        out["1000g_805"] = generate_805(args)
        out["scenarios"] = {}
        return out
    cohort, _ = simulate(args)
    truth = cohort.meta["truth"]
    a, b, t = split(cohort, args.seed, (args.n_train, args.n_train))
    sel = select_snps(a, k=args.k, seed=args.seed)
    causal = [row["id"] for row in truth["causal"] if row["id"] in set(sel.ids)]
    a_sel = a.subset(variants=np.sort(np.asarray(sel.indices)))
    n_cases = int(np.nansum(a.samples["phenotype"].to_numpy()))
    out["simulated"] = {"samples": cohort.n_samples, "variants": cohort.n_variants, "selected": len(sel.ids),
                        "causal_selected": len(causal), "split": [a.n_samples, b.n_samples, t.n_samples],
                        "train_cases": n_cases, "realised_h2": round(truth["realised_h2"], 3)}
    model, cfg, secs = train_phenotype_model(a_sel, args)
    out["train"] = {"seconds": secs, "vae_epochs": args.vae_epochs, "dit_epochs": args.dit_epochs,
                    "metrics": {k: round(v, 4) for k, v in model.meta["metrics"].items()},
                    "case_fraction": model.case_fraction}
    out["scenarios"] = {}
    for name, synthetic in {"copy": a_sel, "independent real": b.subset(variants=np.sort(np.asarray(sel.indices)))}.items():
        out["scenarios"][name] = measure(a, t, synthetic, sel.ids, causal or None, alpha=args.alpha, seed=args.seed)
        out["scenarios"][name]["gwas_hits"] = hit_replication(a_sel, synthetic, args.alpha)
    variants = calibration_variants(model, a_sel, cfg, args.seed, rows=args.calibration_rows)
    if args.only_best:
        keep = "calibration per (label, phenotype) from" if args.calibration_rows else "calibration per ("
        variants = {k: v for k, v in variants.items() if k.startswith(keep)}
    sweep = [(g, pg) for g in args.guidance for pg in (args.pheno_guidance or [None])]
    for name, m in variants.items():
        for g, pg in sweep if name.startswith("calibration per (") else sweep[:1]:
            t0 = time.perf_counter()
            k = args.synthetic_multiple  # synthetic people per training person
            syn = m.sample(cases=round(k * n_cases), controls=round(k * (a.n_samples - n_cases)),
                           seed=args.seed + 1, guidance=g, pheno_guidance=pg, **sampling_options(args))
            row = measure(a, t, syn, sel.ids, causal or None, alpha=args.alpha, seed=args.seed)
            row["sample_seconds"] = round(time.perf_counter() - t0, 1)
            row["gwas_hits"] = hit_replication(a_sel, syn, args.alpha)
            size = "" if k == 1 else f", {k:g}x people"
            scale = f"guidance {g}" if pg is None else f"guidance {g} (ancestry) / {pg} (phenotype)"
            out["scenarios"][f"genosynth, {name}, {scale}{size}"] = row
            print(name, g, pg, json.dumps(row), file=sys.stderr)
    if not args.skip_805 and os.path.exists(SHARED_805):
        out["1000g_805"] = generate_805(args)
    return out


def generate_805(args):
    """The 805-SNP flow: AFR cases vs EUR controls, generator on all 805 SNPs, scored on the selection."""
    cc, (a, b, t) = case_control_805(args)
    sel = select_snps(a, k=args.k_805, seed=args.seed)
    n_cases = int(np.nansum(a.samples["phenotype"].to_numpy()))
    model, cfg, secs = train_phenotype_model(a, args, label_column="pop")
    res = {"cases": args.case_pop, "controls": args.control_pop, "label_column": "pop", "samples": cc.n_samples,
           "split": [a.n_samples, b.n_samples, t.n_samples], "selected": len(sel.ids), "train_seconds": secs,
           "scenarios": {}}
    all_ids = list(a.variants["id"])
    syn = {"copy": a, "independent real": b}
    for g in args.guidance:
        syn[f"genosynth, guidance {g}"] = model.sample(cases=n_cases, controls=a.n_samples - n_cases,
                                                      seed=args.seed + 1, guidance=g, **sampling_options(args))
    for name, synthetic in syn.items():
        res["scenarios"][name] = measure(a, t, synthetic, sel.ids, all_ids, alpha="bonferroni",
                                         methods=("logistic_l2",), seed=args.seed)
        print("805", name, json.dumps(res["scenarios"][name]), file=sys.stderr)
    return res


def markdown(out) -> str:
    lines = ["| synthetic cohort | TRTR AUC (L2) | TSTR AUC (L2) | gap | TRTR AUC (C+T) | TSTR AUC (C+T) | gap | "
             "causal found real / both | recovery at alpha | replication (0.05/found) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, row in out["scenarios"].items():
        l2, ct, rec = row["logistic_l2"], row["clumped_beta"], row["recovery"]
        lines.append(f"| {name} | {l2['trtr']:.3f} | {l2['tstr']:.3f} | {l2['gap']:+.3f} | {ct['trtr']:.3f} | "
                     f"{ct['tstr']:.3f} | {ct['gap']:+.3f} | {rec['found_real']} / {rec['found_both']} | "
                     f"{rec['recovery']:.2f} | {rec['replication']:.2f} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("mode", choices=("baseline", "simulate", "evaluate", "generate"))
    p.add_argument("--n-train", type=int, default=3000, help="people in the training cohort A (and in B)")
    p.add_argument("--n-holdout", type=int, default=1000, help="people in the real holdout T")
    p.add_argument("--repeats", type=int, default=1, help="re-splits for the sampling noise of 'independent real'")
    p.add_argument("--length-mb", type=float, default=5.0, help="simulated region (Mb)")
    p.add_argument("--causal", type=int, default=30)
    p.add_argument("--h2", type=float, default=0.5)
    p.add_argument("--prevalence", type=float, default=0.3)
    p.add_argument("--k", type=int, default=1024)
    p.add_argument("--alpha", type=float, default=5e-8, help="GWAS significance for causal recovery")
    p.add_argument("--epsilon", type=float, default=1.0, help="budget of the DP selection scenario")
    p.add_argument("--delta", type=float, default=1e-6)
    p.add_argument("--case-pop", default="AFR")
    p.add_argument("--control-pop", default="EUR")
    p.add_argument("--k-805", type=int, default=100)
    p.add_argument("--skip-805", action="store_true")
    p.add_argument("--only-805", action="store_true", help="generate: run only the 1000 Genomes part")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--vae-epochs", type=int, default=15, help="generate: VAE epochs")
    p.add_argument("--dit-epochs", type=int, default=60, help="generate: DiT epochs")
    p.add_argument("--guidance", type=float, nargs="+", default=[1.0, 2.0], help="generate: CFG scales to sample")
    p.add_argument("--threads", type=int, default=2, help="generate: torch threads")
    p.add_argument("--pheno-guidance", type=float, nargs="+", default=None,
                   help="generate: separate phenotype guidance scales to sweep with each --guidance (default: joint)")
    p.add_argument("--synthetic-multiple", type=float, default=1.0,
                   help="generate: synthetic people per training person (cases and controls alike)")
    p.add_argument("--save", help="generate: write the trained generator's checkpoint here")
    p.add_argument("--calibration-rows", type=int, default=None,
                   help="generate: also re-calibrate per (label, phenotype) with this many rows per group")
    p.add_argument("--only-best", action="store_true", help="generate: skip the per-label / no-calibration ablations")
    p.add_argument("--model", help="generate: score this checkpoint instead of training (simulated part)")
    p.add_argument("--corr-guidance", default=None, help="generate: decoding (default: the model's)")
    p.add_argument("--data", help="folder written by 'simulate' (evaluate mode)")
    p.add_argument("--synthetic-bfile")
    p.add_argument("--synthetic-vcf")
    p.add_argument("--synthetic-samples")
    p.add_argument("--out", help="JSON results (baseline/evaluate) or data folder (simulate)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    if args.mode == "simulate":
        if not args.out:
            p.error("simulate needs --out DIR")
        write_data(args)
        return 0
    if args.mode == "evaluate":
        if not args.data or not (args.synthetic_bfile or args.synthetic_vcf):
            p.error("evaluate needs --data DIR and --synthetic-bfile or --synthetic-vcf")
        out = evaluate(args)
    elif args.mode == "generate":
        out = generate(args)
    else:
        out = baseline(args)
    out["total_seconds"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(out, indent=1, default=str)
    print(text)
    if args.mode in ("baseline", "generate"):
        print(markdown(out))
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
