"""Shared fixtures: paths to ../shared/data (skipped when absent) and small seeded cohorts."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GENOSYNTH_SHARED", REPO.parent / "shared")) / "data"
DATA_805 = SHARED / "1000g_805"
DATA_VCF = SHARED / "1000g_aisnp_vcf"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not present (needs ../shared beside the checkout)")
    return path


@pytest.fixture(scope="session")
def data_805() -> Path:
    """Folder of the 1000 Genomes 805-SNP haplotypes."""
    return _need(DATA_805)


@pytest.fixture(scope="session")
def data_vcf() -> Path:
    """Folder of the 1000 Genomes AISNP VCF files."""
    return _need(DATA_VCF)


@pytest.fixture(scope="session")
def cohort_805(data_805):
    """The 805-SNP cohort with its population panel (2002 samples, phased)."""
    from genosynth.io import read_cohort

    return read_cohort(hapt=str(data_805 / "haplotypes.hapt.gz"), legend=str(data_805 / "snps.legend"),
                       samples=str(data_805 / "panel.tsv"))


@pytest.fixture(scope="session")
def plink2() -> str:
    exe = shutil.which("plink2")
    if exe is None:
        pytest.skip("plink2 not installed (apt-get install -y plink2)")
    return exe


# ---------------------------------------------------------------------------------- simulated cohorts
@pytest.fixture(scope="session")
def sim_cohort():
    """Small simulated cohort: 300 people (100 YRI, 100 CEU, 100 CHB), phased, 300 SNPs at MAF >= 0.05.

    Out-of-Africa model (genosynth.simulation), 500 kb, seed 11; < 1 s. Treat as read-only (shared).
    """
    from genosynth.simulation import simulate_cohort

    return simulate_cohort(n_samples=300, sequence_length=500_000, maf=0.05, max_snps=300, seed=11)


@pytest.fixture(scope="session")
def sim_pheno_cohort():
    """``sim_cohort``'s design with a binary phenotype: 20 causal SNPs, h2 0.8, prevalence 0.3, seed 12.

    ``samples["phenotype"]`` is 0/1; the causal SNPs and effects are in ``meta["truth"]``.
    """
    from genosynth.simulation import PhenotypeSpec, simulate_cohort

    return simulate_cohort(n_samples=300, sequence_length=500_000, maf=0.05, max_snps=300, seed=12,
                           phenotype=PhenotypeSpec(n_causal=20, heritability=0.8, prevalence=0.3))


# ---------------------------------------------------------------------------------- tiny trained generator
@pytest.fixture(scope="module")
def small(sim_cohort):
    """60 people (20 per population) x 40 SNPs of the simulated cohort (fast); a test file may override it."""
    from _testlib import label_subset

    return label_subset(sim_cohort, (20, 20, 20), n_variants=40)


@pytest.fixture(scope="module")
def trained(small, tmp_path_factory):
    """A tiny generator trained on ``small`` (seed 5) and the path of its checkpoint."""
    from genosynth.models.config import tiny_config
    from genosynth.training.plain import train_generator

    path = str(tmp_path_factory.mktemp("gen") / "model.pt")
    model = train_generator(small, config=tiny_config(), seed=5, checkpoint=path)
    return model, path
