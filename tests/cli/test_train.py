"""``genosynth train`` under ``--epsilon`` through ``main([...])``: adapting a public model (``--from-model``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from genosynth.cli import main
from genosynth.models.checkpoint import load_checkpoint


def _write(cohort, folder, name):
    from genosynth.io import write_cohort
    from genosynth.io.samples import write_sample_table

    write_cohort(cohort, str(folder / name), "hapt")
    write_sample_table(cohort, str(folder / f"{name}.samples.tsv"))
    return ["--hapt", str(folder / f"{name}.hapt"), "--legend", str(folder / f"{name}.legend"),
            "--samples", str(folder / f"{name}.samples.tsv")]


@pytest.fixture(scope="module")
def panels(sim_cohort, tmp_path_factory):
    """A public model (CLI, 40 AFR + 40 EUR people) and the private cohort's input arguments (AFR, EUR, EAS)."""
    folder = tmp_path_factory.mktemp("cli_dp")
    pub = sim_cohort.subset(samples=np.concatenate([np.arange(40, 80), np.arange(140, 180)]), variants=np.arange(40))
    priv_idx = np.concatenate([np.arange(0, 20), np.arange(100, 120), np.arange(200, 220)])
    public_args = _write(pub, folder, "public")
    assert main(["train", *public_args, "--size", "tiny", "--seed", "1", "--out", str(folder / "public"),
                 "--no-progress", "--threads", "1"]) == 0
    private_args = _write(sim_cohort.subset(samples=priv_idx, variants=np.arange(40)), folder, "private")
    wider_args = _write(sim_cohort.subset(samples=priv_idx, variants=np.arange(44)), folder, "wider")
    return folder, private_args, wider_args


DP = ["--epsilon", "8", "--delta", "1e-3", "--dp-batch-size", "20", "--corr-window", "4", "--size", "tiny",
      "--no-progress", "--threads", "1"]


def test_from_model_adapts_the_public_model_under_dp(panels):
    folder, private_args, _ = panels
    prefix = str(folder / "adapted")
    assert main(["train", *private_args, *DP, "--from-model", str(folder / "public.pt"), "--out", prefix]) == 0
    ck = load_checkpoint(f"{prefix}.pt")
    assert ck["labels"] == ["AFR", "EAS", "EUR"] and ck["public_model"]["labels"] == ["AFR", "EUR"]
    assert "vae/dpsgd" not in ck["privacy"]["breakdown"] and ck["privacy"]["epsilon"] <= 8.0 + 1e-9
    log = open(f"{prefix}.log").read()
    assert "Aligned to the public model: 40 of 40 SNPs matched" in log
    assert "public model's (no training, no budget)" in log
    summary = json.load(open(f"{prefix}.train.json"))
    assert summary["privacy"]["epsilon"] == ck["privacy"]["epsilon"]


def test_from_model_errors_name_the_fix(panels, capsys):
    folder, private_args, wider_args = panels
    out = str(folder / "refused")
    assert main(["train", *private_args, "--size", "tiny", "--from-model", str(folder / "public.pt"),
                 "--out", out]) == 2
    assert "add --epsilon" in capsys.readouterr().err
    assert main(["train", *wider_args, *DP, "--from-model", str(folder / "public.pt"), "--out", out]) == 2
    err = capsys.readouterr().err
    assert "4 SNP(s) of the private cohort are not in the public model" in err and "plink2 --extract" in err
    assert main(["train", *private_args, *DP, "--from-model", str(folder / "none.pt"), "--out", out]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert main(["train", *private_args, *DP, "--frequency-centre", "public", "--out", out]) == 2
    assert "give --from-model PUBLIC.pt too" in capsys.readouterr().err


def test_frequency_centre_public_is_recorded_and_stays_within_epsilon(panels):
    folder, private_args, _ = panels
    prefix = str(folder / "centred")
    assert main(["train", *private_args, *DP, "--from-model", str(folder / "public.pt"), "--frequency-centre",
                 "public", "--out", prefix]) == 0
    ck = load_checkpoint(f"{prefix}.pt")
    assert ck["privacy"]["epsilon"] <= 8.0 + 1e-9
    assert '"frequency_centre": "public"' in open(f"{prefix}.log").read()


def test_phenotype_column_works_under_epsilon(sim_pheno_cohort, tmp_path):
    """``--phenotype-column`` with ``--epsilon``: a DP case/control model, then ``sample --cases/--controls``."""
    cohort = sim_pheno_cohort.subset(samples=np.concatenate([np.arange(0, 22), np.arange(100, 125),
                                                             np.arange(200, 215)]), variants=np.arange(40))
    args = _write(cohort, tmp_path, "cases")
    prefix = str(tmp_path / "dp_pheno")
    assert main(["train", *args, *DP, "--phenotype-column", "phenotype", "--out", prefix]) == 0
    ck = load_checkpoint(f"{prefix}.pt")
    assert ck["phenotype_column"] == "phenotype" and ck["privacy"]["epsilon"] <= 8.0 + 1e-9
    summary = json.load(open(f"{prefix}.train.json"))
    assert summary["case_fraction"] == ck["case_fraction"]  # the DP release, as in the checkpoint
    log = open(f"{prefix}.log").read()
    assert "(label, phenotype) groups" in log and "loss" not in log.lower()
    out = str(tmp_path / "syn")
    assert main(["sample", "--model", f"{prefix}.pt", "--cases", "6", "--controls", "4", "--seed", "1",
                 "--out", out]) == 0
    from genosynth.io import read_cohort

    syn = read_cohort(bfile=out)
    assert syn.n_samples == 10 and sorted(syn.samples["phenotype"].astype(int).tolist()) == [0] * 4 + [1] * 6
