"""Where a generator loses LD on the dense region: fidelity by pair distance, and against fresh real data.

The acceptance figure ``ld_r_near_within`` pools every SNP pair < 1 Mb apart. This diagnostic
splits it by distance and adds the figures that say what the pooled number hides:

* ``ld_by_distance``: the same within-population Pearson r (train vs set pair correlations,
  weighted by train people per population) for pairs 0-10 kb, 10-100 kb and 100 kb-1 Mb apart;
* ``ld_vs_holdout``: r between the set's pair correlations and the real **holdout's** (real people
  the generator never saw), mean over populations; ``real train`` is the reference value. A set
  that copies the training cohort's sampling noise gains on ``ld_r_near_within`` but not here;
* ``aats`` with its two halves, ``mia_auc`` (train subsample vs holdout by distance to the closest
  synthetic person), ``identical_to_train``.

Sets: the checkpoint's draws decoded plainly (``none``), with the copula only, with
``latent+copula`` restricted to the old 64-SNP band, with ``latent+copula`` over the checkpoint's
whole band, and (``--gaussian``) the DiT replaced by one Gaussian per label fitted to the training
latents (decoded plainly; the linear part of the latent distribution, for reference). Same
split as ``bench_generator.py quality`` (so ``--model`` takes its ``--save`` checkpoint)::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_generator.py quality --data sim3kx --threads 2 \\
        --vae-epochs 10 --dit-epochs 60 --kl-weight 1.0 --steps 50 --save /tmp/dense.pt
    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_dense_ld.py --data sim3kx --model /tmp/dense.pt --gaussian
    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_dense_ld.py --data sim3kx --ceiling   # a perfect generator

Writes ``benchmarks/results/dense_ld_<data><tag>.json`` and prints one JSON line per set.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_generator import REPO, ceiling_split, load  # noqa: E402

BINS_BP = ((0, 10_000), (10_000, 100_000), (100_000, 1_000_000))


class Scorer:
    """Figures of one synthetic set against real train and holdout (genotype counts, super_pop)."""

    def __init__(self, train, holdout, *, seed: int = 0):
        from genosynth.stats.frequency import allele_freq
        from genosynth.evaluate.fidelity import near_pairs

        self.gt = train.genotypes()
        self.gh = holdout.genotypes()
        self.lt, self.lh = train.labels("super_pop"), holdout.labels("super_pop")
        self.groups = sorted(set(self.lt.tolist()))
        self.fill = 2 * allele_freq(self.gt)
        self.i, self.j, _ = near_pairs(train.variants, window_bp=1_000_000, max_pairs=200_000,
                                       rng=np.random.default_rng(seed))
        pos = train.variants["pos"].to_numpy(dtype=np.int64)
        self.dist = np.abs(pos[self.j] - pos[self.i])
        self.rt = {g: self._r(self.gt[self.lt == g]) for g in self.groups}
        self.rh = {g: self._r(self.gh[self.lh == g]) for g in self.groups}
        self.weights = np.array([(self.lt == g).sum() for g in self.groups], dtype=np.float64)
        self.xt = self.gt.astype(np.float32)
        self.af = allele_freq(self.gt)
        self.rng = np.random.default_rng(seed)

    def _r(self, g: np.ndarray) -> np.ndarray:
        from genosynth.stats.ld import pair_correlations

        return pair_correlations(g, self.i, self.j, fill=self.fill)

    @staticmethod
    def _corr(a: np.ndarray, b: np.ndarray) -> float:
        ok = np.isfinite(a) & np.isfinite(b)
        return float(np.corrcoef(a[ok], b[ok])[0, 1])

    def score(self, cohort, *, real_holdout: bool = False) -> dict:
        """Figures of ``cohort``; ``real_holdout``: it is the holdout itself (LD figures only)."""
        from genosynth.evaluate import attacks as pv
        from genosynth.stats.frequency import allele_freq
        from genosynth.evaluate._arrays import nearest_distances

        gs, ls = cohort.genotypes(), cohort.labels("super_pop")
        rs = {g: self._r(gs[ls == g]) for g in self.groups}
        within = lambda m: float(np.average([self._corr(self.rt[g][m], rs[g][m]) for g in self.groups],  # noqa: E731
                                            weights=self.weights))
        out = {"af_r": self._corr(self.af, allele_freq(gs)), "ld_r_near_within": within(np.ones(len(self.i), bool))}
        out["ld_by_distance"] = {f"{a // 1000}-{b // 1000} kb": within((self.dist > a) & (self.dist <= b))
                                 for a, b in BINS_BP}
        if real_holdout:
            return out
        out["ld_vs_holdout"] = float(np.mean([self._corr(rs[g], self.rh[g]) for g in self.groups]))
        n = min(len(gs), len(self.gt))
        xs = gs[np.sort(self.rng.choice(len(gs), n, replace=False))].astype(np.float32) if len(gs) > n \
            else gs.astype(np.float32)
        out.update(pv.aats(self.xt, xs))
        members = self.xt[self.rng.choice(len(self.xt), len(self.gh), replace=False)]
        out["mia_auc"] = pv.mia_auc(nearest_distances(members, xs), nearest_distances(self.gh.astype(np.float32), xs))
        out["identical_to_train"] = pv.identical_rows(gs, self.gt)
        return out

    def reference(self) -> dict:
        """The real train's own ``ld_vs_holdout`` (the value a copy of train would get)."""
        return {"ld_vs_holdout": float(np.mean([self._corr(self.rt[g], self.rh[g]) for g in self.groups]))}


