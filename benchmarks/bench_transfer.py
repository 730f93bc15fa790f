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
populations the public panel lacks), ``old_*`` on the private AFR, EUR and EAS minority;
``aats_holdout`` is AATS against the held-out people (a model that copies its members' own
frequencies scores lower ``aats`` than ``aats_holdout``).
Two cheap reference rows (no network): ``exact`` (independent SNPs drawn from the *exact* per-label
frequencies of the private training people, label counts exact: no DP, what a perfect frequency
model without LD scores) and ``released`` (independent SNPs drawn from one DP frequency release made
as ``adapt`` makes it: same noise multiplier, clip and denoising towards the public model; the floor
the adapted model's frequencies set).
The small DP model of ``bench_privacy.py`` (its defaults)::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_transfer.py --epsilon 10 --threads 1

*Several splits* (``--split-seeds 0 1 2 3 4``): the whole protocol is repeated on each split seed
(the 80/20 split and the minority draw), with a public model trained per split (a public model of
one split has seen people who are private or held out in another, so it is never reused across
splits; ``--public-model`` then needs a ``{split}`` field). With 173 held-out people one split's MIA
AUC has a sampling SE of about 0.02, shared by every row of that split; the summary gives each row's
mean and SE over splits and, per split, the MIA AUC minus that of the ``public`` row (paired: the
public model saw no private person, so members and held-out people are exchangeable for it and its
AUC is 0.5 in expectation over splits).

One JSON per row (and split) in ``benchmarks/results/transfer_{row}_eps{E}{tag}[_split{S}].json``,
with several splits a ``transfer_summary_eps{E}{tag}.json``, and a table on stdout. Nothing here is
released: evaluation compares with the real cohort (custodian-side only).
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
KEYS = ("af_r", "ld_r_near_within", "aats", "aats_holdout", "mia_auc", "identical_to_train",
        "tstr_super_pop_lr")
ROWS = ("public", "scratch", "adapt", "exact", "released")


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
                         ancestry_clip=args.ancestry_clip, frequency_centre=args.frequency_centre)


def run_row(row: str, eps: float, args, public_path: str, private, holdout) -> dict:
    """Train (or load) one row's model, sample, evaluate; the row's record."""
    from genosynth.sampling.generator import Generator
    from genosynth.training.private import train_private
    from genosynth.training.transfer import align_to_model, load_public_model, public_frequencies

    cfg = config(args)
    t0 = time.perf_counter()
    n = private.n_samples
    model, train_s = None, None
    if row == "public":
        model = Generator.load(public_path)
    elif row in ("scratch", "adapt"):
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
    elif row in ("exact", "released"):
        synthetic, spent = frequency_sample(row, private, eps, args, public_path, seed=args.seed + 1)
    else:
        synthetic = model.sample(n, seed=args.seed + 1)
    sample_s = round(time.perf_counter() - t0, 1)
    metrics = scores(private, holdout, synthetic, args.seed)
    privacy = model.privacy if model is not None else (spent if row == "released" else None)
    metrics["epsilon"] = (privacy or {}).get("epsilon")
    return {"row": row, "target_epsilon": None if row in ("public", "exact") else eps, "delta": args.delta,
            "metrics": metrics, "train_s": train_s, "sample_s": sample_s, "private_train_people": n,
            "private_holdout_people": holdout.n_samples, "threads": torch.get_num_threads(),
            "privacy": privacy, "command": " ".join(sys.argv)}


def independent_people(private, freq: np.ndarray, vocabulary: list, counts: np.ndarray, *, seed: int):
    """Phased people with independent alleles: ``counts[l]`` people of ``vocabulary[l]`` drawn from ``freq[l]``.

    freq : float, shape (L, V) ALT frequencies; counts : int, shape (L,).
    """
    from genosynth.cohort import Cohort, make_samples

    rng = np.random.default_rng(seed)
    labels = np.repeat(np.asarray(vocabulary, dtype=object), counts)  # (N,)
    p = np.repeat(np.clip(freq, 0.0, 1.0), counts, axis=0)  # (N, V)
    alleles = (rng.random((2, *p.shape)) < p).astype(np.int8).transpose(1, 0, 2).reshape(-1, p.shape[1])  # (2N, V)
    samples = make_samples([f"indep_{k}" for k in range(len(labels))], super_pop=labels)
    return Cohort(alleles=alleles, variants=private.variants, samples=samples, phased=True, ploidy=2, meta={})


