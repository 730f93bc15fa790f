"""Generator pipeline: config, label dropout, label counts, determinism, resume, checkpoints, sampling."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
import torch

from genosynth.errors import InputError
from genosynth.sampling.generator import Generator
from genosynth.models.config import GeneratorConfig, tiny_config
from genosynth.training.plain import drop_labels, train_generator
from genosynth.models.checkpoint import load_checkpoint
from genosynth.sampling.counts import parse_label_counts
from genosynth.training.data import prepare_data
from genosynth.sampling.write import write_synthetic


@pytest.fixture(scope="module")
def small(sim_cohort):
    """60 people x 40 SNPs of the simulated cohort (fast)."""
    idx = np.concatenate([np.arange(0, 20), np.arange(100, 120), np.arange(200, 220)])
    return sim_cohort.subset(samples=idx, variants=np.arange(40))


@pytest.fixture(scope="module")
def trained(small, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("gen") / "model.pt")
    model = train_generator(small, config=tiny_config(), seed=5, checkpoint=path)
    return model, path


def _state(path):
    return load_checkpoint(path)["state"]


def _same_tensors(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_tensors(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same_tensors(x, y) for x, y in zip(a, b))
    return a == b


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


def test_parse_label_counts():
    vocab, mix = ["AFR", "EUR"], {"AFR": 0.25, "EUR": 0.75}
    assert parse_label_counts("EUR=5,AFR=2", n=None, vocabulary=vocab, mix=mix) == {"EUR": 5, "AFR": 2}
    assert parse_label_counts(None, n=10, vocabulary=vocab, mix=mix) == {"AFR": 3, "EUR": 7} or \
        parse_label_counts(None, n=10, vocabulary=vocab, mix=mix) == {"AFR": 2, "EUR": 8}
    assert sum(parse_label_counts(None, n=1001, vocabulary=vocab, mix=mix).values()) == 1001
    with pytest.raises(InputError, match="not trained on"):
        parse_label_counts("SAS=3", n=None, vocabulary=vocab, mix=mix)
    with pytest.raises(InputError, match="sum to 7 but --n is 8"):
        parse_label_counts("EUR=5,AFR=2", n=8, vocabulary=vocab, mix=mix)
    with pytest.raises(InputError, match="LABEL=COUNT"):
        parse_label_counts("EUR5", n=None, vocabulary=vocab, mix=mix)
    with pytest.raises(InputError, match="give --n"):
        parse_label_counts(None, n=None, vocabulary=vocab, mix=mix)


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


def test_checkpoint_round_trip_gives_identical_samples(trained):
    model, path = trained
    loaded = Generator.load(path)
    a = model.sample(30, seed=3)
    b = loaded.sample(30, seed=3)
    assert np.array_equal(a.alleles, b.alleles)
    assert list(a.samples["super_pop"]) == list(b.samples["super_pop"])
    c = loaded.sample(30, seed=4)
    assert not np.array_equal(a.alleles, c.alleles)


def test_same_seed_same_checkpoint_and_samples(small, trained, tmp_path):
    _, path = trained
    path2 = str(tmp_path / "model.pt")  # same file name: torch.save records it in the archive
    model2 = train_generator(small, config=tiny_config(), seed=5, checkpoint=path2)
    assert _same_tensors(_state(path), _state(path2))
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


class _Kill(Exception):
    pass


def _kill_after_first_dit_epoch(cohort, config, path: str) -> None:
    """Train with checkpoints to ``path`` and stop (as a kill would) right after DiT epoch 1."""

    def kill(stage, epoch):
        if stage == "dit" and epoch == 1:
            raise _Kill

    with pytest.raises(_Kill):
        train_generator(cohort, config=config, seed=5, checkpoint=path, callback=kill)


def test_resume_after_interruption_matches_uninterrupted(small, trained, tmp_path):
    _, full_path = trained
    path = str(tmp_path / "killed.pt")

    _kill_after_first_dit_epoch(small, tiny_config(), path)
    st = _state(path)
    assert (st["stage"], st["epoch"]) == ("dit", 1)
    with pytest.raises(InputError, match="unfinished run"):
        Generator.load(path)
    resumed = train_generator(small, config=tiny_config(), seed=5, checkpoint=path, resume=True)
    assert _same_tensors(_state(path), _state(full_path))
    assert resumed.sample(10, seed=1).n_samples == 10


def test_resume_checks_the_run(small, trained, tmp_path):
    _, path = trained
    with pytest.raises(InputError, match="different seed"):
        train_generator(small, config=tiny_config(), seed=9, checkpoint=path, resume=True)
    with pytest.raises(InputError, match="not found"):
        train_generator(small, config=tiny_config(), seed=5, checkpoint=str(tmp_path / "none.pt"), resume=True)


def test_sampling_labels_pairs_and_categorical_draws(trained):
    model, _ = trained
    syn = model.sample(labels="AFR=7,EUR=5", seed=0)
    assert syn.phased and syn.n_samples == 12 and syn.alleles.shape == (24, 40)
    assert sorted(syn.samples["super_pop"]) == ["AFR"] * 7 + ["EUR"] * 5
    assert set(np.unique(syn.alleles)) <= {0, 1}
    assert syn.meta["synthetic"] is True
    drawn = model.sample(40, seed=0)
    top = model.sample(40, seed=0, argmax=True)
    # argmax collapses people of one label onto few patterns; draws keep them diverse
    assert len({r.tobytes() for r in drawn.alleles}) > len({r.tobytes() for r in top.alleles})


def test_write_synthetic_streams_every_format(trained, tmp_path):
    from genosynth.io import read_cohort

    model, _ = trained
    for fmt in ("hapt", "bed", "vcf"):
        prefix = str(tmp_path / f"syn_{fmt}")
        paths = write_synthetic(model, prefix, fmt, n=11, seed=2, batch_size=4)
        assert f"{prefix}.samples.tsv" in paths
        assert not os.path.exists(f"{prefix}.staging.tmp")
        if fmt == "hapt":
            back = read_cohort(hapt=f"{prefix}.hapt", legend=f"{prefix}.legend", samples=f"{prefix}.samples.tsv")
        elif fmt == "bed":
            back = read_cohort(bfile=prefix, samples=f"{prefix}.samples.tsv")
        else:
            back = read_cohort(vcf=f"{prefix}.vcf.gz", samples=f"{prefix}.samples.tsv")
        direct = model.sample(11, seed=2, batch_size=4)
        assert back.n_samples == 11
        assert np.array_equal(back.genotypes(), direct.genotypes())
        assert list(back.samples["super_pop"]) == list(direct.samples["super_pop"])
    with pytest.raises(InputError, match="choose one of"):
        write_synthetic(model, str(tmp_path / "x"), "csv", n=3)


def test_privacy_sidecar_written_when_model_has_a_guarantee(small, tmp_path):
    import dataclasses
    import json

    private = dataclasses.replace(small, meta={"privacy": {"epsilon": 3.0, "delta": 1e-5}})
    model = train_generator(private, config=tiny_config(training={"vae_epochs": 1, "dit_epochs": 1}), seed=1)
    paths = write_synthetic(model, str(tmp_path / "p"), "hapt", n=4, seed=0)
    assert str(tmp_path / "p.privacy.json") in paths
    assert json.load(open(tmp_path / "p.privacy.json"))["epsilon"] == 3.0


def test_matched_pairing_stays_within_labels_and_pairs_neighbours():
    from genosynth.sampling.generator import pair_order as _pair_order

    g = torch.Generator().manual_seed(0)
    labels = torch.tensor([0, 0, 1, 1] * 10)  # (40,) rows 2i, 2i+1 = one person
    centre = torch.randn(40, 1, 1, generator=g) * 5  # one ancestry axis
    z = centre + 0.1 * torch.randn(40, 2, 3, generator=g)  # (40, 2, 3)
    order = _pair_order(z, labels)
    assert sorted(order.tolist()) == list(range(40))  # a permutation
    assert torch.equal(labels[order], labels)  # rows only move within their label
    paired = z[order].flatten(1)
    gap_matched = (paired[0::2] - paired[1::2]).norm(dim=1).mean()
    gap_random = (z.flatten(1)[0::2] - z.flatten(1)[1::2]).norm(dim=1).mean()
    assert gap_matched < 0.5 * gap_random


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


def test_model_on_pop_labels_also_writes_the_super_population(small, tmp_path):
    from genosynth.training.data import label_parents

    assert label_parents(small, "pop", ["CEU", "CHB", "YRI"]) == {"super_pop": {"CEU": "EUR", "CHB": "EAS",
                                                                                "YRI": "AFR"}}
    assert label_parents(small, "super_pop", ["AFR", "EAS", "EUR"])["pop"] == {"AFR": "YRI", "EAS": "CHB",
                                                                                "EUR": "CEU"}
    mixed = small.samples.copy()
    mixed.loc[0, "super_pop"] = "AMR"  # a label that maps to two values is not a hierarchy: left out
    assert label_parents(dataclasses.replace(small, samples=mixed), "pop", ["CEU", "CHB", "YRI"]) == {}
    cfg = tiny_config(label_column="pop", training={"vae_epochs": 1, "dit_epochs": 1, "calibration_rows": 0})
    model = train_generator(small, config=cfg, seed=1)
    syn = model.sample(12, seed=0, corr_guidance="none")
    pairs = set(zip(syn.samples["pop"], syn.samples["super_pop"]))
    assert pairs <= {("CEU", "EUR"), ("CHB", "EAS"), ("YRI", "AFR")} and len(syn.samples["pop"].unique()) == 3


# ---------------------------------------------------------------------------- DiT optimisation options
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


def _schedule_config():
    return tiny_config(training={"dit_epochs": 3, "dit_lr_schedule": "cosine", "dit_warmup": 2,
                                 "dit_target": "mean", "ema_decay": 0.999})


def test_resume_is_exact_with_lr_schedule_and_mean_target(small, trained, tmp_path):
    full_path, path = str(tmp_path / "full.pt"), str(tmp_path / "killed.pt")
    full = train_generator(small, config=_schedule_config(), seed=5, checkpoint=full_path)

    _kill_after_first_dit_epoch(small, _schedule_config(), path)
    train_generator(small, config=_schedule_config(), seed=5, checkpoint=path, resume=True)
    assert _same_tensors(_state(path), _state(full_path))
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
