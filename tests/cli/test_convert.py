"""``genosynth convert``: conversions with filters, and every bad input -> one message, exit 2, no output."""

from __future__ import annotations

import numpy as np
import pytest

from _io_helpers import data_files, tiny_vcf, write_text
from genosynth.cli import main
from genosynth.cohort import Cohort, make_samples, make_variants
from genosynth.io.hapt import read_hapt
from genosynth.io.order import in_genomic_order
from genosynth.io.plink import read_bed, write_bed
from genosynth.io.samples import read_sample_table
from genosynth.io.vcf import read_vcf


def _run(argv, capsys):
    status = main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture()
def small_bed(tmp_path):
    rng = np.random.default_rng(3)
    g = rng.integers(-1, 3, size=(6, 4)).astype(np.int8)
    c = Cohort(alleles=g, variants=make_variants(chrom=["1"] * 4, pos=[10, 20, 30, 40], ref=list("AAAA"),
                                                 alt=list("CGTC")),
               samples=make_samples([f"s{i}" for i in range(6)]), phased=False)
    prefix = str(tmp_path / "in" / "small")
    (tmp_path / "in").mkdir()
    write_bed(c, prefix)
    return prefix


# ------------------------------------------------------------------ conversions
def test_hapt_to_bed_with_samples_keep_remove_maf(data_805, tmp_path, capsys):
    keep = write_text(tmp_path / "keep.txt", "\n".join(f"FAM HG00{n}" for n in range(96, 140)) + "\nNA99999\n")
    remove = write_text(tmp_path / "remove.txt", "HG00096\nHG00097\n")
    out = str(tmp_path / "o" / "res")
    status, stdout, err = _run(["convert", "--hapt", str(data_805 / "haplotypes.hapt.gz"),
                                "--legend", str(data_805 / "snps.legend"), "--samples", str(data_805 / "panel.tsv"),
                                "--keep", keep, "--remove", remove, "--maf", "0.1", "--tag-column", "super_pop",
                                "--format", "bed", "--out", out], capsys)
    assert status == 0, err
    full = read_hapt(str(data_805 / "haplotypes.hapt.gz"), str(data_805 / "snps.legend"))
    ids = full.samples["sample"].to_numpy()
    wanted = np.isin(ids, [f"HG00{n}" for n in range(98, 140)])
    g = full.genotypes()[wanted]  # (n, V)
    af = g.mean(axis=0) / 2
    maf_ok = np.minimum(af, 1 - af) >= 0.1
    got = read_bed(out)
    assert got.n_samples == wanted.sum() and got.n_variants == maf_ok.sum()
    expected = in_genomic_order(full.subset(samples=wanted, variants=maf_ok))
    np.testing.assert_array_equal(got.alleles, expected.genotypes())
    assert set(got.samples["fid"]) == {"EUR"}  # --tag-column super_pop
    table = read_sample_table(f"{out}.samples.tsv")
    assert list(table["sample"]) == list(ids[wanted]) and set(table["super_pop"]) == {"EUR"}
    log = open(f"{out}.log").read()
    assert "--keep" in log and f"{maf_ok.sum()} of 805 variants remain" in log
    absent = 45 - np.isin([f"HG00{n}" for n in range(96, 140)], ids).sum()
    assert f"{absent} of 45 listed ids are not in the input" in err  # NA99999 and gaps in the numbering
    assert data_files(tmp_path / "o") == ["res.bed", "res.bim", "res.fam", "res.samples.tsv"]


def test_vcf_to_vcf_and_hapt(data_vcf, tmp_path, capsys):
    src = str(data_vcf / "kidd_aisnp.dev.vcf.gz")
    out = str(tmp_path / "k")
    assert _run(["convert", "--vcf", src, "--format", "vcf", "--out", out], capsys)[0] == 0
    assert _run(["convert", "--vcf", f"{out}.vcf.gz", "--format", "hapt", "--out", out], capsys)[0] == 0
    original = in_genomic_order(read_vcf(src))
    np.testing.assert_array_equal(read_vcf(f"{out}.vcf.gz").alleles, original.alleles)
    np.testing.assert_array_equal(read_hapt(f"{out}.hapt", f"{out}.legend").alleles, original.alleles)


