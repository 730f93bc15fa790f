"""PLINK 1 bed/bim/fam: allele coding, .fam parsing, errors, and round trips."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pandas as pd
import pytest
from bed_reader import open_bed, to_bed
from hypothesis import given, settings

from _io_helpers import cohorts, write_text
from genosynth.cohort import Cohort, make_samples, make_variants
from genosynth.errors import InputError
from genosynth.io.order import in_genomic_order
from genosynth.io.plink import parse_plink_phenotype, read_bed, write_bed


def _small(tmp_path, n_smp=5, n_var=3):
    """A bed written by bed-reader (an independent writer) from a known matrix."""
    rng = np.random.default_rng(1)
    val = rng.integers(0, 3, size=(n_smp, n_var)).astype(np.float32)
    val[0, 0] = np.nan
    prefix = str(tmp_path / "small")
    to_bed(f"{prefix}.bed", val, count_A1=True, properties={
        "fid": [f"F{i}" for i in range(n_smp)], "iid": [f"I{i}" for i in range(n_smp)],
        "sex": [1, 2, 0, 1, 2][:n_smp], "pheno": ["1", "2", "-9", "2", "0"][:n_smp],
        "chromosome": ["1"] * n_var, "sid": [f"rs{j}" for j in range(n_var)],
        "bp_position": [100 * (j + 1) for j in range(n_var)],
        "allele_1": ["G"] * n_var, "allele_2": ["A"] * n_var,
    })
    return prefix, val


def test_read_bed_counts_allele_1_as_alt(tmp_path):
    prefix, val = _small(tmp_path)
    c = read_bed(prefix)
    assert not c.phased and c.alleles.dtype == np.int8
    expected = np.where(np.isnan(val), -1, val).astype(np.int8)
    np.testing.assert_array_equal(c.alleles, expected)
    assert list(c.variants["alt"]) == ["G"] * 3 and list(c.variants["ref"]) == ["A"] * 3
    assert list(c.variants["pos"]) == [100, 200, 300]
    assert list(c.samples["fid"]) == [f"F{i}" for i in range(5)]
    assert list(c.samples["sex"]) == [1, 2, 0, 1, 2]
    np.testing.assert_array_equal(c.samples["phenotype"], [0.0, 1.0, np.nan, 1.0, np.nan])
    # ALT frequency over called alleles, as plink2 --freq reports it
    g = expected[:, 0]
    assert c.allele_frequencies()[0] == pytest.approx(g[g >= 0].sum() / (2 * (g >= 0).sum()))


def test_write_bed_bytes_follow_the_plink_spec(tmp_path):
    # counts of ALT (= A1): 2 -> 00, 1 -> 10, 0 -> 11, missing -> 01; four samples per byte, low bits first
    c = Cohort(alleles=np.array([[2], [1], [0], [-1], [2]], dtype=np.int8),
               variants=make_variants(chrom=["1"], pos=[5], ref=["A"], alt=["C"], id=["v"]),
               samples=make_samples(list("abcde")), phased=False)
    paths = write_bed(c, str(tmp_path / "x"))
    assert [os.path.basename(p) for p in paths] == ["x.bed", "x.bim", "x.fam"]
    assert open(paths[0], "rb").read() == bytes([0x6C, 0x1B, 0x01, 0b01_11_10_00, 0b00])
    assert open(paths[1]).read() == "1\tv\t0\t5\tC\tA\n"
    with open_bed(paths[0]) as bed:  # bed-reader (count_A1) agrees
        np.testing.assert_array_equal(bed.read(dtype="float32")[:, 0], [2, 1, 0, np.nan, 2])


def test_fam_phenotype_and_sex_written_in_plink_coding(tmp_path):
    c = Cohort(alleles=np.zeros((3, 1), dtype=np.int8),
               variants=make_variants(chrom=["1"], pos=[5], ref=["A"], alt=["C"]),
               samples=make_samples(["a", "b", "c"], fid=["f", "f", "g"], super_pop=["EUR", "", "AFR"],
                                    sex=[1, 2, 0], phenotype=[0.0, 1.0, np.nan]), phased=False)
    write_bed(c, str(tmp_path / "x"), fid_column="super_pop")
    rows = [line.split() for line in open(tmp_path / "x.fam")]
    assert rows == [["EUR", "a", "0", "0", "1", "1"], ["f", "b", "0", "0", "2", "2"],
                    ["AFR", "c", "0", "0", "0", "-9"]]


def test_quantitative_phenotype_round_trip(tmp_path):
    c = Cohort(alleles=np.zeros((3, 1), dtype=np.int8),
               variants=make_variants(chrom=["1"], pos=[5], ref=["A"], alt=["C"]),
               samples=make_samples(["a", "b", "c"], phenotype=[0.25, np.nan, -3.5]), phased=False)
    write_bed(c, str(tmp_path / "q"))
    np.testing.assert_array_equal(read_bed(str(tmp_path / "q")).samples["phenotype"], [0.25, np.nan, -3.5])


def test_parse_plink_phenotype_binary_and_quantitative():
    np.testing.assert_array_equal(parse_plink_phenotype(np.array(["1", "2", "0", "-9", "NA"]), "f"),
                                  [0, 1, np.nan, np.nan, np.nan])
    np.testing.assert_array_equal(parse_plink_phenotype(np.array(["1.5", "0", "-9"]), "f"), [1.5, 0.0, np.nan])
    with pytest.raises(InputError, match="'x' is not a number"):
        parse_plink_phenotype(np.array(["1", "x"]), "f.fam")


# ------------------------------------------------------------------ errors
def test_missing_files_named(tmp_path):
    prefix, _ = _small(tmp_path)
    os.remove(f"{prefix}.fam")
    with pytest.raises(InputError, match=r"small\.fam: file not found.*PREFIX\.fam"):
        read_bed(prefix)


def test_truncated_bed(tmp_path):
    prefix, _ = _small(tmp_path)
    data = open(f"{prefix}.bed", "rb").read()
    open(f"{prefix}.bed", "wb").write(data[:-1])
    with pytest.raises(InputError, match="truncated"):
        read_bed(prefix)


def test_bim_line_count_mismatch(tmp_path):
    prefix, _ = _small(tmp_path)
    lines = open(f"{prefix}.bim").readlines()
    write_text(f"{prefix}.bim", "".join(lines[:-1]))
    with pytest.raises(InputError, match="2 variants in small.bim x 5 samples in small.fam"):
        read_bed(prefix)


def test_fam_line_count_mismatch(tmp_path):
    prefix, _ = _small(tmp_path)
    lines = open(f"{prefix}.fam").readlines()
    write_text(f"{prefix}.fam", "".join(lines + ["F9 I9 0 0 1 -9\n"] * 4))  # 9 samples need 3 bytes per variant
    with pytest.raises(InputError, match="do not match"):
        read_bed(prefix)


def test_bad_magic(tmp_path):
    prefix, _ = _small(tmp_path)
    data = bytearray(open(f"{prefix}.bed", "rb").read())
    data[2] = 0  # individual-major
    open(f"{prefix}.bed", "wb").write(bytes(data))
    with pytest.raises(InputError, match="not a SNP-major"):
        read_bed(prefix)


@pytest.mark.parametrize("line, message", [
    ("1 rs9 0 100 G\n", "line 2 has 5 columns, expected 6"),
    ("1 rs9 0 1e5 G A\n", "line 2 has a non-integer position"),
    ("1 rs9 x 100 G A\n", "non-numeric centimorgan"),
])
def test_malformed_bim(tmp_path, line, message):
    prefix, _ = _small(tmp_path)
    lines = open(f"{prefix}.bim").readlines()
    write_text(f"{prefix}.bim", lines[0] + line + lines[2])
    with pytest.raises(InputError, match=message):
        read_bed(prefix)


def test_empty_fam(tmp_path):
    prefix, _ = _small(tmp_path)
    write_text(f"{prefix}.fam", "")
    with pytest.raises(InputError, match="small.fam: file is empty"):
        read_bed(prefix)


def test_write_bed_rejects_whitespace_ids_and_haploid(tmp_path):
    v = make_variants(chrom=["1"], pos=[5], ref=["A"], alt=["C"])
    c = Cohort(alleles=np.zeros((1, 1), dtype=np.int8), variants=v, samples=make_samples(["a b"]), phased=False)
    with pytest.raises(InputError, match="contain whitespace.*'a b'"):
        write_bed(c, str(tmp_path / "w"))
    h = Cohort(alleles=np.zeros((1, 1), dtype=np.int8), variants=v, samples=make_samples(["a"]), phased=True, ploidy=1)
    with pytest.raises(InputError, match="ploidy 1"):
        write_bed(h, str(tmp_path / "w"))
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------ round trips
def test_phased_cohort_written_as_genotypes(tmp_path):
    h = np.array([[0, 1], [1, 1], [1, 0], [-1, 0]], dtype=np.int8)  # 2 samples x 2 haplotypes
    c = Cohort(alleles=h, variants=make_variants(chrom=["1", "1"], pos=[1, 2], ref=["A", "A"], alt=["G", "T"]),
               samples=make_samples(["a", "b"]), phased=True)
    write_bed(c, str(tmp_path / "p"))
    np.testing.assert_array_equal(read_bed(str(tmp_path / "p")).alleles, [[1, 2], [-1, 0]])


@settings(max_examples=30, deadline=None)
@given(cohorts(missing=True))
def test_bed_round_trip_is_lossless(cohort):
    expected = in_genomic_order(cohort)
    with tempfile.TemporaryDirectory() as d:
        write_bed(cohort, os.path.join(d, "r"))
        back = read_bed(os.path.join(d, "r"))
    np.testing.assert_array_equal(back.alleles, expected.alleles)
    pd.testing.assert_frame_equal(back.variants, expected.variants)
    for col in ("sample", "fid", "sex"):
        assert list(back.samples[col]) == list(expected.samples[col])
    np.testing.assert_array_equal(back.samples["phenotype"], expected.samples["phenotype"])


def test_binary_bim_is_refused(tmp_path):
    prefix, _ = _small(tmp_path)
    open(f"{prefix}.bim", "wb").write(b"\x1f\x8b\x08\x00\xff\xfe\x00")
    with pytest.raises(InputError, match="small.bim: not a text file"):
        read_bed(prefix)


# ------------------------------------------------------------------ many chromosomes, one fileset per chromosome (issue 17)
def _genome(n_smp=7, chroms=("1", "2", "10", "22", "X"), per=4, seed=0):
    rng = np.random.default_rng(seed)
    chrom = np.repeat(list(chroms), per)
    pos = np.tile(np.arange(1, per + 1) * 500, len(chroms))
    v = make_variants(chrom=chrom, pos=pos, ref=["A"] * len(pos), alt=rng.choice(list("CGT"), len(pos)))
    g = rng.integers(-1, 3, size=(n_smp, len(pos))).astype(np.int8)
    return Cohort(alleles=g, variants=v, samples=make_samples([f"s{i}" for i in range(n_smp)]), phased=False)


def test_many_chromosomes_round_trip_in_genomic_order(tmp_path):
    c = _genome()
    shuffled = c.subset(variants=np.random.default_rng(3).permutation(c.n_variants))
    write_bed(shuffled, str(tmp_path / "g"))
    back = read_bed(str(tmp_path / "g"))
    np.testing.assert_array_equal(back.alleles, c.alleles)
    pd.testing.assert_frame_equal(back.variants.drop(columns="cm", errors="ignore"), c.variants)
    bim = pd.read_csv(tmp_path / "g.bim", sep="\t", header=None, dtype=str)
    assert list(dict.fromkeys(bim[0])) == ["1", "2", "10", "22", "X"]


def test_one_fileset_per_chromosome_joined_by_commas(tmp_path):
    c = _genome()
    chrom = c.variants["chrom"].to_numpy()
    prefixes = []
    for name in ("1", "2", "10", "22", "X"):
        prefixes.append(str(tmp_path / f"chr{name}"))
        write_bed(c.subset(variants=chrom == name), prefixes[-1])
    joined = read_bed(",".join(prefixes))
    np.testing.assert_array_equal(joined.alleles, c.alleles)
    assert list(joined.variants["id"]) == list(c.variants["id"]) and len(joined.meta["sources"]) == 5
    write_bed(c.subset(samples=[1, 0, 2, 3, 4, 5, 6], variants=chrom == "X"), str(tmp_path / "swapped"))
    with pytest.raises(InputError, match="same people in the same order"):
        read_bed(f"{prefixes[0]},{tmp_path / 'swapped'}")
    with pytest.raises(InputError, match="nope.bed"):
        read_bed(f"{prefixes[0]},{tmp_path / 'nope'}")


def test_fam_from_a_spooled_table_equals_the_whole_table(tmp_path):
    from genosynth.io.plink import write_bed_blocks
    from genosynth.io.samples import SampleSpool

    samples = make_samples(list("abcde"), super_pop=["EUR", "", "AFR", "EAS", "EUR"], sex=[1, 2, 0, 1, 2],
                           phenotype=[0.0, 1.0, np.nan, 1.0, 3.5])  # quantitative only in the last batch
    variants = make_variants(chrom=["1", "1"], pos=[5, 9], ref=["A", "C"], alt=["C", "G"])
    g = np.array([[0, 1, 2, -1, 2], [1, 1, 0, 0, 2]], dtype=np.int8)  # (V, N)
    write_bed_blocks(str(tmp_path / "whole"), [g], variants=variants, samples=samples, fid_column="super_pop")
    with SampleSpool(str(tmp_path / "s.tmp")) as spool:
        spool.append(samples.iloc[:2])
        spool.append(samples.iloc[2:].reset_index(drop=True))
        write_bed_blocks(str(tmp_path / "spool"), [g], variants=variants, samples=spool, fid_column="super_pop")
    for ext in ("bed", "bim", "fam"):
        assert open(tmp_path / f"spool.{ext}", "rb").read() == open(tmp_path / f"whole.{ext}", "rb").read()
    assert open(tmp_path / "spool.fam").read().splitlines()[0] == "EUR\ta\t0\t0\t1\t0.0"
