"""Plain training (genosynth.training.plain) and the checkpoint it writes: config, label dropout, data preparation, determinism, resume, learning-rate schedule."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from genosynth.errors import InputError
from _testlib import same_tensors
from genosynth.sampling.generator import Generator
from genosynth.models.config import GeneratorConfig, tiny_config
from genosynth.training.plain import drop_labels, train_generator
from genosynth.models.checkpoint import load_checkpoint
from genosynth.training.data import prepare_data


def _state(path):
    return load_checkpoint(path)["state"]


class _Kill(Exception):
    pass


def _kill_after_first_dit_epoch(cohort, config, path: str) -> None:
    """Train with checkpoints to ``path`` and stop (as a kill would) right after DiT epoch 1."""

    def kill(stage, epoch):
        if stage == "dit" and epoch == 1:
            raise _Kill

    with pytest.raises(_Kill):
        train_generator(cohort, config=config, seed=5, checkpoint=path, callback=kill)


def _schedule_config():
    return tiny_config(training={"dit_epochs": 3, "dit_lr_schedule": "cosine", "dit_warmup": 2,
                                 "dit_target": "mean", "ema_decay": 0.999})


def test_config_round_trip_and_replace():
    cfg = GeneratorConfig().replace(vae={"latent_channels": 7}, training={"vae_epochs": 3}, label_column="pop")
    again = GeneratorConfig.from_dict(cfg.to_dict())
    assert again == cfg
    assert again.vae.latent_channels == 7 and again.training.vae_epochs == 3 and again.label_column == "pop"
    assert GeneratorConfig().vae.latent_channels != 7  # defaults untouched


def test_cfg_label_dropout_rate_and_reproducibility():
    labels = torch.randint(0, 4, (20000,), generator=torch.Generator().manual_seed(0))
    out = drop_labels(labels, p=0.25, null_index=4, rng=torch.Generator().manual_seed(1))
    dropped = out == 4
    assert abs(dropped.float().mean().item() - 0.25) < 0.015
    assert torch.equal(out[~dropped], labels[~dropped])  # the others are untouched
    again = drop_labels(labels, p=0.25, null_index=4, rng=torch.Generator().manual_seed(1))
    assert torch.equal(out, again)
    assert torch.equal(drop_labels(labels, p=0.0, null_index=4, rng=torch.Generator()), labels)


def test_prepare_data_modes(small):
    hap = prepare_data(small, label_column="super_pop")
    assert hap.n_classes == 2 and hap.alleles.shape == (120, 40) and hap.phased
    assert torch.equal(hap.labels[0::2], hap.labels[1::2])  # both haplotypes carry the person's label
    gen = prepare_data(small, label_column="super_pop", mode="genotype")
    assert gen.n_classes == 3 and gen.alleles.shape == (60, 40) and int(gen.alleles.max()) == 2
    assert hap.vocabulary == ["AFR", "EAS", "EUR"] and abs(sum(hap.label_mix.values()) - 1) < 1e-12
    with pytest.raises(InputError, match="no column 'nope'"):
        prepare_data(small, label_column="nope")
    with pytest.raises(InputError, match="needs phased input"):
        prepare_data(small.unphased(), label_column="super_pop", mode="haplotype")


def test_checkpoint_contents_hold_no_per_person_data(trained, small):
    _, path = trained
    ck = load_checkpoint(path)
    for key in ("config", "seed", "versions", "variants", "labels", "label_mix", "curves", "latent_scale"):
        assert key in ck
    assert ck["seed"] == 5 and ck["labels"] == ["AFR", "EAS", "EUR"]
    assert ck["variants"]["id"] == list(small.variants["id"])
    assert len(ck["curves"]["vae"]) == 2 and len(ck["curves"]["dit"]) == 2
    raw = open(path, "rb").read()
    for sample_id in small.samples["sample"][:5]:
        assert sample_id.encode() not in raw  # no sample ids
    n_rows = small.alleles.shape[0]

    def walk(obj):
        if isinstance(obj, torch.Tensor):
            assert n_rows not in obj.shape and small.n_samples not in obj.shape, obj.shape
        elif isinstance(obj, dict):
            for v in obj.values():
                walk(v)
        elif isinstance(obj, (list, tuple)):
            assert len(obj) not in (n_rows, small.n_samples) or all(isinstance(v, (str, int)) for v in obj)
            for v in obj:
                walk(v)
    walk({k: v for k, v in ck.items() if k != "variants"})


def test_same_seed_same_checkpoint_and_samples(small, trained, tmp_path):
    _, path = trained
    path2 = str(tmp_path / "model.pt")  # same file name: torch.save records it in the archive
    model2 = train_generator(small, config=tiny_config(), seed=5, checkpoint=path2)
    assert same_tensors(_state(path), _state(path2))
    assert load_checkpoint(path)["curves"] == load_checkpoint(path2)["curves"]
    with open(path, "rb") as f1, open(path2, "rb") as f2:
        assert f1.read() == f2.read()  # bit-identical files
    other = train_generator(small, config=tiny_config(), seed=6)
    assert not torch.equal(other.vae.readout, model2.vae.readout)


def test_no_seed_draws_one_and_records_it(small):
    cfg = tiny_config(training={"vae_epochs": 1, "dit_epochs": 1})
    drawn = train_generator(small, config=cfg)
    seed = drawn.meta["seed"]
    assert isinstance(seed, int) and seed >= 0
    again = train_generator(small, config=cfg, seed=seed)  # the recorded seed repeats the run
    assert torch.equal(drawn.vae.readout, again.vae.readout)
    assert all(torch.equal(p, q) for p, q in zip(drawn.dit.parameters(), again.dit.parameters()))


def test_resume_after_interruption_matches_uninterrupted(small, trained, tmp_path):
    _, full_path = trained
    path = str(tmp_path / "killed.pt")

    _kill_after_first_dit_epoch(small, tiny_config(), path)
    st = _state(path)
    assert (st["stage"], st["epoch"]) == ("dit", 1)
    with pytest.raises(InputError, match="unfinished run"):
        Generator.load(path)
    resumed = train_generator(small, config=tiny_config(), seed=5, checkpoint=path, resume=True)
    assert same_tensors(_state(path), _state(full_path))
    assert resumed.sample(10, seed=1).n_samples == 10


def test_resume_checks_the_run(small, trained, tmp_path):
    _, path = trained
    with pytest.raises(InputError, match="different seed"):
        train_generator(small, config=tiny_config(), seed=9, checkpoint=path, resume=True)
    with pytest.raises(InputError, match="not found"):
        train_generator(small, config=tiny_config(), seed=5, checkpoint=str(tmp_path / "none.pt"), resume=True)


def test_frequency_calibration_is_aggregate_and_used(trained, small):
    model, path = trained
    cal = load_checkpoint(path)["calibration"]
    assert cal.shape == (3, small.n_variants, 2)  # (labels, SNPs, classes): no per-person axis
    assert torch.isfinite(cal).all() and cal.abs().max() <= 3.0
    a = model.sample(20, seed=1)
    model.calibration = None
    try:
        b = model.sample(20, seed=1)
    finally:
        model.calibration = cal
    assert not np.array_equal(a.alleles, b.alleles)


def test_dit_learning_rate_warmup_and_cosine():
    from genosynth.models.config import TrainingConfig
    from genosynth.training.plain import dit_learning_rate

    const = TrainingConfig(dit_lr=1e-3)
    assert [dit_learning_rate(s, 100, const) for s in (0, 50, 99)] == [1e-3, 1e-3, 1e-3]  # today's behaviour
    warm = TrainingConfig(dit_lr=1e-3, dit_warmup=10)
    assert dit_learning_rate(0, 100, warm) == pytest.approx(1e-4)
    assert dit_learning_rate(4, 100, warm) == pytest.approx(5e-4)
    assert dit_learning_rate(9, 100, warm) == dit_learning_rate(60, 100, warm) == pytest.approx(1e-3)
    cos = TrainingConfig(dit_lr=1e-3, dit_lr_schedule="cosine", dit_warmup=10)
    lrs = [dit_learning_rate(s, 100, cos) for s in range(100)]
    assert lrs[50] == pytest.approx(0.5e-3)  # half way down the cosine
    assert all(b <= a for a, b in zip(lrs[9:], lrs[10:]))  # decays after the warm-up
    assert lrs[-1] < 1e-6 and lrs[0] == pytest.approx(1e-4 * 0.5 * (1 + np.cos(0)))


def test_training_config_rejects_unknown_dit_options():
    from genosynth.models.config import TrainingConfig

    with pytest.raises(InputError, match="dit_lr_schedule"):
        TrainingConfig(dit_lr_schedule="step")
    with pytest.raises(InputError, match="dit_target"):
        TrainingConfig(dit_target="median")
    with pytest.raises(InputError, match="dit_warmup"):
        TrainingConfig(dit_warmup=-1)


def test_resume_is_exact_with_lr_schedule_and_mean_target(small, trained, tmp_path):
    full_path, path = str(tmp_path / "full.pt"), str(tmp_path / "killed.pt")
    full = train_generator(small, config=_schedule_config(), seed=5, checkpoint=full_path)

    _kill_after_first_dit_epoch(small, _schedule_config(), path)
    train_generator(small, config=_schedule_config(), seed=5, checkpoint=path, resume=True)
    assert same_tensors(_state(path), _state(full_path))
    # the options change training: the optimiser's last learning rate is the cosine's tail, not dit_lr
    lr_last = _state(full_path)["dit_opt"]["param_groups"][0]["lr"]
    assert 0 < lr_last < 0.1 * tiny_config().training.dit_lr
    # posterior means have less variance than posterior draws: a larger scale brings them to 1
    plain = trained[0]
    assert full.latent_scale > plain.latent_scale
    assert torch.equal(full.vae.readout, plain.vae.readout)  # same VAE stage (same seed)


def test_checkpoint_without_the_new_training_fields_still_loads_and_resumes(small, trained, tmp_path):
    _, path = trained
    ck = load_checkpoint(path)
    for key in ("dit_lr_schedule", "dit_warmup", "dit_target"):
        del ck["config"]["training"][key]  # as written before these options existed
    old = str(tmp_path / "old.pt")
    torch.save(ck, old)
    model = Generator.load(old)
    tc = model.config.training
    assert (tc.dit_lr_schedule, tc.dit_warmup, tc.dit_target) == ("constant", 0, "sample")
    assert np.array_equal(model.sample(6, seed=2).alleles, Generator.load(path).sample(6, seed=2).alleles)
    again = train_generator(small, config=tiny_config(), seed=5, checkpoint=old, resume=True)  # same config
    assert again.meta["stage"] == "done"


def test_bf16_autocast_trains_a_loadable_model(small, trained, tmp_path):
    from genosynth.models.config import TrainingConfig

    path = str(tmp_path / "bf16.pt")
    model = train_generator(small, config=tiny_config(training={"precision": "bf16"}), seed=5, checkpoint=path)
    loaded = Generator.load(path)
    assert loaded.config.training.precision == "bf16"
    assert all(np.isfinite(row["loss"]) for stage in ("vae", "dit") for row in loaded.meta["curves"][stage])
    assert all(p.dtype == torch.float32 for p in model.dit.parameters())  # autocast: weights stay float32
    fp32, _ = trained  # same seed in float32: the bfloat16 forward passes changed the weights
    assert not torch.equal(fp32.vae.readout, model.vae.readout)
    assert abs(model.meta["metrics"]["vae_accuracy"] - fp32.meta["metrics"]["vae_accuracy"]) < 0.05
    syn = loaded.sample(10, seed=1)
    assert syn.n_samples == 10 and syn.n_variants == small.n_variants
    with pytest.raises(InputError, match="fp32 or bf16"):
        TrainingConfig(precision="fp16")


def test_chromosome_config_trains_unphased_genotypes_with_missing_calls():
    """Genotype mode (unphased, 5 % calls missing) with the chromosome configuration: the missing
    calls stay out of the loss, and the synthetic genotypes are complete 0/1/2 with sensible AF."""
    from genosynth.models.config import chromosome_config
    from genosynth.simulation import simulate_cohort
    from genosynth.training.plain import train_generator

    cohort = simulate_cohort(n_samples=120, sequence_length=400_000, maf=0.05, max_snps=150, seed=4,
                             phased=False, missing_rate=0.05)
    assert not cohort.phased and 0.03 < cohort.missing_rate() < 0.07
    cfg = chromosome_config(cohort.n_variants, vae={"patch": 16}, sampling={"corr_guidance": "none"},
                            training={"vae_epochs": 3, "dit_epochs": 2, "calibration_rows": 32, "calibration_steps": 3})
    model = train_generator(cohort, config=cfg, seed=1)
    assert model.vae.n_classes == 3 and model.vae.config.embedding == "direct"
    syn = model.sample(200, seed=2)
    assert not syn.phased and syn.alleles.min() >= 0 and syn.alleles.max() <= 2
    real_af = np.nanmean(np.where(cohort.alleles < 0, np.nan, cohort.alleles), axis=0) / 2  # (V,) over called genotypes
    syn_af = syn.alleles.mean(axis=0) / 2
    assert np.corrcoef(real_af, syn_af)[0, 1] > 0.9


def test_pop_labels_within_super_populations_train_hierarchically(small):
    """label_column pop with a super_pop column: the DiT embeds each population's region too, the
    per-population frequencies are shrunk toward the region's, and the checkpoint rebuilds and samples."""
    import dataclasses

    samples = small.samples.copy()
    samples["pop"] = samples["pop"].astype(str) + np.where(np.arange(len(samples)) % 2, "_a", "_b")
    cohort = dataclasses.replace(small, samples=samples)
    model = train_generator(cohort, config=tiny_config(label_column="pop"), seed=2)
    assert model.dit.config.parents is not None and len(set(model.dit.config.parents)) == 3
    assert model.vocabulary[:2] == ["CEU_a", "CEU_b"] and model.dit.config.parents[:2] == (0, 0)
    shrink = model.meta["label_shrinkage"]
    assert len(shrink["F"]) == 3 and all(k is not None and k > 0 for k in shrink["kappa"])
    syn = model.sample(12, labels="CEU_a=6,YRI_b=6", seed=1)
    assert sorted(set(syn.labels("super_pop"))) == ["AFR", "EUR"]


