"""plink2 reads genosynth's PGEN output and agrees with the VCF output of the same seed on --freq."""

from __future__ import annotations

import subprocess

import numpy as np
import pandas as pd
import pytest

from genosynth.cli import main

pytest.importorskip("pgenlib")


def _afreq(plink2, args, out) -> pd.DataFrame:
    done = subprocess.run([plink2, *args, "--freq", "--threads", "1", "--memory", "1024", "--out", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return pd.read_csv(f"{out}.afreq", sep="\t", dtype={"ID": object, "REF": object, "ALT": object}).set_index("ID")


def test_pgen_and_vcf_of_one_seed_give_the_same_plink2_freq(trained, plink2, tmp_path):
    _, path = trained
    for fmt in ("pgen", "vcf"):
        assert main(["sample", "--model", path, "--n", "37", "--format", fmt, "--seed", "5", "--out",
                     str(tmp_path / fmt), "--no-progress", "--threads", "1"]) == 0
    pgen = _afreq(plink2, ["--pfile", str(tmp_path / "pgen")], tmp_path / "fp")
    vcf = _afreq(plink2, ["--vcf", str(tmp_path / "vcf.vcf.gz")], tmp_path / "fv")
    assert list(pgen.index) == list(vcf.index) and len(pgen) == 40
    assert list(pgen["REF"]) == list(vcf["REF"]) and list(pgen["ALT"]) == list(vcf["ALT"])
    np.testing.assert_array_equal(pgen["ALT_FREQS"].to_numpy(), vcf["ALT_FREQS"].to_numpy())
    np.testing.assert_array_equal(pgen["OBS_CT"].to_numpy(), np.full(40, 74))
    assert 0 < pgen["ALT_FREQS"].mean() < 1  # not a constant file
    # the phase survives: plink2's own VCF export of the .pgen has the same haplotypes as ours
    subprocess.run([plink2, "--pfile", str(tmp_path / "pgen"), "--export", "vcf", "--threads", "1", "--out",
                    str(tmp_path / "back")], check=True, capture_output=True)
    ours = [line.split("\t")[9:] for line in _body(tmp_path / "vcf.vcf.gz")]
    theirs = [line.split("\t")[9:] for line in _body(tmp_path / "back.vcf")]
    assert ours == theirs and any("|" in g for g in theirs[0])


def _body(path):
    import gzip

    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt") as fh:
        return [line.rstrip("\n") for line in fh if not line.startswith("#")]
