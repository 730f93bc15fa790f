"""Tests of genosynth.training.private: plan before training, one accountant, DP = plain code at σ=0, secret noise."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from genosynth.errors import InputError, PrivacyError
from genosynth.sampling.generator import Generator
from genosynth.models.checkpoint import load_checkpoint
from genosynth.models.config import tiny_config
from genosynth.sampling.write import write_synthetic
from genosynth.models.vae import GenotypeVAE, VAEConfig
from genosynth.privacy import DPSGD, PrivacyAccountant
from genosynth.training.dp_plan import PrivacyConfig, plan_private
from genosynth.training.private import _VAEPersonLoss, train_private
from genosynth.privacy.releases import release_label_frequencies
from _testlib import small_privacy

N_PER = 20  # people per label in the small cohort


@pytest.fixture(scope="module")
def small(sim_cohort):
    """60 people (3 labels) x 40 SNPs, phased."""
    idx = np.concatenate([np.arange(0, N_PER), np.arange(100, 100 + N_PER), np.arange(200, 200 + N_PER)])
    return sim_cohort.subset(samples=idx, variants=np.arange(40))


@pytest.fixture(scope="module")
def private_run(small, tmp_path_factory):
    folder = tmp_path_factory.mktemp("dp")
    path = str(folder / "model.pt")
    lines: list[str] = []
    model = train_private(small, config=tiny_config(), privacy=small_privacy(), seed=3, deterministic_noise=True,
                          checkpoint=path, log=lines.append)
    return model, path, lines


def test_impossible_budget_is_refused_before_training(small, tmp_path, monkeypatch):
    import genosynth.training.private as pt

    def no_training(*a, **k):  # the models must not even be built
        raise AssertionError("training started before the budget was checked")

    monkeypatch.setattr(pt, "build_models", no_training)
    path = tmp_path / "m.pt"
    with pytest.raises(PrivacyError, match="raise --epsilon"):
        train_private(small, config=tiny_config(), privacy=small_privacy(epsilon=0.05), seed=0, checkpoint=str(path))
    with pytest.raises(PrivacyError, match="delta"):
        train_private(small, config=tiny_config(), privacy=small_privacy(delta=0.5), seed=0, checkpoint=str(path))
    with pytest.raises(PrivacyError, match="does not support these yet"):  # options the DP trainer would ignore
        train_private(small, config=tiny_config(training={"dit_lr_schedule": "cosine"}), privacy=small_privacy(),
                      seed=0, checkpoint=str(path))
    with pytest.raises(InputError, match="fine_labels"):  # exact per-population frequencies cannot be released
        train_private(small, config=tiny_config(training={"fine_labels": "auto"}), privacy=small_privacy(),
                      seed=0, checkpoint=str(path))
    assert not path.exists()


def _independent_epsilon(events: list[dict], delta: float) -> float:
    """ε of the recorded events composed by dp-accounting's RDP accountant (independent of ours)."""
    dpa = pytest.importorskip("dp_accounting")
    from dp_accounting.rdp import RdpAccountant

    from genosynth.privacy import RDP_ORDERS

    parts = []
    for e in events:
        g = dpa.GaussianDpEvent(e["noise_multiplier"])
        if e["kind"] == "subsampled_gaussian":
            g = dpa.PoissonSampledDpEvent(e["sample_rate"], g)
        else:
            assert e["kind"] in ("gaussian", "stage1") and e.get("sample_rate", 1.0) == 1.0
        parts.append(dpa.SelfComposedDpEvent(g, e["count"]))
    acc = RdpAccountant(list(RDP_ORDERS), dpa.NeighboringRelation.REPLACE_SPECIAL)
    acc.compose(dpa.ComposedDpEvent(parts))
    return acc.get_epsilon(delta)


