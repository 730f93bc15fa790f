"""Sample tables: column aliases, sex and phenotype codings, joining by id, writing."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from _io_helpers import write_text
from genosynth.cohort import Cohort, make_samples, make_variants
from genosynth.errors import InputError
from genosynth.io.samples import attach_samples, parse_phenotype, read_sample_table, write_sample_table


def _cohort(ids=("a", "b", "c"), **labels):
    return Cohort(alleles=np.zeros((len(ids), 1), dtype=np.int8),
                  variants=make_variants(chrom=["1"], pos=[1], ref=["A"], alt=["G"]),
                  samples=make_samples(list(ids), **labels), phased=False)


def test_panel_tsv(data_805):
    t = read_sample_table(str(data_805 / "panel.tsv"))
    assert list(t.columns) == ["sample", "pop", "super_pop", "sex"]
    assert len(t) == 2002 and t["sample"].iloc[0] == "HG00096"
    assert set(t["sex"]) == {1, 2} and t["sex"].iloc[0] == 1 and t["sex"].iloc[1] == 2


@pytest.mark.parametrize("header", ["#IID", "IID", "id", "sample", "Sample_ID"])
def test_id_column_aliases(tmp_path, header):
    t = read_sample_table(write_text(tmp_path / "s.tsv", f"{header}\tPOP\textra\na\tGBR\tq\nb\tYRI\tr\n"))
    assert list(t.columns) == ["sample", "pop", "extra"]
    assert list(t["sample"]) == ["a", "b"] and list(t["extra"]) == ["q", "r"]


def test_psam_style_whitespace_table(tmp_path):
    t = read_sample_table(write_text(tmp_path / "x.psam", "#FID IID SEX PHENO1\nf1 a 1 2\nf2 b 2 1\nf3 c 0 -9\n"))
    assert list(t["fid"]) == ["f1", "f2", "f3"] and list(t["sex"]) == [1, 2, 0]
    np.testing.assert_array_equal(t["phenotype"], [1.0, 0.0, np.nan])


@pytest.mark.parametrize("tokens, expected", [
    (["case", "control", "NA", "Case"], [1, 0, np.nan, 1]),
    (["2", "1", "0", "-9"], [1, 0, np.nan, np.nan]),          # PLINK coding
    (["1", "0", "NA", ""], [1, 0, np.nan, np.nan]),            # 0/1 coding
    (["0.5", "-1.25", "-9", "3"], [0.5, -1.25, np.nan, 3.0]),  # quantitative
    (["NA", ""], [np.nan, np.nan]),
])
def test_phenotype_codings(tokens, expected):
    np.testing.assert_array_equal(parse_phenotype(tokens, "t"), expected)


def test_ambiguous_and_bad_phenotype():
    with pytest.raises(InputError, match="write the column as case/control"):
        parse_phenotype(["1", "1"], "t")
    with pytest.raises(InputError, match="'sick' is neither case/control nor a number"):
        parse_phenotype(["case", "sick"], "t")


def test_bad_tables(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        read_sample_table(str(tmp_path / "none.tsv"))
    with pytest.raises(InputError, match="no sample id column"):
        read_sample_table(write_text(tmp_path / "a.tsv", "name\tpop\na\tGBR\n"))
    with pytest.raises(InputError, match="duplicate sample ids"):
        read_sample_table(write_text(tmp_path / "b.tsv", "sample\tpop\na\tGBR\na\tYRI\n"))
    with pytest.raises(InputError, match="sex value 'x'"):
        read_sample_table(write_text(tmp_path / "c.tsv", "sample\tsex\na\tx\n"))
    with pytest.raises(InputError, match="empty"):
        read_sample_table(write_text(tmp_path / "d.tsv", ""))


def test_attach_joins_by_id_not_by_order(tmp_path):
    t = read_sample_table(write_text(tmp_path / "s.tsv", "sample\tpop\tsex\tphenotype\nc\tYRI\tfemale\tcase\n"
                                                         "a\tGBR\tmale\tcontrol\nb\tCHB\tNA\tNA\n"))
    c = attach_samples(_cohort(sex=[0, 2, 1], phenotype=[np.nan, 1.0, np.nan]), t)
    assert list(c.samples["pop"]) == ["GBR", "CHB", "YRI"]
    assert list(c.samples["sex"]) == [1, 2, 2]  # b: NA in the table keeps the cohort's value
    np.testing.assert_array_equal(c.samples["phenotype"], [0.0, 1.0, 1.0])
    assert c.meta["samples_without_table_row"] == 0


def test_unknown_ids_are_an_error_naming_the_fix(tmp_path):
    t = read_sample_table(write_text(tmp_path / "s.tsv", "sample\tpop\na\tGBR\nzz\tYRI\nyy\tCHB\n"))
    with pytest.raises(InputError, match=r"2 sample ids are not in the genotype file \(first: zz, yy\).*"
                                         r"--allow-unknown-samples"):
        attach_samples(_cohort(), t)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        c = attach_samples(_cohort(), t, allow_unknown=True)
    assert list(c.samples["pop"]) == ["GBR", "", ""]
    assert c.meta["samples_without_table_row"] == 2
    assert any("2 of 3 samples have no row" in str(w.message) for w in caught)


def test_write_and_read_back(tmp_path):
    c = _cohort(pop=["GBR", "", "YRI"], super_pop=["EUR", "", "AFR"], sex=[1, 0, 2],
                phenotype=[1.0, np.nan, 0.0], batch=["x", "y", "z"])
    path = write_sample_table(c, str(tmp_path / "o.samples.tsv"))[0]
    lines = open(path).read().splitlines()
    assert lines[0] == "sample\tfid\tpop\tsuper_pop\tsex\tphenotype\tbatch"
    assert lines[1] == "a\ta\tGBR\tEUR\tmale\tcase\tx"
    assert lines[2] == "b\tb\t\t\tunknown\tNA\ty"
    back = attach_samples(_cohort(), read_sample_table(path))
    for col in ("sample", "fid", "pop", "super_pop", "sex", "batch"):
        assert list(back.samples[col]) == list(c.samples[col])
    np.testing.assert_array_equal(back.samples["phenotype"], c.samples["phenotype"])


def test_binary_table_is_refused(tmp_path):
    (tmp_path / "s.tsv.gz").write_bytes(b"\x1f\x8b\x08\x00\xff\xfe\x00")
    with pytest.raises(InputError, match="not a UTF-8 text table"):
        read_sample_table(str(tmp_path / "s.tsv.gz"))


def _spool(path, table, cuts):
    """A SampleSpool holding ``table`` split at the row indices ``cuts``."""
    from genosynth.io.samples import SampleSpool

    spool = SampleSpool(str(path))
    for part in np.split(np.arange(len(table)), cuts):
        spool.append(table.iloc[part].reset_index(drop=True))
    return spool


@pytest.mark.parametrize("phenotype", [[1.0, np.nan, 0.0, 0.0, 1.0], [1.0, np.nan, 0.0, 2.5, 1.0]])
def test_spooled_table_is_written_as_the_whole_table(tmp_path, phenotype):
    # batch 1 holds only 0/1: it is written as case/control only when the whole table is binary
    c = _cohort(("a", "b", "c", "d", "e"), pop=["GBR", "", "YRI", "CHB", "GBR"], sex=[1, 0, 2, 2, 1],
                phenotype=phenotype, batch=["x", "y", "z", "w", "v"])
    whole = open(write_sample_table(c, str(tmp_path / "whole.tsv"))[0], "rb").read()
    with _spool(tmp_path / "s.tmp", c.samples, [3]) as spool:
        assert len(spool) == 5 and spool.phenotype_binary == (2.5 not in phenotype)
        assert open(write_sample_table(spool, str(tmp_path / "spooled.tsv"))[0], "rb").read() == whole
        assert [len(t) for t in spool.batches()] == [3, 2]
    assert not (tmp_path / "s.tmp").exists()  # closing removes it
    assert (b"2.5" in whole) == (2.5 in phenotype) and (b"control" in whole) == (2.5 not in phenotype)