def frequency_sample(row: str, private, eps: float, args, public_path: str, *, seed: int):
    """``exact`` or ``released`` (module docstring): independent people and the release's privacy report (or None)."""
    from genosynth.privacy import PrivacyAccountant
    from genosynth.privacy.releases import release_label_frequencies
    from genosynth.sampling.generator import Generator
    from genosynth.training.dp_plan import plan_private
    from genosynth.training.transfer import adapt_config, align_to_model, load_public_model, public_frequencies
    from genosynth.training.transfer import public_label_frequencies

    labels = private.samples["super_pop"].to_numpy()
    vocabulary = sorted(set(labels))
    y = np.array([vocabulary.index(lab) for lab in labels])
    g = private.genotypes().astype(np.float64)  # (N, V) custodian-side only
    n = private.n_samples
    if row == "exact":
        freq = np.stack([g[y == k].mean(axis=0) / 2.0 for k in range(len(vocabulary))])  # (L, V)
        return independent_people(private, freq, vocabulary, np.bincount(y, minlength=len(vocabulary)),
                                  seed=seed), None
    payload = load_public_model(public_path)
    aligned, _ = align_to_model(private, Generator.from_payload(payload).variants, log=lambda m: None,
                                fill=lambda: public_frequencies(payload))
    privacy = privacy_config(eps, args)
    z, _, _ = plan_private(aligned, config=adapt_config(config(args), payload), privacy=privacy,
                           public_reference=True)
    acc = PrivacyAccountant()
    pub = public_label_frequencies(payload, vocabulary) if privacy.public_frequencies else None
    rel = release_label_frequencies(aligned.genotypes().astype(np.float64), y, len(vocabulary),
                                    noise_multiplier=z["allele_frequencies"], rng=np.random.default_rng(),
                                    accountant=acc, denoiser=privacy.frequency_denoiser,
                                    clip_fraction=privacy.frequency_clip, public_freq=pub,
                                    centre=privacy.frequency_centre)
    counts = np.floor(rel["mix"] * n).astype(int)
    counts[np.argsort(-(rel["mix"] * n - counts))[: n - counts.sum()]] += 1
    return independent_people(aligned, rel["freq"], vocabulary, counts, seed=seed), acc.report(args.delta)


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


def public_model(args, public, split: int) -> str:
    """Train (or reuse) the plain public model of split ``split``; its checkpoint path."""
    from genosynth.training.plain import train_generator

    default = str(Path(tempfile.gettempdir()) / "genosynth_transfer_public_seed{split}.pt")
    path = (args.public_model or default).format(split=split)
    if not Path(path).exists():
        t0 = time.perf_counter()
        train_generator(public, config=config(args), seed=split, checkpoint=path)
        print(f"public model (split {split}): {public.n_samples} people, {time.perf_counter() - t0:.1f} s", flush=True)
    return path


def summarize(records: dict, splits: list[int]) -> dict:
    """Mean and SE over splits of every metric of every (row, epsilon); MIA AUC minus the public row's, paired.

    records : {(row, eps): {split: record}}.
    """
    out = {}
    public = records.get(("public", None), {})
    for (row, e), per in records.items():
        agg = {}
        for k in list(KEYS) + [f"{p}_{m}" for p in ("new", "old") for m in ("af_r", "ld_r_near_within")]:
            vals = np.array([per[sp]["metrics"].get(k) for sp in splits if sp in per], dtype=float)
            vals = vals[np.isfinite(vals)]
            if vals.size:
                agg[k] = {"mean": float(vals.mean()), "se": float(vals.std(ddof=1) / np.sqrt(vals.size))
                          if vals.size > 1 else None, "n": int(vals.size), "values": vals.round(4).tolist()}
        diff = np.array([per[sp]["metrics"]["mia_auc"] - public[sp]["metrics"]["mia_auc"] for sp in splits
                         if sp in per and sp in public], dtype=float)
        if diff.size and row != "public":
            agg["mia_auc_minus_public"] = {"mean": float(diff.mean()), "se": float(diff.std(ddof=1) / np.sqrt(diff.size))
                                           if diff.size > 1 else None, "n": int(diff.size),
                                           "values": diff.round(4).tolist()}
        out[f"{row}" if e is None else f"{row}_eps{e}"] = agg
    return out