def test_bed_to_vcf_keeps_missing(small_bed, tmp_path, capsys):
    out = str(tmp_path / "v")
    assert _run(["convert", "--bfile", small_bed, "--format", "vcf", "--threads", "1", "--out", out], capsys)[0] == 0
    np.testing.assert_array_equal(read_vcf(f"{out}.vcf.gz").alleles, read_bed(small_bed).alleles)
    assert "threads: 1" in open(f"{out}.log").read()


# ------------------------------------------------------------------ bad inputs
def _assert_user_error(argv, capsys, out_dir, *patterns):
    status, _, err = _run(argv, capsys)
    assert status == 2
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if not line.startswith("Warning: ")] == [err.splitlines()[-1]]
    assert err.splitlines()[-1].startswith("Error: ")  # one message line
    for pattern in patterns:
        assert pattern in err, err
    assert data_files(out_dir) == []
    log = [f for f in out_dir.iterdir() if f.suffix == ".log"]
    assert len(log) == 1 and "Error: " in log[0].read_text()


def _bfile_case(small_bed, case):
    if case == "truncated bed":
        data = open(f"{small_bed}.bed", "rb").read()
        open(f"{small_bed}.bed", "wb").write(data[:-2])
    elif case == "bim count":
        lines = open(f"{small_bed}.bim").readlines()
        write_text(f"{small_bed}.bim", "".join(lines + lines[:1]))
    elif case == "fam count":
        lines = open(f"{small_bed}.fam").readlines()
        write_text(f"{small_bed}.fam", "".join(lines[:-3]))
    elif case == "bim columns":
        lines = open(f"{small_bed}.bim").readlines()
        write_text(f"{small_bed}.bim", "".join(lines[:2] + ["1 rs 0 50 C\n"] + lines[3:]))
    elif case == "bim position":
        lines = open(f"{small_bed}.bim").readlines()
        write_text(f"{small_bed}.bim", "".join(lines[:2] + ["1 rs 0 fifty C A\n"] + lines[3:]))
    elif case == "empty fam":
        write_text(f"{small_bed}.fam", "")
    elif case == "missing":
        return small_bed + "_nope"
    return small_bed


@pytest.mark.parametrize("case, patterns", [
    ("missing", ["small_nope.bed", "file not found", "PREFIX.bed, PREFIX.bim and PREFIX.fam"]),
    ("truncated bed", ["small.bed: file is truncated", "re-export"]),
    ("bim count", ["5 variants in small.bim x 6 samples in small.fam", "do not match"]),
    ("fam count", ["4 variants in small.bim x 3 samples in small.fam", "do not match"]),
    ("bim columns", ["small.bim: line 3 has 5 columns, expected 6"]),
    ("bim position", ["small.bim: line 3 has a non-integer position (column 4) 'fifty'"]),
    ("empty fam", ["small.fam: file is empty"]),
])
def test_bad_bfile(small_bed, tmp_path, capsys, case, patterns):
    prefix = _bfile_case(small_bed, case)
    out_dir = tmp_path / "out"
    _assert_user_error(["convert", "--bfile", prefix, "--format", "vcf", "--out", str(out_dir / "r")],
                       capsys, out_dir, *patterns)


@pytest.mark.parametrize("records, kwargs, patterns", [
    (["1 10 a A G . . . DP 3 4 5"], {"gt_header": False}, ["bad.vcf: the header declares no FORMAT/GT"]),
    (["1 10 a A G . . . GT 0|1 0|0 1|1", "1 20 b A G . . . GT 0|1 1 1|1"], {}, ["mixed ploidy at record 2",
                                                                              "bcftools +fixploidy"]),
    (["1 10 a A G,T . . . GT 0|1 0|2 0|0"], {}, ["no usable records", "1 multi-allelic", "bcftools norm -m -any"]),
    (["1 10 a A G . . ."], {"samples": ()}, ["has no samples"]),
])
def test_bad_vcf(tmp_path, capsys, records, kwargs, patterns):
    path = tiny_vcf(tmp_path / "bad.vcf", records, **kwargs)
    out_dir = tmp_path / "out"
    _assert_user_error(["convert", "--vcf", path, "--format", "bed", "--out", str(out_dir / "r")],
                       capsys, out_dir, *patterns)


