"""plink2 --freq on genosynth's bed and VCF.gz output reports the input's ALT alleles and frequencies."""

from __future__ import annotations

import subprocess

import numpy as np
import pandas as pd
import pytest

from genosynth.cohort import Cohort, make_samples, make_variants
from genosynth.io.plink import write_bed
from genosynth.io.vcf import read_vcf, write_vcf


def _afreq(plink2, args, out) -> pd.DataFrame:
    cmd = [plink2, *args, "--freq", "--threads", "1", "--memory", "1024", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    table = pd.read_csv(f"{out}.afreq", sep="\t", dtype={"ID": object, "REF": object, "ALT": object})
    return table.set_index("ID")


def _expected(cohort: Cohort) -> pd.DataFrame:
    ok = cohort.alleles >= 0
    per_row = 1 if cohort.phased else cohort.ploidy
    return pd.DataFrame({"ALT": cohort.variants["alt"].to_numpy(), "freq": cohort.allele_frequencies(),
                         "obs": ok.sum(axis=0) * per_row}, index=cohort.variants["id"].to_numpy())


def _compare(cohort: Cohort, table: pd.DataFrame) -> None:
    expected = _expected(cohort)
    assert sorted(table.index) == sorted(expected.index)
    table = table.loc[expected.index]
    assert list(table["ALT"]) == list(expected["ALT"])  # same ALT allele, variant by variant
    np.testing.assert_allclose(table["ALT_FREQS"].to_numpy(float), expected["freq"].to_numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(table["OBS_CT"].to_numpy(), expected["obs"].to_numpy())


def _check_outputs(cohort: Cohort, plink2, tmp_path) -> None:
    write_bed(cohort, str(tmp_path / "out"))
    write_vcf(cohort, str(tmp_path / "out.vcf.gz"))
    _compare(cohort, _afreq(plink2, ["--bfile", str(tmp_path / "out")], tmp_path / "bed"))
    _compare(cohort, _afreq(plink2, ["--vcf", str(tmp_path / "out.vcf.gz")], tmp_path / "vcf"))


def test_805_hapt(cohort_805, plink2, tmp_path):
    _check_outputs(cohort_805, plink2, tmp_path)


@pytest.mark.parametrize("name", ["kidd_aisnp.dev.vcf.gz", "seldin_aisnp.dev.vcf.gz"])
def test_1000g_vcf(data_vcf, plink2, tmp_path, name):
    source = str(data_vcf / name)
    cohort = read_vcf(source)
    _check_outputs(cohort, plink2, tmp_path)
    # plink2 on the original file agrees too (the panels are unsorted: plink2 needs a sorted pgen first)
    subprocess.run([plink2, "--vcf", source, "--make-pgen", "--sort-vars", "--threads", "1", "--memory", "1024",
                    "--out", str(tmp_path / "orig")], check=True, capture_output=True)
    _compare(cohort, _afreq(plink2, ["--pfile", str(tmp_path / "orig")], tmp_path / "orig"))


def test_random_cohort_with_missing_calls(plink2, tmp_path):
    rng = np.random.default_rng(7)
    n, v = 40, 30
    g = rng.integers(0, 3, size=(n, v)).astype(np.int8)
    g[rng.random((n, v)) < 0.1] = -1
    bases = np.array(list("ACGT"))
    ref = bases[rng.integers(0, 4, v)]
    alt = np.array([bases[(np.flatnonzero(bases == r)[0] + 1 + rng.integers(0, 3)) % 4] for r in ref])
    cohort = Cohort(alleles=g, variants=make_variants(chrom=np.repeat(["1", "2", "3"], 10),
                                                      pos=rng.choice(10**6, v, replace=False) + 1, ref=ref, alt=alt),
                    samples=make_samples([f"p{i}" for i in range(n)]), phased=False)
    _check_outputs(cohort, plink2, tmp_path)
