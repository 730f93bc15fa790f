"""Distil latent guidance into the DiT: fine-tune on guided latents, sample with the copula only."""
import copy, json, sys, time
import numpy as np, torch
sys.path.insert(0, "/work/main/benchmarks")
from bench_generator import KEYS, load
import genosynth.sampling.ld_guidance as ldg
from genosynth.evaluate import split_train_holdout, evaluate, summary
from genosynth.sampling.generator import Generator

torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
EPOCHS = int(sys.argv[1]) if len(sys.argv) > 1 else 20
model = Generator.load("/tmp/lead/m805_s7.pt")
cohort = load("805", 0)
train, holdout = split_train_holdout(cohort, holdout_fraction=0.2, stratify="super_pop", seed=0)
rec = []
orig = ldg.latent_guidance
def spy(decode, z, labels, prior, **kw):
    out = orig(decode, z, labels, prior, **kw)
    rec.append((out.detach().clone() * model.latent_scale, labels.clone()))
    return out
ldg.latent_guidance = spy
t = time.perf_counter()
sets = {"guided (today)": model.sample(train.n_samples, seed=1)}
t_guided = time.perf_counter() - t
# more guided latents to distil from (other seeds)
for s in (11, 12):
    model.sample(train.n_samples, seed=s)
ldg.latent_guidance = orig
Z = torch.cat([r[0] for r in rec]); Y = torch.cat([r[1] for r in rec])
print("guided latents", tuple(Z.shape), "guided sample s", round(t_guided, 1), flush=True)
t = time.perf_counter()
sets["copula only (today's DiT)"] = model.sample(train.n_samples, seed=1, corr_guidance="copula")
t_cop = time.perf_counter() - t
dit0 = copy.deepcopy(model.dit)
dit = model.dit; dit.train()
opt = torch.optim.AdamW(dit.parameters(), lr=3e-4, weight_decay=0.0)
g = torch.Generator().manual_seed(0)
for ep in range(EPOCHS):
    perm = torch.randperm(len(Z), generator=g); tot = 0
    for s in range(0, len(Z), 256):
        idx = perm[s:s + 256]
        loss = model.diffusion.training_loss(dit, Z[idx], cond={"y": Y[idx]}, rng=g, model_kwargs={"rng": g})
        opt.zero_grad(); loss.backward(); opt.step(); tot += float(loss) * len(idx)
    print("epoch", ep, round(tot / len(Z), 4), flush=True)
dit.eval()
model._corr_cache.clear()
t = time.perf_counter()
sets["copula only (distilled DiT)"] = model.sample(train.n_samples, seed=1, corr_guidance="copula")
t_dist = time.perf_counter() - t
res = evaluate(train, holdout, sets, label_column="super_pop", seed=0)
out = {"seconds": {"guided": t_guided, "copula": t_cop, "distilled_copula": t_dist}, "epochs": EPOCHS}
for name in ["holdout", *sets]:
    s = summary(res, name)
    row = {k: s.get(k) for k in KEYS + ("ld_strength_ratio",)}
    row["decay"] = res["fidelity"][name]["ld"]["decay_within"]
    out[name] = row
    print(name, {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items() if k != "decay"},
          [None if d is None else round(d, 3) for d in row["decay"]], flush=True)
json.dump(out, open(f"/tmp/lead/distil_e{EPOCHS}.json", "w"), indent=1, default=float)