def print_summary(summary: dict) -> None:
    keys = ("af_r", "ld_r_near_within", "aats", "aats_holdout", "mia_auc", "mia_auc_minus_public", "tstr_super_pop_lr")
    print("row | " + " | ".join(keys))
    for row, agg in summary.items():
        cells = []
        for k in keys:
            a = agg.get(k)
            cells.append("-" if a is None else f"{a['mean']:.4f}" + ("" if a["se"] is None else f" ± {a['se']:.4f}"))
        print(f"{row} | " + " | ".join(cells), flush=True)


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epsilon", nargs="+", default=["10"])
    p.add_argument("--rows", nargs="+", default=["public", "scratch", "adapt"], choices=ROWS)
    p.add_argument("--delta", type=float, default=1e-5)
    p.add_argument("--seed", type=int, default=0,
                   help="split seed (unless --split-seeds); the synthetic draw uses seed + 1, the evaluation seed")
    p.add_argument("--split-seeds", type=int, nargs="+", default=None,
                   help="repeat the protocol on these split seeds; mean and SE over them (module docstring)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--minority", type=float, default=0.15, help="fraction of AFR/EUR/EAS people made private")
    p.add_argument("--public-model", default="",
                   help="public checkpoint: reused when it exists, else trained there; {split} is the split seed "
                        "(default: a file per split in the temp dir)")
    add_model_options(p)
    p.add_argument("--frequency-clip", type=float, default=None,
                   help="per-person bound of the frequency release, fraction of sqrt(V) (default: the library's, "
                        "1 from scratch, privacy.releases.PUBLIC_CLIP_FRACTION centred on a public model)")
    p.add_argument("--frequency-centre", choices=("one", "public"), default="one",
                   help="centre of each person's dosages in the frequency release: one (default) or, for adapt "
                        "and released, the public model's frequencies of the person's label")
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
    splits = args.split_seeds if args.split_seeds is not None else [args.seed]
    if len(splits) > 1 and args.public_model and "{split}" not in args.public_model:
        raise SystemExit("--public-model must contain {split} with several --split-seeds (a public model is "
                         "trained per split: it must not have seen another split's private people)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    records: dict = {}
    for split in splits:
        train, holdout = load_split(split)
        public, private, private_holdout = split_panels(train, holdout, minority=args.minority, seed=split)
        print(f"split {split}: public {public.n_samples}, private {private.n_samples}, held-out private "
              f"{private_holdout.n_samples} people", flush=True)
        path = public_model(args, public, split)
        suffix = args.tag + ("" if args.split_seeds is None else f"_split{split}")
        for e in args.epsilon:
            for row in args.rows:
                if row in ("public", "exact") and e != args.epsilon[0]:
                    continue
                out = run_row(row, float(e), args, path, private, private_holdout)
                out["split_seed"] = split
                (RESULTS / f"transfer_{row}_eps{e}{suffix}.json").write_text(json.dumps(out, indent=2, default=str))
                records.setdefault((row, None if row in ("public", "exact") else e), {})[split] = out
                m = out["metrics"]
                print(f"{row} eps {e} split {split}: " + ", ".join(f"{k} {m[k]}" for k in m)
                      + f"; train {out['train_s']} s", flush=True)
    if len(splits) > 1:
        summary = summarize(records, splits)
        for e in args.epsilon:
            (RESULTS / f"transfer_summary_eps{e}{args.tag}.json").write_text(json.dumps(
                {"split_seeds": splits, "rows": summary, "command": " ".join(sys.argv)}, indent=2))
        print_summary(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