def test_plain_dit_training_draws_timesteps_by_the_configured_power(small, monkeypatch):
    """``training.dit_timestep_power`` reaches the DiT loss's timestep draw: with 1, more of the draws lie
    in the upper half of the schedule than with the uniform default."""
    from genosynth.models.diffusion import GaussianDiffusion

    seen = []
    draw = GaussianDiffusion.sample_timesteps

    def spy(self, n, **kw):
        t = draw(self, n, **kw)
        seen.append((kw.get("power", 0.0), t, self.T))
        return t

    monkeypatch.setattr(GaussianDiffusion, "sample_timesteps", spy)
    upper = {}
    for power in (0.0, 1.0):
        seen.clear()
        cfg = tiny_config(training={"vae_epochs": 1, "dit_epochs": 2, "dit_timestep_power": power})
        train_generator(small, config=cfg, seed=3)
        assert {p for p, _, _ in seen} == {power}
        t, T = torch.cat([t for _, t, _ in seen]), seen[0][2]
        upper[power] = float((t >= T / 2).double().mean())
    assert upper[1.0] > upper[0.0] + 0.1


def test_plain_optimisers_are_fused_adamw_with_the_for_loop_update(small):
    """Both optimisers of a CPU run use torch's fused AdamW kernel, and a fused step moves a DiT's
    parameters as the for-loop AdamW does (to float32 rounding), so the change is speed alone."""
    from genosynth.models.dit import DiT1D, DiTConfig
    from genosynth.training.plain import start_run

    cfg = tiny_config()
    data = prepare_data(small, label_column=cfg.label_column, mode=cfg.mode, phenotype_column=None)
    run = start_run(small, data, cfg, seed=1, dev=torch.device("cpu"))
    assert run.vae_opt.defaults["fused"] and run.dit_opt.defaults["fused"]

    torch.manual_seed(0)
    nets = [DiT1D(DiTConfig(n_tokens=8, hidden=32, depth=2, n_classes=3, local_mlp=16, local_window=1))
            for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    before = [p.detach().clone() for p in nets[0].parameters()]
    opts = [torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=0.01, fused=fused)
            for net, fused in zip(nets, (False, True))]
    g = torch.Generator().manual_seed(2)
    x, t = torch.randn(6, 8, 8, generator=g), torch.randint(0, 1000, (6,), generator=g)  # (B, C, L), (B,)
    y = torch.randint(0, 3, (6,), generator=g)  # (B,)
    for _ in range(3):
        for net, opt in zip(nets, opts):
            opt.zero_grad()
            ((net(x, t, y, force_drop_ids=torch.zeros(6, dtype=torch.bool)) - x) ** 2).mean().backward()
            opt.step()
    assert max(float((a.detach() - b).abs().max()) for a, b in zip(nets[1].parameters(), before)) > 1e-3  # it trained
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_vae_micro_batches_make_the_same_step_as_one_pass(small, monkeypatch):
    """``training.vae_micro_batch``: a VAE epoch back-propagated a few rows at a time ends where one pass per
    batch ends (to float32 rounding); the reparameterisation noise is zeroed so both see the same latents."""
    from genosynth.training.plain import start_run, vae_epoch

    real_randn = torch.randn
    monkeypatch.setattr(torch, "randn", lambda *shape, generator=None, device=None, dtype=None, **kw:
                        torch.zeros(*shape, device=device, dtype=dtype) if generator is not None
                        else real_randn(*shape, device=device, dtype=dtype, **kw))
    params = []
    for micro in (0, 3):
        cfg = tiny_config(training={"vae_batch_size": 8, "vae_micro_batch": micro})
        data = prepare_data(small, label_column=cfg.label_column, mode=cfg.mode, phenotype_column=None)
        run = start_run(small, data, cfg, seed=4, dev=torch.device("cpu"))
        before = [p.detach().clone() for p in run.vae.parameters()]
        row = vae_epoch(run, data, cfg, torch.device("cpu"))
        params.append([p.detach().clone() for p in run.vae.parameters()])
        assert np.isfinite(row["loss"])
    assert max(float((a - b).abs().max()) for a, b in zip(params[0], before)) > 1e-3  # it trained
    for a, b in zip(*params):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    with pytest.raises(InputError, match="vae_micro_batch"):
        tiny_config(training={"vae_micro_batch": -1})