def gaussian_prior_set(model, train, n: int, seed: int):
    """People whose latents come from one Gaussian per label fitted to the training posterior draws."""
    from genosynth.cohort import Cohort, make_samples
    from genosynth.models.vae import sample_alleles

    gen = torch.Generator().manual_seed(seed)
    index = {v: k for k, v in enumerate(model.vocabulary)}
    y = torch.tensor(np.repeat([index[v] for v in train.labels(model.config.label_column)], 2))  # (R,)
    with torch.no_grad():
        mu, logvar = model.vae.encode(torch.from_numpy(np.ascontiguousarray(train.alleles)).long())  # (R, C, T)
        z = (mu + torch.randn(mu.shape, generator=gen) * (0.5 * logvar).exp()).flatten(1).double()  # (R, D)
    counts = model.label_mix
    rows, labels = [], []
    for k, v in enumerate(model.vocabulary):
        zk = z[y == k]
        chol = torch.linalg.cholesky(torch.cov(zk.T) + 1e-6 * torch.eye(zk.shape[1], dtype=torch.float64))
        people = int(round(counts[v] * n))
        draw = zk.mean(0) + torch.randn(2 * people, zk.shape[1], generator=gen, dtype=torch.float64) @ chol.T
        with torch.no_grad():
            logits = model._logits(draw.float().reshape(2 * people, *mu.shape[1:]), torch.full((2 * people,), k))
        rows.append(sample_alleles(logits, rng=gen).numpy())
        labels += [v] * people
    samples = make_samples([f"g{k:07d}" for k in range(len(labels))], super_pop=np.array(labels, dtype=object))
    return Cohort(alleles=np.concatenate(rows), variants=train.variants, samples=samples, phased=True, ploidy=2)


def main(argv=None) -> int:
    from genosynth.models.ld_prior import CorrelationPrior
    from genosynth.evaluate import split_train_holdout
    from genosynth.sampling.generator import Generator

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="sim3kx", choices=("sim", "sim3k", "sim3kx"))
    p.add_argument("--model", help="checkpoint of bench_generator.py quality --save (same --data/--seed)")
    p.add_argument("--ceiling", action="store_true",
                   help="instead of a model: a fresh real sample of the training size (bench_generator.py ceiling's "
                        "split of one larger simulation; --data sim3k or sim3kx)")
    p.add_argument("--seed", type=int, default=0, help="simulation and split seed (as in bench_generator.py)")
    p.add_argument("--sample-seed", type=int, default=1)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--methods", default="none,copula,latent+copula@64,latent+copula")
    p.add_argument("--gaussian", action="store_true", help="also the per-label Gaussian prior set")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tag", default="")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.ceiling == bool(args.model):
        p.error("give --model CHECKPOINT or --ceiling")
    if args.ceiling:  # as bench_generator.py ceiling --people 3000 [--recent-expansion]
        if args.data not in ("sim3k", "sim3kx"):
            p.error("--ceiling needs --data sim3k or sim3kx")
        _, train, holdout, fresh = ceiling_split(3000, args.seed, recent_expansion=args.data == "sim3kx")
    else:
        cohort = load(args.data, args.seed)
        train, holdout = split_train_holdout(cohort, holdout_fraction=0.2, stratify="super_pop", seed=args.seed)
    scorer = Scorer(train, holdout, seed=args.seed)
    out = {"data": args.data, "seed": args.seed, "model": args.model, "sample_seed": args.sample_seed,
           "steps": args.steps, "reference": {"real train": scorer.reference()}, "sets": {}}
    out["sets"]["real holdout"] = scorer.score(holdout, real_holdout=True)
    print(json.dumps({"set": "real holdout", **out["sets"]["real holdout"]}), flush=True)
    if args.ceiling:
        out["sets"]["fresh real sample"] = scorer.score(fresh)
        print(json.dumps({"set": "fresh real sample", **out["sets"]["fresh real sample"]}), flush=True)
    for method in ([] if args.ceiling else args.methods.split(",")):
        model = Generator.load(args.model)
        name, _, band = method.partition("@")
        prior = model.corr_prior
        if band and prior is not None:  # the decoding of a checkpoint whose stored band is that narrow
            w = min(int(band), prior.window)
            model.corr_prior = CorrelationPrior(bands=prior.bands[:, :, :w], labels=prior.labels, window=w,
                                                private=prior.private, info={**prior.info, "copula_window": w})
        t0 = time.perf_counter()
        syn = model.sample(train.n_samples, seed=args.sample_seed, steps=args.steps, corr_guidance=name)
        res = {**scorer.score(syn), "sample_s": round(time.perf_counter() - t0, 1)}
        out["sets"][method] = res
        print(json.dumps({"set": method, **res}), flush=True)
    if args.gaussian and not args.ceiling:
        model = Generator.load(args.model)
        res = scorer.score(gaussian_prior_set(model, train, train.n_samples, args.sample_seed))
        out["sets"]["gaussian prior, none"] = res
        print(json.dumps({"set": "gaussian prior, none", **res}), flush=True)
    out["command"] = "python benchmarks/bench_dense_ld.py " + " ".join(sys.argv[1:] if argv is None else argv)
    what = f"{args.data}_ceiling" if args.ceiling else args.data
    path = REPO / "benchmarks" / "results" / f"dense_ld_{what}{args.tag}.json"
    path.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
