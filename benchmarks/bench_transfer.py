"""A public model adapted under DP (``train --epsilon E --from-model PUBLIC.pt``) against its two baselines.

Protocol (issue 19) on the shared 1000 Genomes 805-SNP data, split 80/20 stratified by super
population (:func:`bench_privacy.load_split`, seed 0):

- *public* panel: the AFR, EUR and EAS people of the 80 % split, less a minority (``--minority``,
  default 15 %) of each that goes to the private cohort;
- *private* cohort: the AMR and SAS people of the 80 % split plus that minority, so it has two
  populations the public panel lacks; *held-out private* people: the AMR and SAS people of the
  20 % split plus the same fraction of its AFR, EUR and EAS people, never trained on.

Rows: ``public`` (a plain model of the public panel, no private data: people of its labels as in
the private mix, people of AMR and SAS drawn from its own label mix and relabelled), ``scratch`` (today's ``--epsilon``, from scratch),
``adapt`` (``--epsilon --from-model``: the public model's VAE, DiT start and LD band, adapted under
DP). Each synthetic cohort has as many people as the private training cohort and is evaluated
against it and the held-out private people (``genosynth.evaluate``, label ``super_pop``); the
``new_*`` columns repeat AF r and within-population near LD r on the AMR and SAS people only (the
populations the public panel lacks), ``old_*`` on the private AFR, EUR and EAS minority.
The small DP model of ``bench_privacy.py`` (its defaults)::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_transfer.py --epsilon 10 --threads 1

One JSON per row in ``benchmarks/results/transfer_{row}_eps{E}.json`` and a table on stdout.
Nothing here is released: evaluation compares with the real cohort (custodian-side only).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_privacy import RESULTS, add_model_options, config, load_split  # noqa: E402

PUBLIC_POPS = ("AFR", "EAS", "EUR")
KEYS = ("af_r", "ld_r_near_within", "aats", "mia_auc", "identical_to_train", "tstr_super_pop_lr")


def split_panels(train, holdout, *, minority: float, seed: int):
    """``(public, private_train, private_holdout)`` as in the module docstring."""
    rng = np.random.default_rng(seed)

    def pick(cohort):
        pops = cohort.samples["super_pop"].to_numpy()
        private = ~np.isin(pops, PUBLIC_POPS)
        for pop in PUBLIC_POPS:
            idx = np.flatnonzero(pops == pop)
            private[rng.choice(idx, size=int(round(minority * idx.size)), replace=False)] = True
        return private

    p_train, p_hold = pick(train), pick(holdout)
    return train.subset(samples=~p_train), train.subset(samples=p_train), holdout.subset(samples=p_hold)


def scores(real, holdout, synthetic, seed: int) -> dict:
    """The KEYS of ``genosynth.evaluate`` and AF r / within LD r on the AMR and SAS people only."""
    from genosynth.evaluate import evaluate, summary

    res = evaluate(real, holdout, {"g": synthetic}, label_column="super_pop", seed=seed)
    s = summary(res, "g")
    out = {k: s.get(k) for k in KEYS}
    for part, new in (("new", True), ("old", False)):  # AMR + SAS; the minority of AFR, EUR, EAS
        sub = [c.subset(samples=np.isin(c.samples["super_pop"].to_numpy(), PUBLIC_POPS) != new)
               for c in (real, holdout, synthetic)]
        sn = summary(evaluate(*sub[:2], {"g": sub[2]}, label_column="super_pop", seed=seed), "g") \
            if sub[2].n_samples >= 10 else {}
        out.update({f"{part}_af_r": sn.get("af_r"), f"{part}_ld_r_near_within": sn.get("ld_r_near_within")})
    return out


def privacy_config(eps: float, args):
    from genosynth.training.dp_plan import PrivacyConfig

    return PrivacyConfig(epsilon=eps, delta=args.delta, batch_size=args.batch_size, latent_clip=args.latent_clip,
                         stage1_epochs=args.stage1_epochs, correlation_window=args.corr_window,
                         max_grad_norm=args.max_grad_norm, frequency_clip=args.frequency_clip,
                         ancestry_clip=args.ancestry_clip)


def run_row(row: str, eps: float, args, public_path: str, private, holdout) -> dict:
    """Train (or load) one row's model, sample, evaluate; the row's record."""
    from genosynth.sampling.generator import Generator
    from genosynth.training.private import train_private
    from genosynth.training.transfer import align_to_model, load_public_model, public_frequencies

    cfg = config(args)
    t0 = time.perf_counter()
    n = private.n_samples
    if row == "public":
        model = Generator.load(public_path)
        train_s = None
    else:
        payload = None
        if row == "adapt":
            payload = load_public_model(public_path)
            private, _ = align_to_model(private, Generator.from_payload(payload).variants, log=print,
                                        fill=lambda: public_frequencies(payload))
        save = f"{args.save}/{row}_eps{eps:g}{args.tag}.pt" if args.save else None
        model = train_private(private, config=cfg, privacy=privacy_config(eps, args), public_model=payload, log=print,
                              checkpoint=save)
        train_s = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    if row == "public":
        synthetic = public_sample(model, private, seed=args.seed + 1)
    else:
        synthetic = model.sample(n, seed=args.seed + 1)
    sample_s = round(time.perf_counter() - t0, 1)
    metrics = scores(private, holdout, synthetic, args.seed)
    metrics["epsilon"] = (model.privacy or {}).get("epsilon")
    return {"row": row, "target_epsilon": None if row == "public" else eps, "delta": args.delta, "metrics": metrics,
            "train_s": train_s, "sample_s": sample_s, "private_train_people": n,
            "private_holdout_people": holdout.n_samples, "threads": torch.get_num_threads(),
            "privacy": model.privacy, "command": " ".join(sys.argv)}


def public_sample(model, private, *, seed: int):
    """The public model alone, with the private cohort's label mix: its own labels as they are, people of
    labels it lacks drawn with its training mix and relabelled (label counts are the only private input,
    and only the benchmark uses them)."""
    want = private.samples["super_pop"].value_counts().to_dict()
    new = {lab: int(c) for lab, c in want.items() if lab not in model.vocabulary}
    extra = sum(new.values())
    mix = np.array([model.label_mix[lab] for lab in model.vocabulary])
    spread = np.floor(mix / mix.sum() * extra).astype(int)
    spread[0] += extra - spread.sum()
    counts = {lab: int(want.get(lab, 0)) + int(k) for lab, k in zip(model.vocabulary, spread)}
    synthetic = model.sample(labels=counts, seed=seed)
    labels = synthetic.samples["super_pop"].to_numpy().copy()
    rng = np.random.default_rng(seed)
    pool = np.concatenate([rng.choice(np.flatnonzero(labels == lab), size=k, replace=False)
                           for lab, k in zip(model.vocabulary, spread) if k > 0] or [np.zeros(0, dtype=int)])
    rng.shuffle(pool)
    start = 0
    for lab, c in new.items():
        labels[pool[start:start + c]] = lab
        start += c
    synthetic.samples["super_pop"] = labels
    return synthetic


def public_model(args, public) -> str:
    """Train (or reuse) the plain public model; its checkpoint path."""
    from genosynth.training.plain import train_generator

    path = args.public_model or str(Path(tempfile.gettempdir()) / f"genosynth_transfer_public_seed{args.seed}.pt")
    if not Path(path).exists():
        t0 = time.perf_counter()
        train_generator(public, config=config(args), seed=args.seed, checkpoint=path)
        print(f"public model: {public.n_samples} people, {time.perf_counter() - t0:.1f} s", flush=True)
    return path


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epsilon", nargs="+", default=["10"])
    p.add_argument("--rows", nargs="+", default=["public", "scratch", "adapt"], choices=("public", "scratch", "adapt"))
    p.add_argument("--delta", type=float, default=1e-5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--minority", type=float, default=0.15, help="fraction of AFR/EUR/EAS people made private")
    p.add_argument("--public-model", default="",
                   help="public checkpoint: reused when it exists, else trained there (default: a file in the temp dir)")
    add_model_options(p)
    p.add_argument("--frequency-clip", type=float, default=1.0,
                   help="per-person bound of the frequency release, fraction of sqrt(V) (1 = no clipping)")
    p.add_argument("--ancestry-clip", type=float, default=3.0,
                   help="per-person bound of the ancestry-spread coordinates, in sampling-noise norms")
    p.add_argument("--tag", default="")
    p.add_argument("--save", default="", help="folder to keep the DP checkpoints in (custodian-side)")
    args = p.parse_args(argv)
    # sampling options of bench_privacy.config (its defaults)
    args.mode, args.size, args.guidance, args.temperature, args.pairing = "auto", "small", 1.0, 1.0, "random"
    args.corr_guidance, args.no_ancestry_spread = "latent+copula", False
    return args


def main(argv=None) -> int:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    train, holdout = load_split(args.seed)
    public, private, private_holdout = split_panels(train, holdout, minority=args.minority, seed=args.seed)
    print(f"public {public.n_samples}, private {private.n_samples}, held-out private {private_holdout.n_samples} "
          "people", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = public_model(args, public)
    for e in args.epsilon:
        for row in args.rows:
            if row == "public" and e != args.epsilon[0]:
                continue
            out = run_row(row, float(e), args, path, private, private_holdout)
            (RESULTS / f"transfer_{row}_eps{e}{args.tag}.json").write_text(json.dumps(out, indent=2, default=str))
            m = out["metrics"]
            print(f"{row} eps {e}: " + ", ".join(f"{k} {m[k]}" for k in m) + f"; train {out['train_s']} s",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
