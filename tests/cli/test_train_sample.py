"""``genosynth train``, ``sample`` and ``demo`` through ``main([...])`` with tiny models."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from genosynth.cli import main


@pytest.fixture(scope="module")
def inputs(sim_cohort, tmp_path_factory):
    """The simulated cohort (60 people x 40 SNPs) as .hapt + legend + sample table."""
    from genosynth.io import write_cohort
    from genosynth.io.samples import write_sample_table

    idx = np.concatenate([np.arange(0, 20), np.arange(100, 120), np.arange(200, 220)])
    cohort = sim_cohort.subset(samples=idx, variants=np.arange(40))
    folder = tmp_path_factory.mktemp("cli")
    write_cohort(cohort, str(folder / "real"), "hapt")
    write_sample_table(cohort, str(folder / "real.samples.tsv"))
    return folder, cohort


def _input_args(folder):
    return ["--hapt", str(folder / "real.hapt"), "--legend", str(folder / "real.legend"),
            "--samples", str(folder / "real.samples.tsv")]


@pytest.fixture(scope="module")
def model(inputs):
    folder, _ = inputs
    prefix = str(folder / "model")
    assert main(["train", *_input_args(folder), "--size", "tiny", "--seed", "3", "--out", prefix,
                 "--no-progress", "--threads", "1"]) == 0
    return prefix


def test_train_writes_checkpoint_log_and_summary(model):
    assert os.path.exists(f"{model}.pt")
    summary = json.load(open(f"{model}.train.json"))
    assert summary["seed"] == 3 and summary["labels"] == ["AFR", "EAS", "EUR"]
    assert 0 <= summary["metrics"]["vae_accuracy"] <= 1
    log = open(f"{model}.log").read()
    assert "seed: 3" in log and "VAE:" in log and "DiT:" in log


def test_sample_every_format_with_labels(model, inputs, tmp_path):
    from genosynth.io import read_cohort

    folder, cohort = inputs
    out = str(tmp_path / "syn")
    assert main(["sample", "--model", f"{model}.pt", "--labels", "AFR=4,EUR=3", "--format", "vcf", "--seed", "1",
                 "--out", out, "--no-progress", "--batch-size", "3"]) == 0
    syn = read_cohort(vcf=f"{out}.vcf.gz", samples=f"{out}.samples.tsv")
    assert syn.n_samples == 7 and syn.phased and syn.n_variants == cohort.n_variants
    assert sorted(syn.labels("super_pop")) == ["AFR"] * 4 + ["EUR"] * 3
    info = json.load(open(f"{out}.sample.json"))
    assert info["n"] == 7 and info["seed"] == 1
    assert not os.path.exists(f"{out}.privacy.json")  # the model carries no privacy guarantee
    for fmt, check in (("bed", f"{out}b.bed"), ("hapt", f"{out}h.hapt")):
        assert main(["sample", "--model", f"{model}.pt", "--n", "5", "--format", fmt, "--seed", "1",
                     "--out", out + fmt[0], "--no-progress"]) == 0
        assert os.path.exists(check)


def test_same_seed_same_output(model, tmp_path):
    for name in ("a", "b"):
        assert main(["sample", "--model", f"{model}.pt", "--n", "6", "--format", "hapt", "--seed", "8",
                     "--out", str(tmp_path / name), "--no-progress", "--id-prefix", "syn"]) == 0
    assert open(tmp_path / "a.hapt").read() == open(tmp_path / "b.hapt").read()


def test_user_errors_exit_2_with_the_fix(model, inputs, tmp_path, capsys):
    folder, _ = inputs
    assert main(["sample", "--model", str(tmp_path / "none.pt"), "--n", "3", "--out", str(tmp_path / "x")]) == 2
    assert "train one with" in capsys.readouterr().err
    assert main(["sample", "--model", f"{model}.pt", "--labels", "SAS=3", "--out", str(tmp_path / "x")]) == 2
    assert "choose among" in capsys.readouterr().err
    assert main(["train", *_input_args(folder), "--size", "tiny", "--label-column", "nope",
                 "--out", str(tmp_path / "t"), "--no-progress"]) == 2
    assert "choose another label column" in capsys.readouterr().err
    assert main(["train", *_input_args(folder), "--size", "tiny", "--config", "{not json",
                 "--out", str(tmp_path / "t"), "--no-progress"]) == 2


def test_train_resume_continues_to_the_same_model(inputs, model, tmp_path):
    import shutil

    import torch

    from genosynth.models.checkpoint import load_checkpoint

    folder, _ = inputs
    prefix = str(tmp_path / "model")  # same file name as the reference run (torch.save records it)
    shutil.copy(f"{model}.pt", f"{prefix}.pt")
    ck = load_checkpoint(f"{prefix}.pt")
    ck["state"]["stage"], ck["state"]["epoch"] = "dit", 1  # as if killed after DiT epoch 1 ...
    torch.save(ck, f"{prefix}.pt")
    # ... which a real interruption cannot produce from these weights, so only check it completes
    assert main(["train", *_input_args(folder), "--size", "tiny", "--seed", "3", "--out", prefix, "--resume",
                 "--no-progress", "--threads", "1"]) == 0
    assert load_checkpoint(f"{prefix}.pt")["state"]["stage"] == "done"
    assert "Resumed from" in open(f"{prefix}.log").read()


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path, capsys):
    import shlex

    out = str(tmp_path / "demo")
    assert main(["demo", "--out", out, "--n", "90", "--length-mb", "0.3", "--max-snps", "60", "--vae-epochs", "1",
                 "--dit-epochs", "1", "--seed", "4", "--no-progress", "--threads", "1", "--size", "tiny"]) == 0
    for name in ("cohort.vcf.gz", "cohort.truth.json", "train.vcf.gz", "holdout.vcf.gz", "train.samples.tsv",
                 "holdout.samples.tsv", "model.pt", "synthetic.vcf.gz", "synthetic.samples.tsv", "demo.json",
                 "demo.log", "report.json", "evaluate.config.json"):
        assert os.path.exists(os.path.join(out, name)), name
    assert not os.path.exists(f"{out}.log")  # the log lives inside the demo folder
    assert "Command: genosynth demo" in open(os.path.join(out, "demo.log")).read()
    stdout = capsys.readouterr().out
    for stage in ("[1/5] Simulating", "[3/5] Training", "[4/5] Sampling", "[5/5] Evaluating"):
        assert stage in stdout, stage  # a line before every long stage
    record = json.load(open(os.path.join(out, "demo.json")))
    assert record["seed"] == 4 and "train_s" in record["timings_s"]
    assert record["evaluate_command"] in stdout

    # The report's GWAS is a GWAS of the simulated trait (cases vs controls), not of two populations.
    report = json.load(open(os.path.join(out, "report.json")))
    assert report["gwas"]["design"]["mode"] == "phenotype" and report["gwas"]["design"]["column"] == "phenotype"
    truth = json.load(open(os.path.join(out, "cohort.truth.json")))
    assert truth["trait_model"] == "tstrait" and len(truth["causal"]) == 10
    assert report["gwas"]["design"]["n_case"]["genosynth"] > 0  # the synthetic people carry the trait

    # The printed `genosynth evaluate` command re-runs on the demo folder and gives the same figures.
    argv = shlex.split(record["evaluate_command"])
    assert argv[:2] == ["genosynth", "evaluate"]
    assert main(argv[1:] + ["--threads", "1"]) == 0
    rerun = json.load(open(os.path.join(out, "report_rerun.json")))
    assert rerun["summary"] == report["summary"]
    assert rerun["gwas"]["sets"] == report["gwas"]["sets"]


def test_precision_flag_and_torchrun_rules(inputs, tmp_path, monkeypatch, capsys):
    from genosynth.cli import build_parser
    from genosynth.cli.train import build_config, log_prefix

    folder, _ = inputs
    argv = ["train", *_input_args(folder), "--size", "tiny", "--out", str(tmp_path / "p")]
    args = build_parser().parse_args([*argv, "--precision", "bf16"])
    assert build_config(args).training.precision == "bf16"
    assert build_config(build_parser().parse_args(argv)).training.precision == "fp32"
    assert main([*argv, "--precision", "bf16", "--epsilon", "4", "--no-progress"]) == 2
    assert "DP-SGD runs in fp32" in capsys.readouterr().err
    assert log_prefix(args) == str(tmp_path / "p")
    monkeypatch.setenv("RANK", "1")  # a torchrun rank other than 0 writes no PREFIX.log
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert log_prefix(args) is None
    assert main([*argv, "--epsilon", "4", "--no-progress"]) == 2
    assert "without torchrun" in capsys.readouterr().err


def test_size_chromosome_trains_the_direct_embedding_and_samples(inputs, tmp_path):
    """``--size chromosome`` (what ``auto`` picks above 10,000 SNPs) end to end on a small cohort."""
    import torch

    from genosynth.io import read_cohort

    folder, cohort = inputs
    prefix = str(tmp_path / "chrom")
    assert main(["train", *_input_args(folder), "--size", "chromosome", "--vae-epochs", "1", "--dit-epochs", "1",
                 "--seed", "2", "--out", prefix, "--no-progress", "--threads", "1"]) == 0
    ck = torch.load(prefix + ".pt", weights_only=False)
    assert ck["config"]["vae"]["embedding"] == "direct" and ck["config"]["sampling"]["corr_guidance"] == "copula"
    assert main(["sample", "--model", prefix + ".pt", "--n", "6", "--seed", "1", "--out", prefix + ".syn",
                 "--no-progress"]) == 0
    syn = read_cohort(bfile=prefix + ".syn", samples=prefix + ".syn.samples.tsv")
    assert syn.n_samples == 6 and syn.n_variants == cohort.n_variants


def test_size_auto_on_a_dense_region_trains_the_dense_configuration(inputs, tmp_path):
    """``--size auto`` on a simulated region (SNPs kb apart): the DiT's per-token MLP, and the copula factors
    of its default decoding (``auto``: latent steps and copula on a dense region) stored in the checkpoint."""
    import torch

    from genosynth.models.config import dense_config

    folder, _ = inputs
    prefix = str(tmp_path / "dense")
    assert main(["train", *_input_args(folder), "--vae-epochs", "1", "--dit-epochs", "1",
                 "--seed", "2", "--out", prefix, "--no-progress", "--threads", "1"]) == 0
    ck = torch.load(prefix + ".pt", weights_only=False)
    assert ck["config"]["dit"]["local_mlp"] == dense_config().dit.local_mlp == 128
    assert ck["config"]["sampling"]["corr_guidance"] == "auto"
    assert ck["copula_factors"]["signature"]["method"] == "latent+copula"
    assert sorted(ck["copula_factors"]["labels"]) == list(range(len(ck["labels"])))


def test_size_auto_follows_the_snp_count():
    import argparse

    from genosynth.cli.train import add_arguments, build_config

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--bfile", "x", "--out", "o"])
    assert args.size == "auto"
    def spaced(n, gap):  # n SNPs gap bp apart on one chromosome
        return pd.DataFrame({"chrom": ["1"] * n, "pos": np.arange(1, n + 1) * gap})

    assert build_config(args).vae.embedding == "factored"  # before the cohort is read
    assert build_config(args, variants=spaced(805, 3_000_000)).vae.embedding == "factored"
    assert build_config(args, variants=spaced(805, 3_000_000)).dit.local_mlp == 0  # SNPs far apart: the default
    assert build_config(args, variants=spaced(5000, 1000)).dit.local_mlp == 128  # a dense region
    assert build_config(args, variants=spaced(50_000, 100)).vae.embedding == "direct"
    args = parser.parse_args(["--bfile", "x", "--out", "o", "--size", "default"])
    assert build_config(args, variants=spaced(50_000, 100)).vae.embedding == "factored"
