"""Generation conditioned on a binary phenotype jointly with ancestry (``--phenotype-column``, ``--cases``).

Tiny seeded models only; the end-to-end figures (TSTR vs TRTR, causal recovery) are measured by
``benchmarks/bench_phenotype.py generate`` and recorded in ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from genosynth.cli import main
from genosynth.errors import InputError
from genosynth.sampling.generator import Generator
from genosynth.sampling.counts import plan_counts
from genosynth.training.data import prepare_data
from genosynth.models.config import tiny_config
from genosynth.training.plain import train_generator


def _with_phenotype(cohort, values):
    samples = cohort.samples.copy()
    samples["phenotype"] = np.asarray(values, dtype=np.float64)
    return dataclasses.replace(cohort, samples=samples)


@pytest.fixture(scope="module")
def marker_cohort(sim_cohort):
    """60 people x 24 SNPs; SNP 0 is set to the phenotype (cases ALT/ALT, controls REF/REF).

    Cases are the first 8 people of each population (24 of 60); two people have no phenotype.
    """
    idx = np.concatenate([np.arange(0, 20), np.arange(100, 120), np.arange(200, 220)])
    cohort = sim_cohort.subset(samples=idx, variants=np.arange(24))
    pheno = np.tile(np.r_[np.ones(8), np.zeros(12)], 3)
    alleles = cohort.alleles.copy()  # (2N, V)
    alleles[:, 0] = np.repeat(pheno, 2).astype(np.int8)
    pheno[[19, 39]] = np.nan  # two controls with a missing phenotype: they train the null condition
    return _with_phenotype(dataclasses.replace(cohort, alleles=alleles), pheno)


@pytest.fixture(scope="module")
def pheno_model_path(marker_cohort, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("pheno") / "model.pt")
    cfg = tiny_config(phenotype_column="phenotype",
                      training={"vae_epochs": 3, "dit_epochs": 3, "calibration_rows": 64})
    train_generator(marker_cohort, config=cfg, seed=5, checkpoint=path)
    return path


@pytest.fixture(scope="module")
def pheno_model(pheno_model_path):
    return Generator.load(pheno_model_path)


# ---------------------------------------------------------------------------------- data at the door
def test_prepare_data_codes_phenotype_per_row(marker_cohort):
    data = prepare_data(marker_cohort, label_column="super_pop", phenotype_column="phenotype")
    p = data.phenotypes.numpy()
    assert p.shape == (2 * marker_cohort.n_samples,) and p.dtype == np.int64
    assert (p[0::2] == p[1::2]).all()  # both haplotypes of a person carry the person's phenotype
    assert set(np.unique(p)) == {0, 1, 2} and int((p == 2).sum()) == 4  # 2 people missing -> null index
    # per label: 8 cases among the people with a phenotype (19 in AFR and EUR after one missing each)
    assert data.case_fraction == pytest.approx({"AFR": 8 / 19, "EAS": 8 / 20, "EUR": 8 / 19})
    assert prepare_data(marker_cohort, label_column="super_pop").phenotypes is None


def test_prepare_data_genotype_mode_and_case_control_strings(marker_cohort):
    words = np.where(marker_cohort.samples["phenotype"] == 1, "case", "control").astype(object)
    words[5] = ""
    samples = marker_cohort.samples.copy()
    samples["status"] = words
    cohort = dataclasses.replace(marker_cohort, samples=samples)
    data = prepare_data(cohort, label_column="super_pop", mode="genotype", phenotype_column="status")
    assert data.phenotypes.shape == (cohort.n_samples,)
    assert data.phenotypes[0] == 1 and data.phenotypes[5] == 2 and data.phenotypes[10] == 0
    samples["status"] = np.where(words == "case", "yes", "no").astype(object)
    with pytest.raises(InputError, match="case/control or 1/0"):
        prepare_data(dataclasses.replace(cohort, samples=samples), label_column="super_pop", phenotype_column="status")


@pytest.mark.parametrize("values, message", [
    (lambda n: np.linspace(0, 3, n), "must be binary"),
    (lambda n: np.zeros(n), "0 cases"),
    (lambda n: np.full(n, np.nan), "0 cases"),
])
def test_bad_phenotypes_are_refused_with_the_fix(marker_cohort, values, message):
    cohort = _with_phenotype(marker_cohort, values(marker_cohort.n_samples))
    with pytest.raises(InputError, match=message):
        prepare_data(cohort, label_column="super_pop", phenotype_column="phenotype")
    with pytest.raises(InputError, match="--phenotype-column"):
        prepare_data(marker_cohort, label_column="super_pop", phenotype_column="no_such_column")


# ---------------------------------------------------------------------------------- counts
def test_plan_counts_spreads_cases_like_the_training_cases():
    vocab, mix = ["AFR", "EUR"], {"AFR": 0.5, "EUR": 0.5}
    cf = {"AFR": 1.0, "EUR": 0.0}  # population-defined phenotype: AFR cases, EUR controls
    counts, cases = plan_counts(None, n=None, cases=30, controls=20, vocabulary=vocab, mix=mix, case_fraction=cf)
    assert counts == {"AFR": 30, "EUR": 20} and cases == {"AFR": 30, "EUR": 0}
    cf = {"AFR": 0.2, "EUR": 0.6}
    counts, cases = plan_counts(None, n=None, cases=80, controls=120, vocabulary=vocab, mix=mix, case_fraction=cf)
    assert cases == {"AFR": 20, "EUR": 60} and counts == {"AFR": 20 + 80, "EUR": 60 + 40}  # controls 0.4 : 0.2
    counts, cases = plan_counts("AFR=10,EUR=30", n=None, cases=10, controls=30, vocabulary=vocab, mix=mix,
                                case_fraction=cf)
    assert counts == {"AFR": 10, "EUR": 30} and sum(cases.values()) == 10 and cases["EUR"] <= 30
    counts, cases = plan_counts(None, n=100, cases=None, controls=None, vocabulary=vocab, mix=mix, case_fraction=cf)
    assert counts == {"AFR": 50, "EUR": 50} and cases == {"AFR": 10, "EUR": 30}
    with pytest.raises(InputError, match="drop --n"):
        plan_counts(None, n=7, cases=3, controls=3, vocabulary=vocab, mix=mix, case_fraction=cf)
    with pytest.raises(InputError, match="--phenotype-column"):
        plan_counts(None, n=None, cases=3, controls=3, vocabulary=vocab, mix=mix, case_fraction=None)
    assert plan_counts(None, n=4, cases=None, controls=None, vocabulary=vocab, mix=mix,
                       case_fraction=None) == ({"AFR": 2, "EUR": 2}, None)


# ---------------------------------------------------------------------------------- model
def test_checkpoint_records_the_phenotype_condition(pheno_model, marker_cohort):
    m = pheno_model
    assert m.conditions_on_phenotype and m.dit.config.n_phenotypes == 2
    assert m.phenotype_column == "phenotype" and m.meta["config"]["phenotype_column"] == "phenotype"
    assert m.case_fraction == pytest.approx({"AFR": 8 / 19, "EAS": 8 / 20, "EUR": 8 / 19})
    assert m.calibration_by_phenotype
    assert tuple(m.calibration.shape) == (6, marker_cohort.n_variants, 2)  # (2 labels x phenotypes, V, K)


def test_sample_cases_and_controls_follow_the_phenotype(pheno_model):
    syn = pheno_model.sample(cases=150, controls=150, seed=2)
    pheno = syn.samples["phenotype"].to_numpy()
    assert syn.n_samples == 300 and np.nansum(pheno) == 150 and np.isfinite(pheno).all()
    g = syn.genotypes()[:, 0].astype(float)  # the SNP that equals the phenotype in training (2 or 0)
    assert g[pheno == 1].mean() > 1.5 and g[pheno == 0].mean() < 0.5
    again = pheno_model.sample(cases=150, controls=150, seed=2)
    np.testing.assert_array_equal(again.alleles, syn.alleles)  # seeded
    by_n = pheno_model.sample(40, seed=1)  # no --cases: every person still gets a phenotype
    assert np.isfinite(by_n.samples["phenotype"]).all()


def test_guidance_runs_on_both_conditions(pheno_model):
    syn = pheno_model.sample(labels="AFR=5,EUR=5", cases=4, controls=6, seed=3, guidance=2.0)
    assert syn.n_samples == 10 and int(np.nansum(syn.samples["phenotype"])) == 4
    assert sorted(syn.labels("super_pop")) == ["AFR"] * 5 + ["EUR"] * 5


def test_model_without_phenotype_is_unchanged_and_refuses_cases(marker_cohort):
    m = train_generator(marker_cohort, config=tiny_config(), seed=5)
    assert not m.conditions_on_phenotype and m.dit.pheno_embedder is None and m.case_fraction is None
    assert tuple(m.calibration.shape) == (3, marker_cohort.n_variants, 2)
    assert m.sample(6, seed=1).samples["phenotype"].isna().all()
    with pytest.raises(InputError, match="--phenotype-column"):
        m.sample(cases=3, controls=3)
    with pytest.raises(InputError, match="--phenotype-column"):
        m.sample_rows(torch.zeros(2, dtype=torch.long), rng=torch.Generator(), pheno=torch.ones(2, dtype=torch.long))


# ---------------------------------------------------------------------------------- CLI
def _bed_with_labels(cohort, folder):
    """``.bed`` with the phenotype in ``.fam`` column 6 only, plus a table of ancestry labels (no phenotype)."""
    from genosynth.io.plink import write_bed

    write_bed(cohort, str(folder / "real"))  # phenotype -> .fam column 6 (2 case, 1 control, -9 missing)
    cohort.samples[["sample", "super_pop"]].to_csv(folder / "pops.tsv", sep="\t", index=False)
    return ["--bfile", str(folder / "real"), "--samples", str(folder / "pops.tsv"), "--size", "tiny",
            "--no-progress", "--threads", "1"]


def test_cli_train_pheno_from_fam_and_sample_cases_controls(marker_cohort, tmp_path):
    from genosynth.io import read_cohort

    model = str(tmp_path / "m")
    args = _bed_with_labels(marker_cohort, tmp_path) + ["--seed", "1"]
    assert main(["train", *args, "--pheno", "--out", model]) == 0
    summary = json.load(open(f"{model}.train.json"))
    assert summary["phenotype_column"] == "phenotype" and summary["case_fraction"]
    out = str(tmp_path / "syn")
    assert main(["sample", "--model", f"{model}.pt", "--cases", "6", "--controls", "4", "--guidance", "1.5",
                 "--seed", "2", "--out", out, "--no-progress"]) == 0
    fam = [line.split() for line in open(f"{out}.fam")]
    assert sorted(row[5] for row in fam) == ["1"] * 4 + ["2"] * 6  # PLINK: plink2 --glm reads it as is
    syn = read_cohort(bfile=out, samples=f"{out}.samples.tsv")
    assert int(np.nansum(syn.samples["phenotype"])) == 6
    info = json.load(open(f"{out}.sample.json"))
    assert info["cases"] == 6 and info["controls"] == 4 and info["phenotype_column"] == "phenotype"


def test_cli_cases_on_a_model_without_phenotype_exits_2(marker_cohort, tmp_path, capsys):
    args = _bed_with_labels(marker_cohort, tmp_path)
    model = str(tmp_path / "m")
    assert main(["train", *args, "--out", model]) == 0
    capsys.readouterr()
    assert main(["sample", "--model", f"{model}.pt", "--cases", "3", "--controls", "3",
                 "--out", str(tmp_path / "syn"), "--no-progress"]) == 2
    assert "--phenotype-column" in capsys.readouterr().err
    assert main(["train", *args, "--pheno", "--phenotype-column", "other", "--out", str(tmp_path / "x")]) == 2
    assert "keep one" in capsys.readouterr().err
    # a phenotype under --epsilon trains (tests/training/test_private.py); a bad DP option is still
    # refused before any training, with the phenotype as without it
    assert main(["train", *args, "--pheno", "--epsilon", "1", "--out", str(tmp_path / "dp")]) == 2
    assert "--dp-batch-size" in capsys.readouterr().err
    assert not (tmp_path / "dp.pt").exists()


# ---------------------------------------------------------------------------------- separate guidance
def test_separate_guidance_composes_the_three_passes():
    from genosynth.models.dit import DiT1D, DiTConfig

    torch.manual_seed(0)
    dit = DiT1D(DiTConfig(in_channels=3, n_tokens=8, hidden=32, depth=1, heads=2, n_classes=3, n_phenotypes=2))
    for p in dit.parameters():  # adaLN-Zero starts at zero output: perturb so the conditions matter
        torch.nn.init.normal_(p, std=0.2)
    dit.eval()
    x, t = torch.randn(5, 3, 8), torch.randint(0, 1000, (5,))
    y, ph = torch.tensor([0, 1, 2, 0, 1]), torch.tensor([1, 0, 1, 1, 0])
    with torch.no_grad():
        eps_c = dit(x, t, y, ph)
        eps_a = dit(x, t, y, ph, pheno_drop_ids=torch.ones(5, dtype=torch.bool))  # ancestry only
        eps_u = dit(x, t, y, ph, force_drop_ids=torch.ones(5, dtype=torch.bool))  # both null
        assert not torch.allclose(eps_c, eps_a) and not torch.allclose(eps_a, eps_u)
        got = dit.forward_with_cfg(x, t, y, ph, scale=1.5, pheno_scale=3.0)
        torch.testing.assert_close(got, eps_u + 1.5 * (eps_a - eps_u) + 3.0 * (eps_c - eps_a), atol=1e-5, rtol=1e-4)
        joint = dit.forward_with_cfg(x, t, y, ph, scale=2.0)
        torch.testing.assert_close(dit.forward_with_cfg(x, t, y, ph, scale=2.0, pheno_scale=2.0), joint,
                                   atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(dit.forward_with_cfg(x, t, y, ph, scale=1.0, pheno_scale=1.0), eps_c,
                                   atol=1e-5, rtol=1e-4)


def test_training_drops_the_phenotype_alone_too():
    from genosynth.models.dit import DiT1D, DiTConfig

    dit = DiT1D(DiTConfig(in_channels=2, n_tokens=4, hidden=16, depth=1, heads=2, n_classes=2, n_phenotypes=2,
                          class_dropout=0.2, pheno_dropout=0.3)).train()
    seen = {}
    for name, module in (("p", dit.pheno_embedder), ("y", dit.y_embedder)):
        module.register_forward_hook(lambda m, a, k, out, name=name: seen.update({name: k["force_drop_ids"]}),
                                     with_kwargs=True)
    g = torch.Generator().manual_seed(1)
    n = 20000
    dit(torch.randn(n, 2, 4), torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long),
        torch.ones(n, dtype=torch.long), rng=g)
    y_drop, p_drop = seen["y"], seen["p"]
    assert not (y_drop & ~p_drop).any()  # ancestry is never dropped without the phenotype
    assert y_drop.float().mean().item() == pytest.approx(0.2, abs=0.015)
    assert p_drop.float().mean().item() == pytest.approx(1 - 0.8 * 0.7, abs=0.015)


def test_sample_with_a_separate_phenotype_scale(pheno_model, pheno_model_path, tmp_path, capsys):
    syn = pheno_model.sample(cases=40, controls=40, seed=4, guidance=1.0, pheno_guidance=3.0)
    pheno = syn.samples["phenotype"].to_numpy()
    g = syn.genotypes()[:, 0].astype(float)
    assert g[pheno == 1].mean() > g[pheno == 0].mean() + 1.0
    again = pheno_model.sample(cases=40, controls=40, seed=4, guidance=1.0, pheno_guidance=3.0)
    np.testing.assert_array_equal(again.alleles, syn.alleles)
    out = str(tmp_path / "syn")
    common = ["--model", pheno_model_path, "--out", out, "--no-progress", "--seed", "1"]
    assert main(["sample", *common, "--cases", "4", "--controls", "4", "--pheno-guidance", "2.5"]) == 0
    assert json.load(open(f"{out}.sample.json"))["pheno_guidance"] == 2.5
    capsys.readouterr()
    assert main(["sample", *common, "--n", "8", "--pheno-guidance", "2.5"]) == 2
    assert "--cases" in capsys.readouterr().err
