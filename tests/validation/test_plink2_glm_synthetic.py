"""Validation: ``plink2 --glm`` runs unchanged on a synthetic case/control cohort written by ``sample``.

A tiny phenotype model is trained through the CLI on a simulated cohort whose SNP 0 *is* the
phenotype (cases ALT/ALT, controls REF/REF). ``genosynth sample --cases --controls --format bed``
must give a fileset that plink2 reads as it is (.fam column 6 = 2 case / 1 control) and whose
logistic GWAS finds that SNP, while the ``--format vcf`` output of the same draw gives plink2 the
same genotypes (the VCF carries no phenotype: plink2 takes it from the .fam with ``--pheno``).
"""

from __future__ import annotations

import dataclasses
import subprocess

import numpy as np
import pandas as pd
import pytest

from genosynth.cli import main
from genosynth.io.plink import write_bed


@pytest.fixture(scope="module")
def synthetic(sim_cohort, tmp_path_factory):
    folder = tmp_path_factory.mktemp("glm")
    idx = np.concatenate([np.arange(0, 20), np.arange(100, 120), np.arange(200, 220)])
    cohort = sim_cohort.subset(samples=idx, variants=np.arange(24))
    pheno = np.tile(np.r_[np.ones(8), np.zeros(12)], 3)  # 24 cases, 36 controls
    alleles = cohort.alleles.copy()  # (2N, V)
    alleles[:, 0] = np.repeat(pheno, 2).astype(np.int8)
    samples = cohort.samples.copy()
    samples["phenotype"] = pheno
    cohort = dataclasses.replace(cohort, alleles=alleles, samples=samples)
    write_bed(cohort, str(folder / "real"))
    cohort.samples[["sample", "super_pop"]].to_csv(folder / "pops.tsv", sep="\t", index=False)
    common = ["--no-progress", "--threads", "1", "--seed", "3"]
    assert main(["train", "--bfile", str(folder / "real"), "--samples", str(folder / "pops.tsv"), "--size", "tiny",
                 "--pheno", "--out", str(folder / "model"), *common]) == 0
    for fmt in ("bed", "vcf"):
        assert main(["sample", "--model", str(folder / "model.pt"), "--cases", "60", "--controls", "60",
                     "--format", fmt, "--out", str(folder / f"syn_{fmt}"), *common]) == 0
    return folder


def _plink2(plink2, *args):
    run = subprocess.run([plink2, *args], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    return run


def _glm_table(prefix):
    (path,) = [p for p in prefix.parent.glob(prefix.name + ".*.glm.logistic*") if not p.name.endswith(".log")]
    return pd.read_csv(path, sep="\t")


def test_plink2_glm_runs_unchanged_on_synthetic_bed(synthetic, plink2):
    out = synthetic / "glm_bed"
    _plink2(plink2, "--bfile", str(synthetic / "syn_bed"), "--glm", "allow-no-covars", "--out", str(out))
    table = _glm_table(out)
    fam = pd.read_csv(synthetic / "syn_bed.fam", sep=r"\s+", header=None)
    assert sorted(fam[5].unique()) == [1, 2] and (fam[5] == 2).sum() == 60
    assert int(table["OBS_CT"].max()) == 120
    p = table.set_index("ID")["P"]
    marker = pd.read_csv(synthetic / "syn_bed.bim", sep=r"\s+", header=None)[1].iloc[0]
    # the SNP that equals the phenotype in training is the top hit of the synthetic GWAS
    assert p.idxmin() == marker and p[marker] < 1e-6


def test_vcf_output_gives_plink2_the_same_genotypes(synthetic, plink2):
    bed = synthetic / "from_bed"
    vcf = synthetic / "from_vcf"
    _plink2(plink2, "--bfile", str(synthetic / "syn_bed"), "--freq", "counts", "--out", str(bed))
    _plink2(plink2, "--vcf", str(synthetic / "syn_vcf.vcf.gz"), "--freq", "counts", "--out", str(vcf))
    a = pd.read_csv(f"{bed}.acount", sep="\t").set_index("ID")
    b = pd.read_csv(f"{vcf}.acount", sep="\t").set_index("ID")
    pd.testing.assert_series_equal(a["ALT_CTS"], b.loc[a.index, "ALT_CTS"])
    assert (a["OBS_CT"] == 240).all()
