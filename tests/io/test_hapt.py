"""Yelmen .hapt + .legend: the 805-SNP data, agreement with the 1000 Genomes VCF, errors, round trips."""

from __future__ import annotations

import gzip
import os
import tempfile

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings

from _io_helpers import cohorts, write_text
from genosynth.errors import InputError
from genosynth.io.hapt import read_hapt, write_hapt
from genosynth.io.order import in_genomic_order
from genosynth.io.plink import read_bed, write_bed
from genosynth.io.vcf import read_vcf, write_vcf


def test_805_matches_raw_text(cohort_805, data_805):
    with gzip.open(data_805 / "haplotypes.hapt.gz", "rt") as fh:
        lines = [line.split() for line in fh]
    raw = np.array([r[2:] for r in lines], dtype=np.int8)  # (4004, 805)
    assert cohort_805.phased and cohort_805.n_samples == 2002 and cohort_805.n_variants == 805
    np.testing.assert_array_equal(cohort_805.alleles, raw)
    assert list(cohort_805.samples["sample"][:2]) == [lines[0][1][:-2], lines[2][1][:-2]] == ["HG00096", "HG00097"]
    first = cohort_805.variants.iloc[0]
    assert (first["chrom"], first["pos"], first["id"], first["ref"], first["alt"]) == (
        "1", 1243896, "1:1243896_C_T", "C", "T")
    # the panel is attached: HG00096 is a GBR (EUR) male
    s = cohort_805.samples.iloc[0]
    assert (s["pop"], s["super_pop"], s["sex"]) == ("GBR", "EUR", 1)
    assert set(cohort_805.labels("super_pop")) == {"AFR", "AMR", "EAS", "EUR", "SAS"}


@pytest.mark.parametrize("name", ["kidd_aisnp.dev.vcf.gz", "seldin_aisnp.dev.vcf.gz"])
def test_805_allele_coding_agrees_with_1000g_vcf(cohort_805, data_vcf, name):
    """SNPs in both panels: hapt 1 = a1 = ALT of the original VCF record, haplotype by haplotype."""
    vcf = read_vcf(str(data_vcf / name))
    assert list(vcf.samples["sample"]) == list(cohort_805.samples["sample"])
    where = {(c, p): k for k, (c, p) in enumerate(zip(cohort_805.variants["chrom"], cohort_805.variants["pos"]))}
    shared = [(where[(c, p)], j) for j, (c, p) in enumerate(zip(vcf.variants["chrom"], vcf.variants["pos"]))
              if (c, p) in where]
    assert len(shared) >= 2
    for k, j in shared:
        assert cohort_805.variants["ref"][k] == vcf.variants["ref"][j]
        assert cohort_805.variants["alt"][k] == vcf.variants["alt"][j]
        np.testing.assert_array_equal(cohort_805.alleles[:, k], vcf.alleles[:, j])


def test_805_converts_to_bed_and_vcf(cohort_805, tmp_path):
    sub = cohort_805.subset(samples=np.arange(0, 2002, 50))  # 41 people keep the test quick
    write_bed(sub, str(tmp_path / "b"))
    write_vcf(sub, str(tmp_path / "v.vcf.gz"))
    expected = in_genomic_order(sub)
    np.testing.assert_array_equal(read_bed(str(tmp_path / "b")).alleles, expected.genotypes())
    np.testing.assert_array_equal(read_vcf(str(tmp_path / "v.vcf.gz")).alleles, expected.alleles)


# ------------------------------------------------------------------ errors
LEGEND = "id position a0 a1\n1:10_A_G 10 A G\n1:20_C_T 20 C T\n"


@pytest.mark.parametrize("hapt, message", [
    ("Real s_A 0 1\nReal s_B 0 x\n", "line 2 has a non-numeric allele 'x'"),
    ("Real s_A 0 1\nReal s_B 0 1 1\n", "line 2 has 3 alleles but the legend lists 2"),
    ("Real s_A 0 1\n", "odd number of haplotype lines"),
    ("Real s_A 0 1\nReal t_B 0 1\n", "are not the two haplotypes of one person"),
    ("Real s_A 0 2\nReal s_B 0 1\n", "alleles outside 0/1"),
    ("", "no haplotypes found"),
])
def test_hapt_errors(tmp_path, hapt, message):
    legend = write_text(tmp_path / "x.legend", LEGEND)
    with pytest.raises(InputError, match=message):
        read_hapt(write_text(tmp_path / "x.hapt", hapt), legend)


def test_legend_errors(tmp_path):
    hapt = write_text(tmp_path / "x.hapt", "Real s_A 0 1\nReal s_B 0 1\n")
    with pytest.raises(InputError, match="legend header"):
        read_hapt(hapt, write_text(tmp_path / "a.legend", "snp pos a b\n"))
    with pytest.raises(InputError, match="non-integer position"):
        read_hapt(hapt, write_text(tmp_path / "b.legend", "id position a0 a1\n1:1_A_G x A G\n1:2_A_G 2 A G\n"))
    with pytest.raises(InputError, match="file not found"):
        read_hapt(hapt, str(tmp_path / "none.legend"))


def test_write_hapt_refuses_unphased_and_missing(tmp_path, cohort_805):
    sub = cohort_805.subset(samples=[0, 1], variants=[0, 1])
    with pytest.raises(InputError, match="unphased"):
        write_hapt(sub.unphased(), str(tmp_path / "u"))
    sub.alleles[0, 0] = -1
    with pytest.raises(InputError, match="missing"):
        write_hapt(sub, str(tmp_path / "m"))
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------ round trips
@settings(max_examples=30, deadline=None)
@given(cohorts(phased=True, missing=False, default_ids=True))
def test_vcf_hapt_bed_chain_is_lossless(cohort):
    """phased complete data: VCF -> hapt -> VCF keeps haplotypes; hapt -> bed keeps genotypes."""
    expected = in_genomic_order(cohort)
    with tempfile.TemporaryDirectory() as d:
        write_vcf(cohort, os.path.join(d, "a.vcf.gz"))
        from_vcf = read_vcf(os.path.join(d, "a.vcf.gz"))
        write_hapt(from_vcf, os.path.join(d, "h"))
        from_hapt = read_hapt(os.path.join(d, "h.hapt"), os.path.join(d, "h.legend"))
        write_vcf(from_hapt, os.path.join(d, "b.vcf.gz"))
        again = read_vcf(os.path.join(d, "b.vcf.gz"))
        write_bed(from_hapt, os.path.join(d, "c"))
        bed = read_bed(os.path.join(d, "c"))
    for got in (from_vcf, from_hapt, again):
        assert got.phased
        np.testing.assert_array_equal(got.alleles, expected.alleles)
        pd.testing.assert_frame_equal(got.variants, expected.variants)
        assert list(got.samples["sample"]) == list(expected.samples["sample"])
    np.testing.assert_array_equal(bed.alleles, expected.genotypes())
    pd.testing.assert_frame_equal(bed.variants, expected.variants)


def test_truncated_hapt_gz(data_805, tmp_path):
    data = open(data_805 / "haplotypes.hapt.gz", "rb").read()
    (tmp_path / "cut.hapt.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cut.hapt.gz: cannot be read to the end .*truncated or corrupt"):
        read_hapt(str(tmp_path / "cut.hapt.gz"), str(data_805 / "snps.legend"))
