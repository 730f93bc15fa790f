"""Validation: our dominant-model association test against plink2 on the same bed file.

* carrier counts: plink2 ``--geno-counts`` in cases and controls give exactly our 2x2 tables, so
  the Z statistic rebuilt from plink2's counts equals ours (coding and ALT orientation agree);
* p-values: plink2 ``--glm dominant`` (logistic regression, Wald test) on the ALT allele agrees with
  our two-proportion Z-test (a score test) in sign, rank and size for non-extreme effects; the two
  tests differ only in how they estimate the variance, so we compare -log10 p with a tolerance.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from genosynth.evaluate.replication import dominant_ztest
from genosynth.io import write_cohort

pytestmark = pytest.mark.shared


@pytest.fixture(scope="module")
def ceu_vs_tsi(cohort_805, plink2, tmp_path_factory):
    """CEU (cases) vs TSI (controls): two close populations, so most effects are modest."""
    pop = cohort_805.labels("pop")
    c = cohort_805.subset(samples=np.isin(pop, ["CEU", "TSI"]))
    c.samples["phenotype"] = (c.labels("pop") == "CEU").astype(float)
    prefix = str(tmp_path_factory.mktemp("gwas") / "ceu_tsi")
    write_cohort(c, prefix, "bed")
    run = lambda *a: subprocess.run([plink2, "--bfile", prefix, *a], check=True, capture_output=True)  # noqa: E731
    run("--glm", "dominant", "allow-no-covars", "omit-ref", "--out", prefix)
    run("--geno-counts", "--keep-if", "PHENO1==2", "--out", prefix + ".case")
    run("--geno-counts", "--keep-if", "PHENO1==1", "--out", prefix + ".control")
    glm = pd.read_csv(prefix + ".PHENO1.glm.logistic.hybrid", sep="\t", dtype={"#CHROM": object})
    case = pd.read_csv(prefix + ".case.gcount", sep="\t")
    ctrl = pd.read_csv(prefix + ".control.gcount", sep="\t")
    z, lp = dominant_ztest(c.genotypes(), c.samples["phenotype"].to_numpy() == 1)
    return c, glm, case, ctrl, z, lp


def test_carrier_tables_match_plink2_counts(ceu_vs_tsi):
    c, glm, case, ctrl, z, _ = ceu_vs_tsi
    assert list(case["ID"]) == list(c.variants["id"])
    n1 = case[["HOM_REF_CT", "HET_REF_ALT_CTS", "TWO_ALT_GENO_CTS"]].sum(axis=1).to_numpy(float)
    n0 = ctrl[["HOM_REF_CT", "HET_REF_ALT_CTS", "TWO_ALT_GENO_CTS"]].sum(axis=1).to_numpy(float)
    c1 = (case["HET_REF_ALT_CTS"] + case["TWO_ALT_GENO_CTS"]).to_numpy(float)
    c0 = (ctrl["HET_REF_ALT_CTS"] + ctrl["TWO_ALT_GENO_CTS"]).to_numpy(float)
    pool = (c1 + c0) / (n1 + n0)
    with np.errstate(invalid="ignore", divide="ignore"):
        z_plink_counts = (c1 / n1 - c0 / n0) / np.sqrt(pool * (1 - pool) * (1 / n1 + 1 / n0))
    z_plink_counts = np.nan_to_num(z_plink_counts)
    assert np.allclose(z, z_plink_counts, atol=1e-9)


def _min_cell(case, ctrl) -> np.ndarray:
    """Smallest cell of each SNP's 2x2 carrier table (cases/controls x carrier/non-carrier)."""
    cells = [case["HOM_REF_CT"], case["HET_REF_ALT_CTS"] + case["TWO_ALT_GENO_CTS"],
             ctrl["HOM_REF_CT"], ctrl["HET_REF_ALT_CTS"] + ctrl["TWO_ALT_GENO_CTS"]]
    return np.min(np.vstack([np.asarray(x) for x in cells]), axis=0)


def test_pvalues_agree_with_plink2_glm_dominant(ceu_vs_tsi):
    c, glm, case, ctrl, z, lp = ceu_vs_tsi
    assert list(glm["ID"]) == list(c.variants["id"])
    assert (glm["A1"] == glm["ALT"]).all()  # the ALT allele is tested, as in ours
    p = pd.to_numeric(glm["P"], errors="coerce").to_numpy()
    zp = pd.to_numeric(glm["Z_STAT"], errors="coerce").to_numpy()
    # the Wald test of logistic regression breaks down with (quasi-)separation: plink2 flags some
    # fits UNFINISHED and others collapse towards p = 1 (Hauck-Donner); compare where every cell of
    # the 2x2 carrier table has >= 10 people (twice the usual validity condition of the chi-square test)
    ok = np.isfinite(p) & (glm["FIRTH?"] == "N").to_numpy() & (glm["ERRCODE"] == ".").to_numpy()
    ok &= _min_cell(case, ctrl) >= 10
    assert ok.sum() > 300
    lp_plink = -np.log10(p[ok])
    assert stats.spearmanr(lp[ok], lp_plink).statistic > 0.99
    strong = ok & (np.abs(z) > 1)
    assert (np.sign(z[strong]) == np.sign(zp[strong])).all()
    moderate = ok & (p > 1e-4)
    lp_wald = -np.log10(p[moderate])
    diff = np.abs(lp[moderate] - lp_wald)
    # score and Wald p-values agree closely near the null and drift apart as effects grow
    assert (diff <= 0.05 + 0.1 * lp_wald).all() and np.median(diff) < 0.01
