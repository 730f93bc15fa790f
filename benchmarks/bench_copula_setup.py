"""Cost of one label's copula factor at chromosome scale (issue 17 item 1: the setup at the end of training).

Training ends by solving each label's copula factor for the model's default request
(``sampling/factors.py``): the residual correlations of every SNP pair in the band
(:func:`genosynth.sampling.ld_guidance.solve_residual_band`) and the banded Markov factor that realises
them (:func:`~genosynth.sampling.ld_guidance.banded_factor`). Their cost depends on the band and on how
sharp the decoder's marginals are, not on the network, so no trained model is needed: the band is the
plain (shrunk) correlation prior of one label of the cohort, as training fits it, and the calibration
rows are ``--rows`` of that label's real haplotypes with ``--sharpness`` of their probability on the
allele carried (a well-trained decoder's marginals are that sharp; with them most SNP windows need the
ridge of ``banded_factor``, the costly case). Times both steps on ``--threads`` threads and writes
them with a digest of the results (so two code versions can be compared for equality to rounding).

Usage (cohort from ``benchmarks/make_scale_cohorts.sh``, FORMAT=vcf)::

    python benchmarks/bench_copula_setup.py --vcf /tmp/scale/chr1_100k_phased.vcf.gz \\
        --samples /tmp/scale/chr1_100k_phased.samples.tsv --json benchmarks/results/copula_setup_100k.json
    PYTHONPATH=OLD/src python benchmarks/bench_copula_setup.py ... --json old.json   # another version
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch


def setup_inputs(vcf: str, samples: str, *, label_index: int, rows: int, sharpness: float):
    """The label's copula band (V, w), its partner counts (V,) and calibration probabilities (rows, 2, V)."""
    from genosynth.io import read_cohort
    from genosynth.models.config import config_for
    from genosynth.models.ld_prior import CorrelationPrior, CorrGuideConfig, previous_counts
    from genosynth.training.ld_fit import plain_correlation_prior

    cohort = read_cohort(vcf=vcf, samples=samples)
    if not cohort.phased:
        raise SystemExit("give a phased VCF: the calibration rows are haplotypes")
    cfg = config_for("auto", cohort.alleles.shape[1])
    vocab = sorted(cohort.samples[cfg.label_column].unique())
    prior = CorrelationPrior.from_state_dict(plain_correlation_prior(cohort, cfg, vocab))
    w = int(prior.info.get("copula_window", prior.window))
    guide = CorrGuideConfig(window=w, latent_window=prior.window, method="latent+copula")
    band = prior.band(label_index)[:, :w]  # (V, w)
    v = cohort.variants
    kprev = previous_counts(band.shape[0], w, chrom=v["chrom"].to_numpy(), pos=v["pos"].to_numpy(),
                            max_bp=guide.max_bp)  # (V,)
    labels = np.repeat(cohort.samples[cfg.label_column].to_numpy(), cohort.ploidy)
    x = cohort.alleles[labels == vocab[label_index]][:rows].astype(np.float64)  # (rows, V)
    p1 = torch.from_numpy((1 - sharpness) / 2 + sharpness * x)
    return vocab[label_index], band, kprev, torch.stack([1 - p1, p1], 1), guide  # probs (rows, 2, V)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--vcf", required=True)
    p.add_argument("--samples", required=True)
    p.add_argument("--label-index", type=int, default=0, help="which label (sorted) to solve")
    p.add_argument("--rows", type=int, default=64, help="calibration rows (factor_rows gives 64 at 100,000 SNPs)")
    p.add_argument("--sharpness", type=float, default=0.94)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from genosynth.sampling.ld_guidance import banded_factor, solve_residual_band

    label, band, kprev, probs, guide = setup_inputs(args.vcf, args.samples, label_index=args.label_index,
                                                    rows=args.rows, sharpness=args.sharpness)
    t0 = time.perf_counter()
    resid = solve_residual_band(probs, band, kprev, quad_nodes=guide.quad_nodes, newton_iters=guide.newton_iters,
                                small=guide.small)
    t1 = time.perf_counter()
    beta, s, _ = banded_factor(resid, kprev, var_floor=guide.var_floor)
    t2 = time.perf_counter()
    rec = {"label": label, "snps": int(band.shape[0]), "window": int(band.shape[1]), "rows": int(probs.shape[0]),
           "sharpness": args.sharpness, "threads": args.threads, "load": os.getloadavg(),
           "solve_residual_band_s": t1 - t0, "banded_factor_s": t2 - t1,
           "digest": {"resid_abs_sum": float(np.abs(resid).sum()), "beta_abs_sum": float(np.abs(beta).sum()),
                      "s_sum": float(s.sum())}}
    text = json.dumps(rec, indent=1)
    print(text)
    if args.json:
        with open(args.json, "w") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