def test_checkpoint_epsilon_matches_dp_accounting(private_run, small):
    _, path, _ = private_run
    ck = load_checkpoint(path)
    rep, cfg = ck["privacy"], ck["privacy_config"]
    assert rep["delta"] == cfg["delta"] and rep["epsilon"] <= cfg["epsilon"] * (1 + 1e-9)
    events = {e["name"]: e for e in ck["privacy_state"]["events"]}
    assert set(events) == {"allele_frequencies", "vae/dpsgd", "diffusion/stage1", "diffusion/stage2",
                           "correlation_prior", "ancestry_spread"}
    tc = tiny_config().training
    steps = math.ceil(small.n_samples / cfg["batch_size"])
    assert events["vae/dpsgd"]["count"] == tc.vae_epochs * steps  # every DP-SGD step recorded
    assert events["diffusion/stage2"]["count"] == tc.dit_epochs * steps
    assert events["diffusion/stage1"]["count"] == 1  # one release, however many stage-1 epochs
    assert rep["epsilon"] == pytest.approx(_independent_epsilon(ck["privacy_state"]["events"], rep["delta"]), rel=0.01)
    # the stage-1 multiplier is the forward-process one for the clip and alpha_bar used
    s1 = events["diffusion/stage1"]
    assert s1["noise_multiplier"] == pytest.approx(math.sqrt(1 - s1["alpha_bar"]) / (math.sqrt(s1["alpha_bar"]) * 1.0))


def test_checkpoint_loads_samples_and_carries_the_report(private_run, tmp_path):
    model, path, lines = private_run
    g = Generator.load(path)
    assert g.privacy["epsilon"] == model.privacy["epsilon"]
    assert set(g.privacy["breakdown"]) >= {"vae/dpsgd", "diffusion/stage2", "total"}
    cohort = g.sample(6, seed=1)
    assert cohort.alleles.shape == (12, 40) and cohort.meta["privacy"]["epsilon"] == g.privacy["epsilon"]
    written = write_synthetic(g, str(tmp_path / "syn"), "vcf", n=4, seed=2)
    assert str(tmp_path / "syn.privacy.json") in written
    import gzip

    with gzip.open(tmp_path / "syn.vcf.gz", "rt") as fh:
        header = [ln for ln in fh if ln.startswith("##")]
    assert any(ln.startswith("##genosynth_privacy=") and "epsilon" in ln for ln in header)
    assert any("privacy: epsilon=" in ln for ln in lines)  # the log has the final summary


def test_dp_checkpoint_stores_the_copula_factors_of_its_released_prior(private_run):
    """The stored factors are post-processing of the released model: solved from its DP prior and generated
    rows, for the default request, and equal to solving them again from the checkpoint."""
    from genosynth.sampling.factors import default_signature, solve_stored_factors

    _, path, _ = private_run
    g = Generator.load(path)
    assert g.corr_prior is not None and g.stored_factors["signature"] == default_signature(g)
    again = solve_stored_factors(Generator.load(path))
    for j, d in g.stored_factors["labels"].items():
        np.testing.assert_allclose(again["labels"][j]["beta"], d["beta"], atol=1e-5)


def test_plan_composes_the_inputs_own_privacy_report(small):
    prior = PrivacyAccountant()
    prior.add_top_k("snp_selection", noise_multiplier=30.0, k=40)
    co = small.subset(samples=np.arange(small.n_samples))
    co.meta["privacy"] = prior.report(1e-3)
    pc = small_privacy()
    z, planned, got = plan_private(co, config=tiny_config(), privacy=pc)
    both = PrivacyAccountant()
    both.extend(got)
    both.extend(planned)
    assert got.names == ["snp_selection"]
    assert both.get_epsilon(1e-3) <= pc.epsilon and both.get_epsilon(1e-3) > 0.9 * pc.epsilon
    assert planned.get_epsilon(1e-3) < both.get_epsilon(1e-3) - 0.05  # this run gets less than the whole budget
    assert set(z) == set(planned.names) and "snp_selection" not in z
    prior.add_gaussian("other", noise_multiplier=0.01)
    co.meta["privacy"] = prior.report(1e-3)
    with pytest.raises(PrivacyError, match="already used"):
        plan_private(co, config=tiny_config(), privacy=pc)