def test_empty_and_missing_vcf(tmp_path, capsys):
    out_dir = tmp_path / "out"
    empty = write_text(tmp_path / "empty.vcf.gz", "")
    _assert_user_error(["convert", "--vcf", empty, "--format", "bed", "--out", str(out_dir / "r")],
                       capsys, out_dir, "empty.vcf.gz: file is empty")
    _assert_user_error(["convert", "--vcf", str(tmp_path / "none.vcf"), "--format", "bed", "--out",
                        str(out_dir / "r")], capsys, out_dir, "none.vcf: file not found")


@pytest.mark.parametrize("hapt, patterns", [
    ("Real s_A 0 1\nReal s_B 0 one\n", ["x.hapt: line 2 has a non-numeric allele 'one'"]),
    ("", ["x.hapt: no haplotypes found (empty file)"]),
])
def test_bad_hapt(tmp_path, capsys, hapt, patterns):
    legend = write_text(tmp_path / "x.legend", "id position a0 a1\n1:10_A_G 10 A G\n1:20_C_T 20 C T\n")
    path = write_text(tmp_path / "x.hapt", hapt)
    out_dir = tmp_path / "out"
    _assert_user_error(["convert", "--hapt", path, "--legend", legend, "--format", "vcf", "--out",
                        str(out_dir / "r")], capsys, out_dir, *patterns)


def test_sample_table_with_unknown_ids(small_bed, tmp_path, capsys):
    table = write_text(tmp_path / "s.tsv", "sample\tpop\ns0\tGBR\nghost1\tYRI\nghost2\tCHB\n")
    out_dir = tmp_path / "out"
    argv = ["convert", "--bfile", small_bed, "--samples", table, "--format", "bed", "--out", str(out_dir / "r")]
    _assert_user_error(argv, capsys, out_dir, "2 sample ids are not in the genotype file (first: ghost1, ghost2)",
                       "--allow-unknown-samples")
    status, _, err = _run(argv + ["--allow-unknown-samples"], capsys)
    assert status == 0 and "5 samples have no row in --samples" in err
    assert list(read_sample_table(str(out_dir / "r.samples.tsv"))["pop"]) == ["GBR"] + [""] * 5


@pytest.mark.parametrize("extra, patterns", [
    (["--maf", "0.5001"], ["--maf must lie in [0, 0.5]"]),
    (["--keep", "KEEP"], ["no samples left after --keep/--remove"]),
    (["--remove", "NONE"], ["NONE: file not found"]),
    (["--tag-column", "colour"], ["sample table has no column 'colour'"]),
    (["--format", "hapt"], ["this cohort is unphased. Choose --format bed or vcf"]),
])
def test_bad_options(small_bed, tmp_path, capsys, extra, patterns):
    keep = write_text(tmp_path / "keep.txt", "nobody\n")
    extra = [keep if e == "KEEP" else str(tmp_path / "none.txt") if e == "NONE" else e for e in extra]
    patterns = [p.replace("NONE", "none.txt") for p in patterns]
    fmt = [] if "--format" in extra else ["--format", "bed"]
    out_dir = tmp_path / "out"
    _assert_user_error(["convert", "--bfile", small_bed, *fmt, *extra, "--out", str(out_dir / "r")],
                       capsys, out_dir, *patterns)


def test_extract_and_exclude_variant_lists(data_805, tmp_path, capsys):
    full = read_hapt(str(data_805 / "haplotypes.hapt.gz"), str(data_805 / "snps.legend"))
    ids = full.variants["id"].to_numpy()
    extract = write_text(tmp_path / "extract.snplist", "#id\n" + "\n".join(ids[:40]) + "\nnot_a_snp\n")
    exclude = write_text(tmp_path / "exclude.txt", "\n".join(ids[:5]) + "\n")
    out = str(tmp_path / "x")
    status, _, err = _run(["convert", "--hapt", str(data_805 / "haplotypes.hapt.gz"),
                           "--legend", str(data_805 / "snps.legend"), "--extract", extract,
                           "--exclude", exclude, "--format", "hapt", "--out", out], capsys)
    assert status == 0, err
    got = read_hapt(f"{out}.hapt", f"{out}.legend")
    assert list(got.variants["id"]) == list(ids[5:40])
    np.testing.assert_array_equal(got.alleles, full.alleles[:, 5:40])
    assert "1 of 41 listed variant ids are not in the input" in err
    assert "35 of 805 variants remain" in open(f"{out}.log").read()


