"""Tests of ``genosynth select`` through ``main([...])``."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pandas as pd
import pytest
from scipy import special

from genosynth.cli import main
from genosynth.cohort import Cohort, make_samples, make_variants


@pytest.fixture(scope="module")
def bfile(tmp_path_factory):
    """A small unphased cohort with a logistic trait on SNPs 4 and 11, written as PLINK 1 files."""
    from genosynth.io.plink import write_bed

    rng = np.random.default_rng(0)
    n, v = 800, 30
    g = rng.binomial(2, rng.uniform(0.15, 0.5, v), size=(n, v)).astype(np.int8)
    y = (rng.random(n) < special.expit(-1 + 0.8 * (g[:, 4] + g[:, 11] - 1.3))).astype(float)
    variants = make_variants(chrom=["1"] * v, pos=(np.arange(v) + 1) * 500_000, ref=["A"] * v, alt=["C"] * v)
    pops = np.where(np.arange(n) % 2 == 0, "YRI", "CEU")
    cohort = Cohort(g, variants, make_samples(range(n), pop=pops, phenotype=y), phased=False)
    prefix = str(tmp_path_factory.mktemp("sel") / "toy")
    write_bed(cohort, prefix)
    return prefix, cohort


def test_select_writes_snplist_gwas_table_and_log(bfile, tmp_path):
    prefix, cohort = bfile
    out = str(tmp_path / "s")
    assert main(["select", "--bfile", prefix, "--k", "5", "--out", out, "--seed", "3"]) == 0
    ids = open(f"{out}.snplist").read().split()
    assert len(ids) == 5 and set(ids) <= set(cohort.variants["id"])
    assert {"1:2500000_A_C", "1:6000000_A_C"} <= set(ids)  # SNPs 4 and 11
    table = pd.read_csv(f"{out}.gwas.tsv", sep="\t")
    assert len(table) == 30 and table["selected"].sum() == 5
    assert set(table.loc[table["selected"], "id"]) == set(ids)
    record = json.load(open(f"{out}.select.json"))
    assert record["privacy"] is None and record["config"]["seed"] == 3 and record["n_selected"] == 5
    log = open(f"{out}.log").read()
    assert "NOT differentially private" in log and "seed: 3" in log


def test_select_under_epsilon_writes_no_gwas_table(bfile, tmp_path):
    prefix, _ = bfile
    out = str(tmp_path / "dp")
    assert main(["select", "--bfile", prefix, "--k", "4", "--epsilon", "2", "--delta", "1e-6",
                 "--out", out, "--seed", "1"]) == 0
    assert not (tmp_path / "dp.gwas.tsv").exists()
    assert len(open(f"{out}.snplist").read().split()) == 4
    privacy = json.load(open(f"{out}.select.json"))["privacy"]
    # for k = 4 pure composition (eps/k each) beats zCDP, so the selection is (2, 0)-DP
    assert privacy["epsilon"] == 2.0 and privacy["accounting"] == "pure" and privacy["delta"] == 0.0
    assert privacy["steps"] == 4 and privacy["epsilon_step"] == 0.5
    assert privacy["accountant"]["events"][0]["kind"] == "top_k"
    log = open(f"{out}.log").read()
    assert "GWAS table not written" in log and "clumping skipped" in log
    # the DP noise seed is a secret: --seed is ignored and no seed is written anywhere
    assert json.load(open(f"{out}.select.json"))["config"]["seed"] is None
    assert "--seed is ignored" in log and "seed: secret" in log
    again = str(tmp_path / "dp2")
    assert main(["select", "--bfile", prefix, "--k", "4", "--epsilon", "2", "--delta", "1e-6", "--out", again,
                 "--seed", "1"]) == 0
    assert json.load(open(f"{again}.select.json"))["config"]["seed"] is None


def test_select_case_control_populations(cohort_805, data_805, tmp_path):
    out = str(tmp_path / "pop")
    status = main(["select", "--hapt", str(data_805 / "haplotypes.hapt.gz"), "--legend", str(data_805 / "snps.legend"),
                   "--samples", str(data_805 / "panel.tsv"), "--case-pop", "YRI", "--control-pop", "CEU",
                   "--k", "50", "--out", out, "--seed", "0"])
    assert status == 0
    ids = open(f"{out}.snplist").read().split()
    assert len(ids) == 50
    table = pd.read_csv(f"{out}.gwas.tsv", sep="\t")
    assert table["obs_ct"].max() == 165  # 86 YRI + 79 CEU
    assert table.loc[table["selected"], "p"].max() < 1e-6  # ancestry-informative SNPs differ strongly


def test_select_errors_name_the_fix(bfile, tmp_path, capsys):
    prefix, _ = bfile
    out = str(tmp_path / "e")
    assert main(["select", "--bfile", prefix, "--case-pop", "YRI", "--out", out]) == 2
    assert "--control-pop" in capsys.readouterr().err
    assert main(["select", "--bfile", prefix, "--epsilon", "1", "--pcs", "2", "--out", out]) == 2
    assert "drop --pcs" in capsys.readouterr().err
    assert main(["select", "--bfile", prefix, "--pheno-column", "height", "--out", out]) == 2
    assert "no column 'height'" in capsys.readouterr().err
    assert not (tmp_path / "e.snplist").exists()


def test_snplist_works_with_plink2_extract(bfile, tmp_path, plink2):
    prefix, _ = bfile
    out = str(tmp_path / "x")
    assert main(["select", "--bfile", prefix, "--k", "7", "--out", out, "--seed", "1"]) == 0
    subprocess.run([plink2, "--bfile", prefix, "--extract", f"{out}.snplist", "--make-just-bim",
                    "--out", str(tmp_path / "ext"), "--threads", "1"], check=True, capture_output=True)
    bim = pd.read_csv(tmp_path / "ext.bim", sep="\t", header=None)
    assert sorted(bim[1]) == sorted(open(f"{out}.snplist").read().split())


def test_select_under_epsilon_clumps_with_a_public_reference(bfile, tmp_path):
    prefix, _ = bfile
    out = str(tmp_path / "ref")
    assert main(["select", "--bfile", prefix, "--k", "3", "--epsilon", "5", "--ld-bfile", prefix,
                 "--strata", "pop", "--out", out, "--seed", "2"]) == 0
    record = json.load(open(f"{out}.select.json"))
    assert record["config"]["ld_reference"] is True and record["notes"] == []
    assert "stratified by pop" in record["privacy"]["score"]
    assert "clumping skipped" not in open(f"{out}.log").read()
