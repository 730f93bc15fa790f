"""Denoisers of the DP per-label frequency release, scored without training (seconds per row).

The release is drawn exactly as ``train --epsilon`` draws it (:func:`release_label_frequencies`
with the noise multiplier that :func:`plan_private` gives the ``allele_frequencies`` event for the
``bench_privacy.py`` configuration), on the same 80/20 split of the 805-SNP data. Each denoised
release is scored by drawing as many synthetic people as training people, every SNP independently
from its label's released frequency (labels drawn from the released mix), then:

* ``tstr``: super-population accuracy on the real holdout of a logistic regression trained on
  them (20 PCs fitted on the synthetic set, as ``genosynth.evaluate``);
* ``aats`` (``aa_real``, ``aa_synthetic``): nearest-neighbour adversarial accuracy against train;
* ``rmse``: against the exact per-label training frequencies (a diagnostic; nothing here is released).

The trained DP model follows its per-label frequencies closely, so this proxy predicts its TSTR and
AATS (RESULTS.md, "Differential privacy"). One JSON, ``benchmarks/results/dp_frequency_denoise.json``::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_dp_frequencies.py --epsilon 10 3 --reps 5
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

SPECS = ("shrink:1", "low_rank:1", "low_rank:0.87", "low_rank:0.8", "low_rank:0.75")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epsilon", nargs="+", type=float, default=[10.0, 3.0])
    p.add_argument("--labels", nargs="+", default=["pop", "super_pop"])
    p.add_argument("--specs", nargs="+", default=list(SPECS), help="DENOISER:CLIP_FRACTION")
    p.add_argument("--reps", type=int, default=5, help="noise draws per row (the spread of one is large)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "dp_frequency_denoise.json"))
    args = p.parse_args(argv)

    import bench_privacy as bp
    from genosynth.stats.frequency import allele_freq
    from genosynth.evaluate.attacks import aats
    from genosynth.evaluate.structure import PCAFeatures, accuracy_table
    from genosynth.training.dp_plan import PrivacyConfig, plan_private
    from genosynth.privacy.releases import release_label_frequencies

    train, holdout = bp.load_split(args.seed)
    g = train.genotypes()  # (N, V) int8
    g_hold = holdout.genotypes()
    n, v = g.shape
    fill = 2 * allele_freq(g)
    y_hold = holdout.labels("super_pop")
    cfg_args = argparse.Namespace(mode="auto", vae_epochs=15, dit_epochs=30, vae_lr=2e-3, dit_lr=1e-3, guidance=1.0,
                                  temperature=1.0, pairing="random", corr_guidance="latent+copula", size="small")
    rows = []
    for eps in args.epsilon:
        pc = PrivacyConfig(epsilon=eps, delta=1e-5, batch_size=512)
        z = plan_private(train, config=bp.config(cfg_args), privacy=pc)[0]["allele_frequencies"]
        for column in args.labels:
            names = train.labels(column)
            vocab, y = np.unique(names, return_inverse=True)  # (L,), (N,)
            n_labels = len(vocab)
            super_of = np.array([train.labels("super_pop")[names == lab][0] for lab in vocab])  # (L,)
            sp_names = sorted(set(super_of))
            parents = np.array([sp_names.index(s) for s in super_of]) if column != "super_pop" else None
            exact = np.stack([g[y == k].mean(0) / 2 for k in range(n_labels)])  # (L, V), diagnostics only
            for spec in args.specs:
                denoiser, clip = spec.split(":")
                t0 = time.perf_counter()
                reps = []
                for r in range(args.reps):
                    rel = release_label_frequencies(g.astype(np.float64), y, n_labels, noise_multiplier=z,
                                                    rng=np.random.default_rng([args.seed, 100 + r]),
                                                    parents=parents, denoiser=denoiser, clip_fraction=float(clip))
                    rng = np.random.default_rng([args.seed, 1000 + r])
                    draw = rng.choice(n_labels, size=n, p=rel["mix"])  # (N,)
                    syn = (rng.random((n, 2, v)) < rel["freq"][draw][:, None, :]).sum(1).astype(np.int8)  # (N, V)
                    feats = PCAFeatures(syn, fill=fill, n_pcs=20, seed=args.seed)
                    acc = accuracy_table(feats.transform(syn), super_of[draw], feats.transform(g_hold), y_hold,
                                         kinds=("lr",), rf_trees=1, seed=args.seed, threads=1)["lr"]
                    a = aats(g.astype(np.float32), syn.astype(np.float32))
                    reps.append({"tstr": acc, "aats": a["aats"], "aa_real": a["aa_real"],
                                 "aa_synthetic": a["aa_synthetic"],
                                 "rmse": float(np.sqrt(((rel["freq"] - exact) ** 2).mean())),
                                 "rank": rel.get("rank")})
                mean = {k: float(np.mean([x[k] for x in reps])) for k in ("tstr", "aats", "aa_real", "aa_synthetic",
                                                                         "rmse")}
                row = {"epsilon": eps, "z": z, "labels": column, "denoiser": denoiser, "clip_fraction": float(clip),
                       "mean": mean, "reps": reps, "seconds": round(time.perf_counter() - t0, 1)}
                rows.append(row)
                print(f"eps {eps:g} {column:9s} {spec:14s} TSTR {mean['tstr']:.4f} AATS {mean['aats']:.3f} "
                      f"(real {mean['aa_real']:.3f}, syn {mean['aa_synthetic']:.3f}) RMSE {mean['rmse']:.4f}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": " ".join(sys.argv), "split_seed": args.seed, "reps": args.reps,
                               "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