def test_extract_that_matches_nothing_is_an_error(data_805, tmp_path, capsys):
    extract = write_text(tmp_path / "extract.txt", "rs_none\n")
    out = tmp_path / "o" / "x"
    status, _, err = _run(["convert", "--hapt", str(data_805 / "haplotypes.hapt.gz"),
                           "--legend", str(data_805 / "snps.legend"), "--extract", extract,
                           "--format", "bed", "--out", str(out)], capsys)
    assert status == 2 and "no variants left after --extract" in err
    assert data_files(tmp_path / "o") == []


# ------------------------------------------------------------------ several chromosomes (issue 17)
@pytest.fixture(scope="module")
def genome(tmp_path_factory):
    """A phased simulated genome of 3 chromosomes (2, 10, X: numeric order differs from text order)."""
    from genosynth.simulation import simulate_cohort

    c = simulate_cohort(n_samples=30, sequence_length=100_000, chromosomes=["2", "10", "X"], max_snps=15, seed=5)
    folder = tmp_path_factory.mktemp("genome")
    return folder, c


def test_multi_chromosome_vcf_bed_vcf_keeps_contigs_positions_alleles(genome, capsys):
    from genosynth.io.vcf import write_vcf

    folder, c = genome
    write_vcf(c, str(folder / "g.vcf.gz"))
    cols = ["chrom", "pos", "id", "ref", "alt"]
    assert _run(["convert", "--vcf", str(folder / "g.vcf.gz"), "--format", "bed", "--out", str(folder / "b")],
                capsys)[0] == 0
    assert _run(["convert", "--bfile", str(folder / "b"), "--format", "vcf", "--out", str(folder / "v")], capsys)[0] == 0
    assert _run(["convert", "--vcf", str(folder / "g.vcf.gz"), "--format", "vcf", "--out", str(folder / "p")],
                capsys)[0] == 0
    bed, vcf, phased = read_bed(str(folder / "b")), read_vcf(str(folder / "v.vcf.gz")), read_vcf(str(folder / "p.vcf.gz"))
    for back in (bed, vcf, phased):
        assert back.variants[cols].equals(c.variants[cols])
    np.testing.assert_array_equal(bed.alleles, c.genotypes())
    assert not vcf.phased and phased.phased  # a bed drops phase; VCF -> VCF keeps it
    np.testing.assert_array_equal(phased.alleles, c.alleles)
    contigs = [ln.split("ID=")[1].rstrip(">\n") for ln in __import__("gzip").open(folder / "p.vcf.gz", "rt")
               if ln.startswith("##contig")]
    assert contigs == ["2", "10", "X"]


def test_one_file_per_chromosome_in_and_out_of_order(genome, tmp_path, capsys):
    from genosynth.io.vcf import write_vcf

    folder, c = genome
    chrom = c.variants["chrom"].to_numpy()
    files = {}
    for name in ("2", "10", "X"):
        files[name] = str(tmp_path / f"chr{name}.vcf.gz")
        write_vcf(c.subset(variants=chrom == name), files[name])
    out = str(tmp_path / "joined")
    listed = ",".join(files[k] for k in ("X", "10", "2"))  # given out of order: written in genomic order
    status, stdout, err = _run(["convert", "--vcf", listed, "--format", "vcf", "--out", out], capsys)
    assert status == 0, err
    back = read_vcf(f"{out}.vcf.gz")
    assert back.phased and back.variants[["chrom", "pos", "ref", "alt"]].equals(c.variants[["chrom", "pos", "ref", "alt"]])
    np.testing.assert_array_equal(back.alleles, c.alleles)
    assert "Loaded 30 samples x 45 variants" in stdout
    beds = []
    for name in ("2", "10", "X"):
        beds.append(str(tmp_path / f"b{name}"))
        write_bed(c.subset(variants=chrom == name), beds[-1])
    assert _run(["convert", "--bfile", ",".join(beds), "--format", "bed", "--out", str(tmp_path / "jb")], capsys)[0] == 0
    np.testing.assert_array_equal(read_bed(str(tmp_path / "jb")).alleles, c.genotypes())
