"""``genosynth simulate``: files, log, exit codes, agreement with the library and with plink2."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pandas as pd
import pytest

from genosynth.cli import main
from genosynth.io import read_cohort
from genosynth.simulation import PhenotypeSpec, simulate_cohort

SMALL = ["--n", "90", "--length-mb", "0.3", "--seed", "3"]


def test_default_bed_output_matches_library(tmp_path, capsys):
    out = tmp_path / "sim"
    assert main(["simulate", "--out", str(out), *SMALL, "--causal", "8", "--h2", "0.6", "--prevalence", "0.25"]) == 0
    for ext in ("bed", "bim", "fam", "samples.tsv", "simulation.json", "truth.json", "log"):
        assert (tmp_path / f"sim.{ext}").stat().st_size > 0, ext
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    stdout = capsys.readouterr().out
    assert "Simulated 90 people (YRI 30, CEU 30, CHB 30)" in stdout
    log = (tmp_path / "sim.log").read_text()
    assert "Command: genosynth simulate" in log and "seed: 3" in log and "cases" in log and "Wrote" in log

    lib = simulate_cohort(n_samples=90, sequence_length=300_000, seed=3,
                          phenotype=PhenotypeSpec(n_causal=8, heritability=0.6, prevalence=0.25))
    back = read_cohort(bfile=str(out), samples=str(tmp_path / "sim.samples.tsv"))
    assert np.array_equal(back.alleles, lib.genotypes())
    assert list(back.variants["id"]) == list(lib.variants["id"])
    assert list(back.labels("pop")) == list(lib.labels("pop"))
    assert list(back.labels("super_pop")) == list(lib.labels("super_pop"))
    assert np.array_equal(back.samples["phenotype"].to_numpy(), lib.samples["phenotype"].to_numpy())

    table = pd.read_csv(tmp_path / "sim.samples.tsv", sep="\t", dtype=str)
    assert list(table.columns[:6]) == ["sample", "fid", "pop", "super_pop", "sex", "phenotype"]
    truth = json.loads((tmp_path / "sim.truth.json").read_text())
    assert truth == json.loads(json.dumps(lib.meta["truth"]))
    assert len(truth["causal"]) == 8 and truth["prevalence"] == 0.25
    prov = json.loads((tmp_path / "sim.simulation.json").read_text())
    assert prov["seed"] == 3 and prov["n_samples"] == 90 and prov["model"] == "OutOfAfrica_3G09"


@pytest.mark.parametrize("fmt", ["vcf", "hapt"])
def test_phased_formats_round_trip(tmp_path, fmt):
    out = tmp_path / "sim"
    assert main(["simulate", "--out", str(out), *SMALL, "--format", fmt, "--no-phenotype", "--max-snps", "50"]) == 0
    if fmt == "vcf":
        back = read_cohort(vcf=str(tmp_path / "sim.vcf.gz"))
    else:
        back = read_cohort(hapt=str(tmp_path / "sim.hapt"), legend=str(tmp_path / "sim.legend"))
    lib = simulate_cohort(n_samples=90, sequence_length=300_000, seed=3, max_snps=50)
    assert back.phased and back.n_variants == 50
    assert np.array_equal(back.alleles, lib.alleles)
    assert not (tmp_path / "sim.truth.json").exists()
    table = pd.read_csv(tmp_path / "sim.samples.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert set(table["phenotype"]) <= {"NA", ""}


def test_recent_expansion_flag(tmp_path, capsys):
    out = tmp_path / "sim"
    assert main(["simulate", "--out", str(out), *SMALL, "--no-phenotype", "--format", "hapt",
                 "--recent-expansion"]) == 0
    assert "under OutOfAfrica_3G09+expansion_2T12" in capsys.readouterr().out
    prov = json.loads((tmp_path / "sim.simulation.json").read_text())
    assert prov["recent_expansion"] is True and prov["model"] == "OutOfAfrica_3G09+expansion_2T12"
    lib = simulate_cohort(n_samples=90, sequence_length=300_000, seed=3, recent_expansion=True)
    back = read_cohort(hapt=str(tmp_path / "sim.hapt"), legend=str(tmp_path / "sim.legend"))
    assert np.array_equal(back.alleles, lib.alleles)


def test_stdpopsim_model_flag_and_population_names(tmp_path, capsys):
    out = tmp_path / "sim"
    assert main(["simulate", "--out", str(out), *SMALL, "--no-phenotype", "--format", "hapt",
                 "--model", "OutOfAfrica_2T12", "--populations", "eur,afr"]) == 0
    assert "under stdpopsim HomSap/OutOfAfrica_2T12" in capsys.readouterr().out
    prov = json.loads((tmp_path / "sim.simulation.json").read_text())
    assert prov["demographic_model"] == "OutOfAfrica_2T12" and "Tennessen" in prov["model_citation"]
    lib = simulate_cohort(n_samples=90, sequence_length=300_000, seed=3, demographic_model="OutOfAfrica_2T12",
                          populations=("EUR", "AFR"))
    back = read_cohort(hapt=str(tmp_path / "sim.hapt"), legend=str(tmp_path / "sim.legend"))
    assert np.array_equal(back.alleles, lib.alleles)
    table = pd.read_csv(tmp_path / "sim.samples.tsv", sep="\t", dtype=str)
    assert list(dict.fromkeys(table["pop"])) == ["EUR", "AFR"] and set(table["super_pop"]) == {"EUR", "AFR"}


def test_tstrait_trait_model_flag(tmp_path):
    out = tmp_path / "sim"
    assert main(["simulate", "--out", str(out), *SMALL, "--causal", "6", "--trait-model", "tstrait"]) == 0
    lib = simulate_cohort(n_samples=90, sequence_length=300_000, seed=3, trait_model="tstrait",
                          phenotype=PhenotypeSpec(n_causal=6))
    truth = json.loads((tmp_path / "sim.truth.json").read_text())
    assert truth == json.loads(json.dumps(lib.meta["truth"])) and truth["trait_model"] == "tstrait"
    fam = pd.read_csv(tmp_path / "sim.fam", sep=r"\s+", header=None)
    assert np.array_equal(fam[5].to_numpy() - 1, lib.samples["phenotype"].to_numpy())


def test_seed_is_drawn_when_omitted_and_replays(tmp_path):
    assert main(["simulate", "--out", str(tmp_path / "a"), "--n", "30", "--length-mb", "0.1",
                 "--no-phenotype", "--format", "hapt"]) == 0
    seed = json.loads((tmp_path / "a.simulation.json").read_text())["seed"]
    assert f"seed: {seed}" in (tmp_path / "a.log").read_text()
    assert main(["simulate", "--out", str(tmp_path / "b"), "--n", "30", "--length-mb", "0.1",
                 "--no-phenotype", "--format", "hapt", "--seed", str(seed)]) == 0
    assert (tmp_path / "a.hapt").read_bytes() == (tmp_path / "b.hapt").read_bytes()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--h2", "1.5"], "--h2"),
        (["--n", "0"], "--n"),
        (["--prevalence", "1"], "--prevalence"),
        (["--causal", "0"], "--causal"),
        (["--maf", "0.7"], "--maf"),
        (["--length-mb", "0"], "--length-mb"),
        (["--max-snps", "0"], "--max-snps"),
        (["--populations", "YRI,GBR"], "--populations"),
        (["--no-phenotype", "--causal", "5"], "--no-phenotype conflicts"),
        (["--causal", "100000"], "--causal"),  # more causal SNPs than the region has: found after simulating
        (["--model", "NoSuchModel"], "OutOfAfrica_3G09"),
        (["--model", "OutOfAfrica_2T12", "--populations", "YRI"], "--populations"),
        (["--model", "OutOfAfrica_2T12", "--recent-expansion"], "--recent-expansion"),
        (["--trait-model", "tstrait", "--h2", "0"], "--trait-model genosynth"),
        (["--no-phenotype", "--trait-model", "tstrait"], "--no-phenotype conflicts"),
    ],
)
def test_bad_options_exit_2_with_message_and_no_data(tmp_path, capsys, extra, message):
    out = tmp_path / "bad"
    args = ["simulate", "--out", str(out), "--n", "30", "--length-mb", "0.1", "--seed", "1", *extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and message in err and "Traceback" not in err
    # Only the run log (which records the error, as plink does) is left.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.log"]
    assert "Error:" in (tmp_path / "bad.log").read_text()


def test_plink2_reads_the_output(tmp_path, plink2):
    out = tmp_path / "sim"
    assert main(["simulate", "--out", str(out), *SMALL, "--maf", "0.1"]) == 0
    subprocess.run([plink2, "--bfile", str(out), "--freq", "--out", str(tmp_path / "p2")], check=True,
                   capture_output=True)
    freq = pd.read_csv(tmp_path / "p2.afreq", sep="\t")
    back = read_cohort(bfile=str(out))
    assert list(freq["ID"]) == list(back.variants["id"])
    assert np.allclose(freq["ALT_FREQS"], back.allele_frequencies())
    maf = np.minimum(freq["ALT_FREQS"], 1 - freq["ALT_FREQS"])
    assert maf.min() >= 0.1
