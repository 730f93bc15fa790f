"""PGEN output through pgenlib: phased hard calls, genotype counts, .pvar header, .psam."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from genosynth.cohort import Cohort, make_samples, make_variants
from genosynth.io.pgen import write_pgen

pgenlib = pytest.importorskip("pgenlib")


def _cohort(phased: bool) -> Cohort:
    rng = np.random.default_rng(1)
    variants = make_variants(chrom=["2", "1", "1"], pos=[5, 30, 10], ref=["A", "C", "G"], alt=["G", "T", "A"],
                             id=["v1", "v2", "v3"])
    samples = make_samples([f"s{i}" for i in range(5)], super_pop=["AFR", "EUR", "AFR", "EAS", "EUR"])
    shape = (10, 3) if phased else (5, 3)
    alleles = rng.integers(0, 2 if phased else 3, size=shape, dtype=np.int8)
    return Cohort(alleles=alleles, variants=variants, samples=samples, phased=phased, ploidy=2,
                  meta={"synthetic": True, "seed": 4, "model": "m.pt", "model_sha256": "ab" * 32})


def test_phased_pgen_holds_the_haplotypes_in_genomic_order(tmp_path):
    cohort = _cohort(True)
    paths = write_pgen(cohort, str(tmp_path / "p"), fid_column="super_pop")
    assert [p.rsplit(".", 1)[1] for p in paths] == ["pgen", "pvar", "psam"]
    order = [2, 1, 0]  # 1:10, 1:30, 2:5
    with pgenlib.PgenReader(paths[0].encode()) as reader:
        assert (reader.get_raw_sample_ct(), reader.get_variant_ct()) == (5, 3)
        hap = np.empty((3, 10), dtype=np.int32)
        phase = np.empty((3, 5), dtype=np.uint8)
        reader.read_alleles_and_phasepresent_range(0, 3, hap, phase)
        assert reader.hardcall_phase_present()
    assert np.array_equal(hap, cohort.alleles[:, order].T)
    het = hap[:, 0::2] != hap[:, 1::2]
    assert phase.astype(bool)[het].all()
    pvar = open(paths[1]).read().splitlines()
    assert "##genosynth_seed=4" in pvar and f"##genosynth_model_sha256={'ab' * 32}" in pvar
    assert "##genosynth_privacy_status=no formal DP guarantee" in pvar
    assert pvar[pvar.index("#CHROM\tPOS\tID\tREF\tALT") + 1:] == ["1\t10\tv3\tG\tA", "1\t30\tv2\tC\tT", "2\t5\tv1\tA\tG"]
    psam = open(paths[2]).read().splitlines()
    assert psam[:2] == ["#IID\tSEX\tPHENO1\tsuper_pop", "s0\tNA\t-9\tAFR"]


def test_unphased_pgen_holds_alt_counts(tmp_path):
    cohort = _cohort(False)
    cohort = dataclasses.replace(cohort, meta={})
    paths = write_pgen(cohort, str(tmp_path / "g"))
    with pgenlib.PgenReader(paths[0].encode()) as reader:
        geno = np.empty((3, 5), dtype=np.int8)
        reader.read_range(0, 3, geno)
    assert np.array_equal(geno, cohort.alleles[:, [2, 1, 0]].T)
    assert not any(line.startswith("##genosynth_seed") for line in open(paths[1]))


@pytest.mark.parametrize("phased", [True, False])
def test_pgen_from_a_spooled_table_equals_the_whole_table(tmp_path, phased):
    from genosynth.io.order import in_genomic_order
    from genosynth.io.pgen import write_pgen_blocks
    from genosynth.io.samples import SampleSpool

    cohort = in_genomic_order(_cohort(phased))
    blocks = [cohort.alleles.T]  # (V, rows)
    kw = dict(variants=cohort.variants, meta=cohort.meta, phased=phased, fid_column="super_pop")
    write_pgen_blocks(str(tmp_path / "whole"), blocks, samples=cohort.samples, **kw)
    with SampleSpool(str(tmp_path / "s.tmp")) as spool:
        for part in (slice(0, 1), slice(1, 4), slice(4, 5)):
            spool.append(cohort.samples.iloc[part].reset_index(drop=True))
        write_pgen_blocks(str(tmp_path / "spool"), blocks, samples=spool, **kw)
    for ext in ("pgen", "pvar", "psam"):
        assert open(tmp_path / f"spool.{ext}", "rb").read() == open(tmp_path / f"whole.{ext}", "rb").read()
    assert open(tmp_path / "spool.psam").read().count("#IID") == 1