def test_label_frequency_release_is_exact_without_noise_and_accounted():
    rng = np.random.default_rng(0)
    g = rng.integers(0, 3, size=(50, 30)).astype(float)  # (N, V)
    y = np.repeat([0, 1], 25)
    acc = PrivacyAccountant()
    out = release_label_frequencies(g, y, 2, noise_multiplier=1e-9, rng=rng, accountant=acc)
    assert np.allclose(out["counts"], [25, 25])
    truth = np.stack([g[y == j].mean(0) / 2 for j in range(2)])
    assert np.allclose(out["freq"], np.clip(truth, 1e-3, 1 - 1e-3), atol=1e-6)
    assert acc.events == [{"name": "allele_frequencies", "kind": "gaussian", "noise_multiplier": 1e-9, "count": 1}]
    noisy = release_label_frequencies(g, y, 2, noise_multiplier=2.0, rng=np.random.default_rng(1),
                                      denoiser="shrink")
    # noise std of the raw per-label frequency = z sqrt(V+1) / (2 n_l); shrinkage only reduces it
    err = np.abs(noisy["freq"] - truth).mean()
    assert 0.0 < err < 2.0 * math.sqrt(31) / 50 and (noisy["shrinkage"] >= 0).all()


def test_encode_works_under_vmap_and_equals_batch_encode():
    """Per-person DP-SGD vmaps the encoder: per-row results must equal the batched call."""
    vae = GenotypeVAE(37, 3, 2, VAEConfig(patch=8, snp_dim=4, width=16, latent_channels=2, blocks=1))
    x = torch.randint(-1, 3, (5, 37))  # -1 = missing
    mu, logvar = vae.encode(x)
    vmu, vlogvar = torch.func.vmap(lambda row: vae.encode(row[None]))(x)  # (5, 1, C, T)
    torch.testing.assert_close(vmu[:, 0], mu, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(vlogvar[:, 0], logvar, rtol=1e-5, atol=1e-6)


def test_dp_vae_step_without_noise_or_clipping_equals_plain_step():
    torch.manual_seed(0)
    vae = GenotypeVAE(20, 2, 2, VAEConfig(patch=4, snp_dim=4, width=16, latent_channels=2, blocks=1))
    twin = GenotypeVAE(20, 2, 2, VAEConfig(patch=4, snp_dim=4, width=16, latent_channels=2, blocks=1))
    twin.load_state_dict(vae.state_dict())
    x = torch.randint(0, 2, (6, 2, 20)).to(torch.int8)  # (B people, 2 haplotypes, V)
    y = torch.tensor([0, 1, 2, 0, 1, 1])  # 2 = null label
    eps = torch.randn(6, 2, 2, vae.n_tokens)
    dp = DPSGD(_VAEPersonLoss(vae), torch.optim.SGD(vae.parameters(), lr=0.05), noise_multiplier=0.0,
               max_grad_norm=math.inf, expected_batch_size=6)
    dp.step(lambda fwd, *b: fwd(*b).mean(), (x, y, eps))
    opt = torch.optim.SGD(twin.parameters(), lr=0.05)
    _VAEPersonLoss(twin)(x, y, eps).mean().backward()
    opt.step()
    for (k, p), q in zip(vae.named_parameters(), twin.parameters()):
        assert torch.allclose(p, q, atol=1e-6, rtol=1e-5), k


def test_public_reference_vae_costs_no_budget(small, sim_cohort):
    public = sim_cohort.subset(samples=np.arange(40, 80), variants=np.arange(40))  # other people, same SNPs
    model = train_private(small, config=tiny_config(), privacy=small_privacy(), public_reference=public, seed=4,
                          deterministic_noise=True)
    names = {e["name"] for e in model.meta["privacy_state"]["events"]}
    assert "vae/dpsgd" not in names and {"diffusion/stage2", "allele_frequencies"} <= names
    assert model.meta["public_reference"] is True and model.latent_scale != 1.0  # scale from public latents
    assert model.privacy["epsilon"] <= 8.0
    with pytest.raises(Exception, match="same variants"):
        train_private(small, config=tiny_config(), privacy=small_privacy(),
                      public_reference=sim_cohort.subset(samples=np.arange(40, 80), variants=np.arange(1, 41)))


# ---------------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def cli_inputs(small, tmp_path_factory):
    from genosynth.io import write_cohort
    from genosynth.io.samples import write_sample_table

    folder = tmp_path_factory.mktemp("dpcli")
    write_cohort(small, str(folder / "real"), "hapt")
    write_sample_table(small, str(folder / "real.samples.tsv"))
    return ["--hapt", str(folder / "real.hapt"), "--legend", str(folder / "real.legend"),
            "--samples", str(folder / "real.samples.tsv")], folder


def test_cli_refuses_impossible_epsilon_before_training(cli_inputs, capsys):
    from genosynth.cli import main

    args, folder = cli_inputs
    prefix = str(folder / "refused")
    assert main(["train", *args, "--size", "tiny", "--epsilon", "0.1", "--delta", "1e-3", "--dp-batch-size", "20",
                 "--dp-split", "45", "--latent-clip", "1", "--out", prefix, "--no-progress", "--seed", "1"]) == 2
    assert "raise --epsilon" in capsys.readouterr().err
    assert main(["train", *args, "--size", "tiny", "--epsilon", "8", "--dp-batch-size", "20", "--frequency-clip", "1.5",
                 "--out", prefix, "--no-progress"]) == 2  # a clip outside (0, 1] is refused before training
    assert "--frequency-clip 1.5 must lie in (0, 1]" in capsys.readouterr().err
    assert not os.path.exists(prefix + ".pt") and not os.path.exists(prefix + ".train.json")
    assert main(["train", *args, "--size", "tiny", "--delta", "1e-3", "--out", prefix, "--no-progress"]) == 2


def test_cli_dp_train_and_sample_carry_the_guarantee(cli_inputs):
    import gzip
    import json

    from genosynth.cli import main

    args, folder = cli_inputs
    prefix = str(folder / "dp")
    assert main(["train", *args, "--size", "tiny", "--epsilon", "8", "--delta", "1e-3", "--dp-batch-size", "20",
                 "--corr-window", "4", "--frequency-clip", "0.9", "--ancestry-dims", "1", "--out", prefix, "--no-progress",
                 "--seed", "2"]) == 0
    ck = load_checkpoint(prefix + ".pt")
    assert ck["privacy_config"]["frequency_clip"] == 0.9 and ck["privacy_config"]["frequency_denoiser"] == "low_rank"
    assert ck["privacy_config"]["ancestry_dims"] == 1 and np.asarray(ck["ancestry_spread"]["cov"]).shape[1:] == (1, 1)
    summary = json.load(open(prefix + ".train.json"))
    assert summary["privacy"]["epsilon"] == ck["privacy"]["epsilon"] <= 8.0
    assert summary["seed"] is None and ck["seed"] is None  # the noise seed is secret (drawn from the OS)
    log = open(prefix + ".log").read()
    assert "privacy: epsilon=" in log and "loss" not in log.lower() and "accuracy" not in log.lower()
    assert "seed: secret" in log and "--seed is ignored" in log
    # a finished DP run has nothing to resume; without --epsilon the run is not resumed as a plain one
    assert main(["train", *args, "--size", "tiny", "--epsilon", "8", "--delta", "1e-3", "--dp-batch-size", "20",
                 "--corr-window", "4", "--out", prefix, "--no-progress", "--resume"]) == 2
    assert main(["sample", "--model", prefix + ".pt", "--n", "5", "--format", "vcf", "--seed", "1",
                 "--out", str(folder / "syn")]) == 0
    rep = json.load(open(folder / "syn.privacy.json"))
    assert rep["epsilon"] == ck["privacy"]["epsilon"] and rep["breakdown"]["total"] == rep["epsilon"]
    with gzip.open(folder / "syn.vcf.gz", "rt") as fh:
        assert any(ln.startswith("##genosynth_privacy=") for ln in fh if ln.startswith("##"))
    assert json.load(open(folder / "syn.sample.json"))["ancestry_spread"] is True
    assert main(["sample", "--model", prefix + ".pt", "--n", "5", "--seed", "1", "--no-ancestry-spread",
                 "--out", str(folder / "flat")]) == 0
    assert json.load(open(folder / "flat.sample.json"))["ancestry_spread"] is False


def test_correlation_shrinkage_zeroes_pure_noise_and_keeps_strong_signal():
    from genosynth.training.ld_fit import shrink_correlation_bands

    rng = np.random.default_rng(0)
    freq, counts = np.full((2, 50), 0.5), np.array([100.0, 100.0])  # var 0.5 -> sigma = z clip / 50
    noise = rng.normal(0, 0.2, size=(2, 50, 3))  # z clip = 10 -> sigma 0.2
    signal = np.zeros((2, 50, 3))
    signal[1] = 0.8
    out, w = shrink_correlation_bands(noise + signal, freq, counts, noise_multiplier=1.0, clip=10.0)
    assert w[0] < 0.2 and np.abs(out[0]).mean() < 0.05  # pure noise: nearly removed
    assert w[1] > 0.9 and abs(out[1, :47].mean() - 0.8) < 0.1  # strong signal kept
    assert (out[:, 49] == 0).all()  # structurally absent pairs stay 0


class _Interrupt(Exception):
    pass


def test_interrupted_run_resumes_bit_identically_and_accounts_once(small, private_run, tmp_path):
    from genosynth.errors import InputError
    from genosynth.training.private import resume_path

    _, full_path, _ = private_run  # the same run (seed 3, deterministic noise), uninterrupted
    path = str(tmp_path / "cut.pt")

    def stop(stage, epoch):  # mid stage 2: after the stage-1 release, which must not be drawn again
        if (stage, epoch) == ("dit", 1):
            raise _Interrupt

    with pytest.raises(_Interrupt):
        train_private(small, config=tiny_config(), privacy=small_privacy(), seed=3, deterministic_noise=True,
                      checkpoint=path, callback=stop)
    private = resume_path(path)
    assert not os.path.exists(path) and os.path.exists(private)  # nothing released yet
    with pytest.raises(InputError, match="--resume"):  # a fresh start over an interrupted run is refused
        train_private(small, config=tiny_config(), privacy=small_privacy(), seed=3, checkpoint=path)
    with pytest.raises(InputError, match="privacy_config.*batch_size"):  # other options: other plan
        train_private(small, config=tiny_config(), privacy=small_privacy(batch_size=30), checkpoint=path, resume=True)
    # no seed is needed (a secret one drawn now is not used): the noise generators come back from the private file
    train_private(small, config=tiny_config(), privacy=small_privacy(), checkpoint=path, resume=True)
    assert os.path.exists(path) and not os.path.exists(private)  # the secret state does not outlive the run
    a, b = load_checkpoint(full_path), load_checkpoint(path)
    assert a["privacy"] == b["privacy"]  # same events, each counted once
    for key in ("vae", "dit", "ema"):
        sa, sb = a["state"][key], b["state"][key]
        sa, sb = (sa.get("shadow", sa), sb.get("shadow", sb)) if key == "ema" else (sa, sb)
        assert all(torch.equal(sa[k], sb[k]) for k in sa if isinstance(sa[k], torch.Tensor))
    assert torch.equal(a["calibration"], b["calibration"])
    assert np.array_equal(np.asarray(a["correlation_prior"]["bands"]), np.asarray(b["correlation_prior"]["bands"]))
    with pytest.raises(InputError, match="finished"):
        train_private(small, config=tiny_config(), privacy=small_privacy(), checkpoint=path, resume=True)


def test_dp_noise_is_secret_unless_a_test_asks_for_a_seed(small):
    cfg = tiny_config(training={"vae_epochs": 1, "dit_epochs": 1})

    def fit(**kw):
        return train_private(small, config=cfg, privacy=small_privacy(correlation_window=0, stage1_epochs=0), **kw)

    def weights(model):
        return torch.cat([p.detach().flatten() for p in [*model.vae.parameters(), *model.dit.parameters()]])

    a, b = fit(seed=3), fit(seed=3)  # a seed without deterministic_noise does not fix the noise
    assert not torch.allclose(a.calibration, b.calibration) and not torch.equal(weights(a), weights(b))
    assert a.meta["seed"] is None and b.meta["seed"] is None
    c, d = fit(seed=3, deterministic_noise=True), fit(seed=3, deterministic_noise=True)
    assert torch.equal(c.calibration, d.calibration) and torch.equal(weights(c), weights(d))
    with pytest.raises(InputError, match="explicit seed"):
        fit(deterministic_noise=True)


def test_dp_checkpoint_holds_neither_the_seed_nor_a_generator_state(private_run):
    _, path, _ = private_run
    ck = load_checkpoint(path)
    assert ck["seed"] is None and ck["state"]["rng"] is None  # either would let anyone recompute the noise


def test_label_hierarchy_shrinks_towards_the_parent_and_cuts_the_error():
    rng = np.random.default_rng(0)
    v = 200
    parent_freq = rng.uniform(0.1, 0.9, size=(2, v))  # two super-populations, far apart
    parents = np.repeat([0, 1], 4)  # 8 small populations, 4 per parent, same frequencies within a parent
    truth = parent_freq[parents] + rng.normal(0, 0.01, size=(8, v))  # (8, V)
    labels = np.repeat(np.arange(8), 40)
    g = rng.binomial(2, np.clip(truth[labels], 0, 1)).astype(float)  # (320, V)
    exact = np.stack([g[labels == k].mean(0) / 2 for k in range(8)])
    kw = dict(noise_multiplier=1.0, accountant=None, denoiser="shrink")
    flat = release_label_frequencies(g, labels, 8, rng=np.random.default_rng(5), **kw)
    tree = release_label_frequencies(g, labels, 8, rng=np.random.default_rng(5), parents=parents, **kw)
    err_flat, err_tree = np.abs(flat["freq"] - exact).mean(), np.abs(tree["freq"] - exact).mean()
    assert err_tree < 0.8 * err_flat  # (0.080 vs 0.118 here) the same release, post-processed with the public hierarchy
    assert np.allclose(flat["counts"], tree["counts"])  # only the shrinkage target changed
    assert (tree["shrinkage"] > 0.5).all()  # small populations lean on their parent


def test_low_rank_frequency_denoiser_is_post_processing_of_the_same_release_and_cuts_the_error():
    from genosynth.privacy.mechanisms import denoise_low_rank

    rng = np.random.default_rng(3)
    v, n_labels, per = 300, 24, 40
    # 24 small populations mixing 3 ancestral frequency vectors: the label frequencies have rank 3
    ancestral = rng.beta(0.6, 0.6, size=(3, v))  # (3, V)
    truth = rng.dirichlet([0.3, 0.3, 0.3], size=n_labels) @ ancestral  # (L, V)
    labels = np.repeat(np.arange(n_labels), per)
    g = rng.binomial(2, truth[labels]).astype(float)  # (L*per, V)
    exact = np.stack([g[labels == k].mean(0) / 2 for k in range(n_labels)])
    z = 0.5
    outs, accs = {}, {}
    for how in ("shrink", "low_rank"):
        accs[how] = PrivacyAccountant()
        outs[how] = release_label_frequencies(g, labels, n_labels, noise_multiplier=z, accountant=accs[how],
                                              rng=np.random.default_rng(9), denoiser=how)
    # the same one Gaussian event, so the same epsilon: denoising costs nothing
    assert accs["low_rank"].events == accs["shrink"].events
    assert accs["low_rank"].get_epsilon(1e-5) == accs["shrink"].get_epsilon(1e-5)
    err = {how: float(np.sqrt(((o["freq"] - exact) ** 2).mean())) for how, o in outs.items()}
    assert err["low_rank"] < 0.75 * err["shrink"]  # (0.060 vs 0.099 here)
    assert 1 <= outs["low_rank"]["rank"] <= 6
    # exactly a function of the noisy release: redraw the release's noise and denoise it here
    sums = np.zeros((n_labels, v + 1))
    for k in range(n_labels):
        sums[k, :v] = (g[labels == k] - 1).sum(0)
        sums[k, v] = per
    noisy = sums + np.random.default_rng(9).normal(0.0, z * math.sqrt(v + 1), size=sums.shape)
    est, _ = denoise_low_rank(noisy, noise_sd=z * math.sqrt(v + 1))
    counts = np.maximum(est[:, v], 1.0)
    assert np.allclose(outs["low_rank"]["counts"], counts)
    assert np.allclose(outs["low_rank"]["freq"], np.clip((est[:, :v] / counts[:, None] + 1) / 2, 1e-3, 1 - 1e-3))
    with pytest.raises(InputError, match="denoiser"):
        release_label_frequencies(g, labels, n_labels, noise_multiplier=z, rng=rng, denoiser="svd")


def test_clipped_frequency_release_scales_the_noise_to_the_bound():
    from genosynth.privacy.mechanisms import clip_rows, denoise_low_rank

    rng = np.random.default_rng(4)
    g = rng.integers(0, 3, size=(60, 30)).astype(float)  # (N, V); ~2/3 of the sites homozygous
    y = np.repeat([0, 1, 2], 20)
    c, z = 0.5, 2.0
    out = release_label_frequencies(g, y, 3, noise_multiplier=z, rng=np.random.default_rng(8),
                                    clip_fraction=c, denoiser="low_rank")
    bound = c * math.sqrt(30)  # every person here has more than c^2 V = 7.5 homozygous sites: all are clipped
    centred = clip_rows(g - 1.0, bound)
    assert np.allclose(np.linalg.norm(centred, axis=1), bound)
    sums = np.stack([np.r_[centred[y == k].sum(0), 20.0] for k in range(3)])  # (L, V+1)
    sd = z * math.sqrt(bound ** 2 + 1)  # the sensitivity with the count slot
    noisy = sums + np.random.default_rng(8).normal(0.0, sd, size=sums.shape)
    est, _ = denoise_low_rank(noisy, noise_sd=sd)
    assert np.allclose(out["counts"], np.maximum(est[:, 30], 1.0))
    with pytest.raises(PrivacyError, match="clip_fraction"):
        release_label_frequencies(g, y, 3, noise_multiplier=z, rng=rng, clip_fraction=1.5)


def test_ancestry_spread_is_released_planned_and_used_by_sampling(private_run, small):
    model, path, _ = private_run
    ck = load_checkpoint(path)
    spread = ck["ancestry_spread"]
    n_labels = len(ck["labels"])
    k = min(PrivacyConfig().ancestry_dims, n_labels - 1)
    assert np.asarray(spread["basis"]).shape == (small.n_variants, k)
    assert np.asarray(spread["cov"]).shape == (n_labels, k, k)
    assert np.allclose(np.asarray(spread["freq"]), np.asarray(spread["freq"]).clip(1e-3, 1 - 1e-3))
    # sampling draws each person's own ancestry; switching it off gives other people from the same noise
    on = model.sample(30, seed=4, corr_guidance="none")
    model.config.sampling.ancestry_spread = False
    try:
        off = model.sample(30, seed=4, corr_guidance="none")
    finally:
        model.config.sampling.ancestry_spread = True
    assert not np.array_equal(on.alleles, off.alleles)
    # without the release: no event, no spread in the plan
    z, plan, _ = plan_private(small, config=tiny_config(), privacy=small_privacy(ancestry_dims=0))
    assert "ancestry_spread" not in z and all(e["name"] != "ancestry_spread" for e in plan.events)
    with pytest.raises(InputError, match="ancestry_dims"):
        plan_private(small, config=tiny_config(), privacy=small_privacy(ancestry_dims=-1))
    with pytest.raises(PrivacyError, match="ancestry_clip"):
        plan_private(small, config=tiny_config(), privacy=small_privacy(ancestry_clip=0.0))


# ---------------------------------------------------------------------------------- phenotype under DP
@pytest.fixture(scope="module")
def pheno_small(sim_pheno_cohort):
    """62 people (22 / 25 / 15 per population, cases and controls in each) x 40 SNPs, with a 0/1 phenotype."""
    from _testlib import label_subset

    return label_subset(sim_pheno_cohort, (22, 25, 15), n_variants=40)


@pytest.fixture(scope="module")
def pheno_run(pheno_small, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("dp_pheno") / "model.pt")
    lines: list[str] = []
    model = train_private(pheno_small, config=tiny_config().replace(phenotype_column="phenotype"),
                          privacy=small_privacy(), seed=4, deterministic_noise=True, checkpoint=path,
                          log=lines.append)
    return model, path, lines


def test_phenotype_model_trains_under_dp_and_samples_cases_and_controls(pheno_run, pheno_small):
    model, path, lines = pheno_run
    ck = load_checkpoint(path)
    assert ck["phenotype_column"] == "phenotype" and ck["dit_config"]["n_phenotypes"] == 2
    assert ck["calibration_by_phenotype"] is True and tuple(ck["calibration"].shape) == (6, 40, 2)  # (2L, V, K)
    labels, pheno = pheno_small.labels("super_pop"), pheno_small.samples["phenotype"].to_numpy()
    exact = {lab: float(pheno[labels == lab].mean()) for lab in ck["labels"]}
    assert set(ck["case_fraction"]) == set(exact)
    assert all(0.01 <= f <= 0.99 and abs(f - exact[lab]) > 1e-9 for lab, f in ck["case_fraction"].items())
    assert any("(label, phenotype) groups" in ln for ln in lines)
    g = Generator.load(path)
    assert g.conditions_on_phenotype and g.case_fraction == ck["case_fraction"]
    syn = g.sample(cases=7, controls=5, seed=1)
    assert syn.alleles.shape == (24, 40)
    assert sorted(syn.samples["phenotype"].astype(int).tolist()) == [0] * 5 + [1] * 7
    assert syn.meta["privacy"]["epsilon"] == ck["privacy"]["epsilon"]
    default = g.sample(10, seed=2)  # no --cases: each label's people split by its released case fraction
    assert set(default.samples["phenotype"].astype(int)) <= {0, 1}


def test_phenotype_path_spends_through_the_one_accountant(pheno_run, pheno_small):
    _, path, _ = pheno_run
    ck = load_checkpoint(path)
    rep, events = ck["privacy"], ck["privacy_state"]["events"]
    # the same mechanisms as without a phenotype: the group release is the one frequency event
    assert sorted(e["name"] for e in events) == sorted(["allele_frequencies", "vae/dpsgd", "diffusion/stage1",
                                                        "diffusion/stage2", "correlation_prior", "ancestry_spread"])
    assert [e["count"] for e in events if e["name"] == "allele_frequencies"] == [1]
    steps = math.ceil(pheno_small.n_samples / ck["privacy_config"]["batch_size"])
    assert [e["count"] for e in events if e["name"] == "diffusion/stage2"] == [tiny_config().training.dit_epochs * steps]
    assert rep["epsilon"] <= ck["privacy_config"]["epsilon"] * (1 + 1e-9)
    assert rep["epsilon"] == pytest.approx(_independent_epsilon(events, rep["delta"]), rel=0.01)


def test_phenotype_enters_the_dp_stage2_loss_and_its_own_drop_removes_it():
    from genosynth.models.checkpoint import build_models
    from genosynth.models.diffusion import GaussianDiffusion
    from genosynth.training.private import _stage2_person_loss

    cfg = tiny_config()
    _, dit, _ = build_models(cfg, n_variants=40, n_classes=2, n_labels=3, n_phenotypes=2)
    with torch.no_grad():  # DiT starts with zero-initialised modulation: conditions act only once trained
        for param in dit.parameters():
            param.normal_(0, 0.2, generator=torch.Generator().manual_seed(param.numel()))
    dit.eval()
    diffusion = GaussianDiffusion(cfg.diffusion)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(4, 2, cfg.vae.latent_channels, dit.config.n_tokens, generator=gen)  # (B, P, C, T)
    noise = torch.randn(x0.shape, generator=gen)
    t = torch.randint(0, 10, (4, 2), generator=gen)
    y, no = torch.tensor([0, 1, 2, 0]), torch.zeros(4, dtype=torch.bool)

    def loss(pheno, pheno_drop):
        return _stage2_person_loss(diffusion, dit, x0, y, t, noise, no, pheno, pheno_drop)  # (B,)

    case, control = torch.ones(4, dtype=torch.long), torch.zeros(4, dtype=torch.long)
    assert not torch.allclose(loss(case, no), loss(control, no))
    assert torch.allclose(loss(case, ~no), loss(control, ~no))  # dropped: the null phenotype either way


def test_phenotype_under_dp_refuses_missing_values_and_a_public_model(pheno_small, tmp_path):
    cohort = pheno_small.subset(samples=np.arange(pheno_small.n_samples))
    cohort.samples.loc[cohort.samples.index[0], "phenotype"] = np.nan
    cfg = tiny_config().replace(phenotype_column="phenotype")
    with pytest.raises(InputError, match="remove the people without one"):
        train_private(cohort, config=cfg, privacy=small_privacy(), seed=0, deterministic_noise=True)
    with pytest.raises(InputError, match="drop --phenotype-column or --from-model"):
        train_private(pheno_small, config=cfg, privacy=small_privacy(), public_model={"variants": {}})


def test_every_dp_stage_shows_a_progress_bar_of_counts_only(pheno_small, capsys):
    """VAE (DP-SGD), stage 1 and stage 2 each show a bar; bars carry epochs and rates, never a loss."""
    cfg = tiny_config(training={"vae_epochs": 1, "dit_epochs": 1}).replace(phenotype_column="phenotype")
    train_private(pheno_small, config=cfg, privacy=small_privacy(correlation_window=0), seed=0,
                  deterministic_noise=True, progress=True)
    err = capsys.readouterr().err
    for stage in ("VAE (DP-SGD)", "DiT stage 1 (release)", "DiT stage 2 (DP-SGD)"):
        assert stage in err
    assert "loss" not in err.lower() and "norm" not in err.lower()
