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


def test_regions_model_and_min_spacing_flags(tmp_path):
    out = tmp_path / "sim"
    assert main(["simulate", "--out", str(out), "--n", "96", "--length-mb", "2", "--seed", "4", "--no-phenotype",
                 "--model", "regions", "--min-spacing-kb", "50", "--unphased", "--missing-rate", "0.03"]) == 0
    table = pd.read_csv(tmp_path / "sim.samples.tsv", sep="\t", dtype=str)
    assert table["pop"].nunique() == 24 and set(table["super_pop"]) == {"A", "B", "C", "D"}
    back = read_cohort(bfile=str(out))
    assert np.diff(back.variants["pos"].to_numpy()).min() >= 50_000 and (back.alleles < 0).mean() > 0.01


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
        (["--chromosomes", "0"], "--chromosomes"),
        (["--chromosomes", "2", "--chrom", "1,2"], "drop --chrom"),
        (["--chrom", "1,2,3", "--length-mb", "0.1,0.2"], "one per chromosome"),
        (["--chrom", "1,1"], "listed twice"),
        (["--length-mb", "abc"], "--length-mb"),
        (["--unphased", "--format", "hapt"], "--format vcf or bed"),
        (["--missing-rate", "1"], "--missing-rate"),
        (["--chromosomes", "2", "--trait-model", "tstrait"], "--trait-model genosynth"),
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


# ------------------------------------------------------------------ several chromosomes, unphased, missing (issue 17)
def test_several_chromosomes_vcf_matches_library_and_records_each(tmp_path, capsys):
    out = tmp_path / "g"
    assert main(["simulate", "--out", str(out), "--n", "60", "--chromosomes", "3", "--length-mb", "0.2,0.1,0.15",
                 "--seed", "4", "--format", "vcf", "--causal", "6", "--snps-per-chrom", "80"]) == 0
    stdout = capsys.readouterr().out
    assert "over 3 chromosomes (0.45 Mb)" in stdout and "chromosome 2: 0.1 Mb" in stdout
    lib = simulate_cohort(n_samples=60, sequence_length=[200_000, 100_000, 150_000], chromosomes=3, seed=4,
                          max_snps=80, phenotype=PhenotypeSpec(n_causal=6))
    back = read_cohort(vcf=str(tmp_path / "g.vcf.gz"), samples=str(tmp_path / "g.samples.tsv"))
    assert back.phased and np.array_equal(back.alleles, lib.alleles)
    assert back.variants[["chrom", "pos", "id", "ref", "alt"]].equals(lib.variants[["chrom", "pos", "id", "ref", "alt"]])
    assert list(back.labels("pop")) == list(lib.labels("pop"))
    prov = json.loads((tmp_path / "g.simulation.json").read_text())
    assert [(c["chrom"], c["sequence_length"], c["snps"]) for c in prov["per_chromosome"]] == \
        [(c, n, 80) for c, n in zip("123", (200_000, 100_000, 150_000))]
    truth = json.loads((tmp_path / "g.truth.json").read_text())
    assert truth == json.loads(json.dumps(lib.meta["truth"])) and len(truth["chromosomes"]) == 3
    header = subprocess.run(["bcftools", "view", "-h", str(tmp_path / "g.vcf.gz")], capture_output=True, text=True)
    if header.returncode == 0:  # bcftools reads the contigs in order
        assert [ln.split("ID=")[1].split(">")[0].split(",")[0] for ln in header.stdout.splitlines()
                if ln.startswith("##contig")] == ["1", "2", "3"]


def test_unphased_cohort_with_missing_calls_in_one_command(tmp_path, capsys):
    out = tmp_path / "u"
    assert main(["simulate", "--out", str(out), "--n", "80", "--chrom", "1,2", "--length-mb", "0.3", "--seed", "2",
                 "--format", "vcf", "--unphased", "--missing-rate", "0.05", "--no-phenotype"]) == 0
    assert "genotypes (unphased)" in capsys.readouterr().out
    back = read_cohort(vcf=str(tmp_path / "u.vcf.gz"))
    assert not back.phased and abs(back.missing_rate() - 0.05) < 0.01
    lib = simulate_cohort(n_samples=80, sequence_length=300_000, chromosomes=["1", "2"], seed=2)
    ok = back.alleles >= 0
    assert np.array_equal(back.alleles[ok], lib.genotypes()[ok])
    prov = json.loads((tmp_path / "u.simulation.json").read_text())
    assert prov["phased"] is False and prov["missing_rate"] == 0.05
    assert main(["simulate", "--out", str(tmp_path / "b"), "--n", "80", "--chrom", "1,2", "--length-mb", "0.3",
                 "--seed", "2", "--missing-rate", "0.05", "--no-phenotype", "--unphased"]) == 0
    bed = read_cohort(bfile=str(tmp_path / "b"))
    assert np.array_equal(bed.alleles, back.alleles)


def test_multi_chromosome_cohort_trains_and_samples_in_the_same_layout(tmp_path):
    """Chromosomes, positions and alleles survive train -> sample, contigs in order, phase kept."""
    real = tmp_path / "real"
    assert main(["simulate", "--out", str(real), "--n", "45", "--chrom", "2,10,X", "--length-mb", "0.2",
                 "--snps-per-chrom", "12", "--seed", "6", "--format", "vcf", "--no-phenotype"]) == 0
    model = tmp_path / "m"
    assert main(["train", "--vcf", str(real) + ".vcf.gz", "--samples", str(real) + ".samples.tsv", "--size", "tiny",
                 "--seed", "1", "--out", str(model), "--no-progress", "--threads", "1"]) == 0
    syn = tmp_path / "s"
    assert main(["sample", "--model", f"{model}.pt", "--n", "9", "--format", "vcf", "--seed", "1", "--out", str(syn),
                 "--no-progress"]) == 0
    a, b = read_cohort(vcf=str(real) + ".vcf.gz"), read_cohort(vcf=str(syn) + ".vcf.gz")
    assert b.phased and b.n_samples == 9
    cols = ["chrom", "pos", "id", "ref", "alt"]
    assert b.variants[cols].equals(a.variants[cols])
    assert list(dict.fromkeys(b.variants["chrom"])) == ["2", "10", "X"]
    assert main(["sample", "--model", f"{model}.pt", "--n", "9", "--format", "bed", "--seed", "1",
                 "--out", str(syn) + "b", "--no-progress"]) == 0
    assert read_cohort(bfile=str(syn) + "b").variants[cols].equals(a.variants[cols])
