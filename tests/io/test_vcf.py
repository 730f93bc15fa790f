"""VCF reading (cyvcf2) and BGZF VCF writing: real files, record filters, errors, round trips."""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import shutil
import struct
import subprocess
import tempfile

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings

from _io_helpers import cohorts, tiny_vcf, write_text
from genosynth.cohort import Cohort, make_samples, make_variants
from genosynth.errors import InputError
from genosynth.io.order import in_genomic_order
from genosynth.io.plink import read_bed, write_bed
from genosynth.io.vcf import BgzfWriter, read_vcf, write_vcf


def _raw_haplotypes(path):
    """Parse a phased VCF.gz with plain Python: ids, alt alleles, haplotypes (2N, V)."""
    ids, alts, cols = [], [], []
    with gzip.open(path, "rt") as fh:
        for line in fh:
            if line.startswith("#"):
                continue
            f = line.rstrip("\n").split("\t")
            ids.append(f[2])
            alts.append(f[4])
            cols.append([int(a) for gt in f[9:] for a in gt.split("|")])
    return ids, alts, np.array(cols, dtype=np.int8).T


@pytest.mark.parametrize("name, n_var", [("kidd_aisnp.dev.vcf.gz", 55), ("seldin_aisnp.dev.vcf.gz", 127)])
def test_real_vcf_matches_raw_text(data_vcf, name, n_var):
    path = str(data_vcf / name)
    c = read_vcf(path)
    ids, alts, h = _raw_haplotypes(path)
    assert c.phased and c.ploidy == 2 and c.n_samples == 2002 and c.n_variants == n_var
    assert list(c.variants["id"]) == ids and list(c.variants["alt"]) == alts
    np.testing.assert_array_equal(c.alleles, h)
    assert c.samples["sample"].iloc[0] == "HG00096"
    assert c.meta["skipped"] == {"multi-allelic": 0, "non-SNP": 0}


def test_known_record_of_kidd(data_vcf):
    # first record: 1 101709563 rs3737576 T C ... HG00096 0|0, 21st sample (HG00119) 1|0
    c = read_vcf(str(data_vcf / "kidd_aisnp.dev.vcf.gz"))
    row = c.variants.iloc[0]
    assert (row["chrom"], row["pos"], row["id"], row["ref"], row["alt"]) == ("1", 101709563, "rs3737576", "T", "C")
    h = c.haplotypes()  # (N, 2, V)
    assert c.samples["sample"].iloc[20] == "HG00119"
    assert h[20, :, 0].tolist() == [1, 0] and h[0, :, 0].tolist() == [0, 0]
    assert c.allele_frequencies()[0] == pytest.approx(c.alleles[:, 0].mean())


def test_progress_bar_counts_records_and_changes_nothing(data_vcf, monkeypatch, capsys):
    import genosynth.runtime as runtime

    path = str(data_vcf / "kidd_aisnp.dev.vcf.gz")
    plain = read_vcf(path)
    assert read_vcf(path, progress=True).alleles.tobytes() == plain.alleles.tobytes()
    assert "reading" not in capsys.readouterr().err  # a read under 3 s shows no bar
    shown = {}
    real = runtime.progress_bar

    def no_delay(total, desc, enabled, initial=0, **kw):
        shown["bar"] = real(total, desc, enabled, initial, **{**kw, "delay": 0.0})
        return shown["bar"]

    monkeypatch.setattr(runtime, "progress_bar", no_delay)
    read_vcf(path, progress=True)
    assert shown["bar"].n == plain.n_variants and "reading kidd_aisnp.dev.vcf.gz" in capsys.readouterr().err


def test_skips_multiallelic_and_non_snp(tmp_path):
    path = tiny_vcf(tmp_path / "t.vcf", [
        "1 10 a A G . . . GT 0|1 1|1 0|0",
        "1 20 b A G,T . . . GT 0|1 0|2 0|0",     # multi-allelic
        "1 30 c A AT . . . GT 0|1 0|0 0|0",      # indel
        "1 40 d A <DEL> . . . GT 0|1 0|0 0|0",   # symbolic
        "1 50 e AC GT . . . GT 0|1 0|0 0|0",     # MNP
        "1 60 f A * . . . GT 0|1 0|0 0|0",       # spanning deletion
        "1 70 g C . . . . GT 0|0 0|0 0|0",       # monomorphic: kept
    ])
    c = read_vcf(path)
    assert c.meta["skipped"] == {"multi-allelic": 1, "non-SNP": 4}
    assert list(c.variants["id"]) == ["a", "g"] and list(c.variants["alt"]) == ["G", "."]
    assert c.phased
    np.testing.assert_array_equal(c.haplotypes()[:, :, 0], [[0, 1], [1, 1], [0, 0]])


def test_phase_missing_and_unphased_calls(tmp_path):
    phased = read_vcf(tiny_vcf(tmp_path / "p.vcf", ["1 10 a A G . . . GT 0|1 ./. 1|.", "1 20 b A G . . . GT 1|1 0|0 .|."]))
    assert phased.phased  # ./. carries no phase
    np.testing.assert_array_equal(phased.haplotypes()[:, :, 0], [[0, 1], [-1, -1], [1, -1]])
    np.testing.assert_array_equal(phased.genotypes(), [[1, 2], [-1, 0], [-1, -1]])
    mixed = read_vcf(tiny_vcf(tmp_path / "m.vcf", ["1 10 a A G . . . GT 0|1 0/1 1/.", "1 20 b A G . . . GT 1|1 0|0 1|0"]))
    assert not mixed.phased
    np.testing.assert_array_equal(mixed.alleles, [[1, 2], [1, 0], [-1, 1]])
    none = read_vcf(tiny_vcf(tmp_path / "n.vcf", ["1 10 a A G . . . GT ./. ./. ./."]))
    assert not none.phased and (none.alleles == -1).all()


@pytest.mark.parametrize("records, kwargs, message", [
    (["1 10 a A G . . . GT 0|1 0|0 1"], {}, "mixed ploidy at record 1"),
    (["1 10 a A G . . . GT 0|1 0|0 1|1", "1 20 b A G . . . GT 0 1 1"], {}, r"mixed ploidy at record 2 \(1:20\)"),
    (["1 10 a A G . . . DP 3 4 5"], {"gt_header": False}, "declares no FORMAT/GT"),
    (["1 10 a A G . . . DP 3 4 5"], {}, r"record 1 \(1:10\) has no GT field"),
    (["1 10 a A G . . ."], {"samples": ()}, "no samples"),
    (["1 10 a A G,T . . . GT 0|1 0|2 0|0", "1 20 b A C,T . . . GT 0|1 0|2 0|0"], {},
     "no usable records.*skipped 2 multi-allelic and 0 non-SNP.*bcftools norm -m -any"),
    ([], {}, "no usable records"),
])
def test_read_vcf_errors(tmp_path, records, kwargs, message):
    with pytest.raises(InputError, match=message):
        read_vcf(tiny_vcf(tmp_path / "bad.vcf", records, **kwargs))


def test_missing_empty_and_garbage_files(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        read_vcf(str(tmp_path / "nope.vcf.gz"))
    with pytest.raises(InputError, match="file is empty"):
        read_vcf(write_text(tmp_path / "empty.vcf", ""))
    with pytest.raises(InputError, match="cannot be read as VCF"):
        read_vcf(write_text(tmp_path / "junk.vcf", "this is not a vcf\n"))


def test_truncated_vcf_gz(data_vcf, tmp_path):
    data = open(data_vcf / "kidd_aisnp.dev.vcf.gz", "rb").read()
    path = tmp_path / "cut.vcf.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"cut.vcf.gz: cannot read record \d+ .*truncated or malformed"):
        read_vcf(str(path))


# ------------------------------------------------------------------ writing
def _cohort(phased=True):
    alleles = np.array([[0, 1, 1], [1, 1, 0], [0, -1, 1], [0, 0, 0]], dtype=np.int8)
    if not phased:
        alleles = np.array([[1, 2, -1], [0, 0, 1]], dtype=np.int8)
    return Cohort(alleles=alleles,
                  variants=make_variants(chrom=["2", "1", "1"], pos=[5, 30, 10], ref=["A", "C", "G"],
                                         alt=["T", "G", "A"], id=["x", "y", "z"]),
                  samples=make_samples(["s1", "s2"]), phased=phased,
                  meta={"privacy": {"epsilon": 3.0, "delta": 1e-5, "mechanism": "DP-SGD"}})


def test_write_vcf_header_and_records(tmp_path):
    path = write_vcf(_cohort(), str(tmp_path / "o.vcf.gz"))[0]
    text = gzip.open(path, "rt").read().splitlines()
    header = [line for line in text if line.startswith("##")]
    assert header[0] == "##fileformat=VCFv4.2"
    assert "##source=genosynth" in header
    assert '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">' in header
    assert [h for h in header if h.startswith("##contig")] == ["##contig=<ID=1>", "##contig=<ID=2>"]
    privacy = [h for h in header if h.startswith("##genosynth_privacy=")]
    assert json.loads(privacy[0].split("=", 1)[1]) == {"delta": 1e-5, "epsilon": 3.0, "mechanism": "DP-SGD"}
    body = [line.split("\t") for line in text if not line.startswith("#")]
    assert [r[:5] for r in body] == [["1", "10", "z", "G", "A"], ["1", "30", "y", "C", "G"], ["2", "5", "x", "A", "T"]]
    assert [r[9:] for r in body] == [["1|0", "1|0"], ["1|1", ".|0"], ["0|1", "0|0"]]
    unphased = write_vcf(_cohort(phased=False), str(tmp_path / "u.vcf.gz"))[0]
    body = [line.split("\t") for line in gzip.open(unphased, "rt").read().splitlines() if not line.startswith("#")]
    assert [r[9:] for r in body] == [["./.", "0/1"], ["1/1", "0/0"], ["0/1", "0/0"]]


def test_output_is_bgzf(tmp_path):
    path = write_vcf(_cohort(), str(tmp_path / "o.vcf.gz"))[0]
    data = open(path, "rb").read()
    offset, blocks = 0, 0
    while offset < len(data):
        magic, flags, xlen, si1, si2, bsize = struct.unpack_from("<2s1xB6xH2BxxH", data, offset)
        assert (magic, flags, xlen, si1, si2) == (b"\x1f\x8b", 4, 6, ord("B"), ord("C"))
        offset += bsize + 1
        blocks += 1
    assert offset == len(data) and blocks >= 2  # content + the empty EOF block
    assert data.endswith(bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000"))


@pytest.mark.parametrize("tool, args", [("tabix", ["-p", "vcf"]), ("bcftools", ["index"])])
def test_indexable_by_htslib_tools(tmp_path, tool, args):
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} not on PATH")
    path = write_vcf(_cohort(), str(tmp_path / "o.vcf.gz"))[0]
    subprocess.run([tool, *args, path], check=True, capture_output=True)
    assert any(f.startswith("o.vcf.gz.") for f in os.listdir(tmp_path))


def test_bgzf_writer_splits_large_and_incompressible_data(tmp_path):
    payload = np.random.default_rng(0).integers(0, 256, size=300_000, dtype=np.uint8).tobytes()
    with BgzfWriter(str(tmp_path / "r.gz"), level=1, threads=2) as out:
        out.write(payload[:1000])
        out.write(payload[1000:])
    assert gzip.open(tmp_path / "r.gz").read() == payload
    data = open(tmp_path / "r.gz", "rb").read()
    sizes, offset = [], 0
    while offset < len(data):
        sizes.append(struct.unpack_from("<H", data, offset + 16)[0] + 1)
        offset += sizes[-1]
    assert offset == len(data) and max(sizes) <= 65536 and len(sizes) == 6  # 5 blocks of <= 0xFF00 + EOF


def test_write_vcf_rejects_whitespace_sample_ids(tmp_path):
    c = _cohort()
    c.samples.loc[0, "sample"] = "s 1"
    with pytest.raises(InputError, match="whitespace"):
        write_vcf(c, str(tmp_path / "o.vcf.gz"))
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------ round trips
def _same(a: Cohort, b: Cohort):
    np.testing.assert_array_equal(a.alleles, b.alleles)
    assert a.phased == b.phased
    pd.testing.assert_frame_equal(a.variants, b.variants)
    assert list(a.samples["sample"]) == list(b.samples["sample"])


@settings(max_examples=30, deadline=None)
@given(cohorts(missing=True))
def test_bed_vcf_bed_round_trip_with_missing(cohort):
    expected = in_genomic_order(cohort)
    with tempfile.TemporaryDirectory() as d:
        write_bed(cohort, os.path.join(d, "a"))
        write_vcf(read_bed(os.path.join(d, "a")), os.path.join(d, "b.vcf.gz"))
        via_vcf = read_vcf(os.path.join(d, "b.vcf.gz"))
        write_bed(via_vcf, os.path.join(d, "c"))
        back = read_bed(os.path.join(d, "c"))
    if (expected.alleles >= 0).any():
        _same(via_vcf, expected)
    else:  # nothing called: still unphased counts
        np.testing.assert_array_equal(via_vcf.alleles, expected.alleles)
    _same(back, expected)


@settings(max_examples=30, deadline=None)
@given(cohorts(phased=True, missing=True))
def test_phased_vcf_round_trip_with_missing(cohort):
    expected = in_genomic_order(cohort)
    with tempfile.TemporaryDirectory() as d:
        write_vcf(cohort, os.path.join(d, "p.vcf.gz"))
        back = read_vcf(os.path.join(d, "p.vcf.gz"))
    if (expected.alleles >= 0).any():
        _same(back, expected)


def test_reads_bcf_and_plain_gzip(tmp_path):
    if shutil.which("bcftools") is None:
        pytest.skip("bcftools not on PATH")
    c = _cohort()
    path = write_vcf(c, str(tmp_path / "o.vcf.gz"))[0]
    subprocess.run(["bcftools", "view", "-Ob", "-o", str(tmp_path / "o.bcf"), path], check=True, capture_output=True)
    with open(tmp_path / "plain.vcf.gz", "wb") as fh:
        fh.write(gzip.compress(gzip.open(path).read()))
    expected = in_genomic_order(c)
    for name in ("o.bcf", "plain.vcf.gz"):
        back = read_vcf(str(tmp_path / name))
        np.testing.assert_array_equal(back.alleles, expected.alleles)
        assert back.phased and list(back.variants["id"]) == ["z", "y", "x"]


def test_synthetic_vcf_header_names_model_seed_and_privacy_status(tmp_path):
    from genosynth.io.vcf import privacy_status, vcf_header

    variants = make_variants(chrom=["1"], pos=[10], ref=["A"], alt=["G"], id=["v"])
    meta = {"synthetic": True, "seed": 9, "model": "model.pt", "model_sha256": "0f" * 32}
    cohort = Cohort(alleles=np.zeros((1, 1), dtype=np.int8), variants=variants, samples=make_samples(["a"]),
                    phased=False, ploidy=2, meta=meta)
    header = vcf_header(cohort).splitlines()
    assert {"##genosynth_model=model.pt", f"##genosynth_model_sha256={'0f' * 32}", "##genosynth_seed=9",
            "##genosynth_privacy_status=no formal DP guarantee"} <= set(header)
    private = dict(meta, privacy={"epsilon": 3.0, "delta": 1e-5, "breakdown": {"dpsgd": 2.9, "total": 3.0}})
    header = vcf_header(dataclasses.replace(cohort, meta=private)).splitlines()
    assert "##genosynth_privacy_status=epsilon=3,delta=1e-05 (mechanisms: dpsgd)" in header
    assert any(line.startswith("##genosynth_privacy={") for line in header)
    assert privacy_status({"epsilon": None}) == "no formal DP guarantee"
    real = vcf_header(dataclasses.replace(cohort, meta={})).splitlines()
    assert not any(line.startswith("##genosynth_seed") for line in real)  # only synthetic files name a model


# ------------------------------------------------------------------ many contigs, one file per chromosome (issue 17)
def _genome(n_smp=6, chroms=("1", "2", "10", "X"), per=5, phased=True, seed=0):
    rng = np.random.default_rng(seed)
    chrom = np.repeat(list(chroms), per)
    pos = np.tile(np.arange(1, per + 1) * 1000, len(chroms))
    v = make_variants(chrom=chrom, pos=pos, ref=rng.choice(list("AC"), len(pos)), alt=rng.choice(list("GT"), len(pos)))
    rows = n_smp * 2 if phased else n_smp
    a = rng.integers(0, 2 if phased else 3, size=(rows, len(pos))).astype(np.int8)
    return Cohort(alleles=a, variants=v, samples=make_samples([f"s{i}" for i in range(n_smp)]), phased=phased)


def test_many_contigs_round_trip_in_order_with_phase(tmp_path):
    c = _genome()
    write_vcf(c, str(tmp_path / "g.vcf.gz"))
    back = read_vcf(str(tmp_path / "g.vcf.gz"))
    _same(back, c)
    header = [ln for ln in gzip.open(tmp_path / "g.vcf.gz", "rt") if ln.startswith("##contig")]
    assert [h.split("ID=")[1].rstrip(">\n") for h in header] == ["1", "2", "10", "X"]
    shuffled = c.subset(variants=np.random.default_rng(1).permutation(c.n_variants))  # writers sort
    write_vcf(shuffled, str(tmp_path / "s.vcf.gz"))
    _same(read_vcf(str(tmp_path / "s.vcf.gz")), c)


def test_one_file_per_chromosome_joined_by_commas(tmp_path):
    c = _genome()
    chrom = c.variants["chrom"].to_numpy()
    paths = []
    for name in ("1", "2", "10", "X"):
        paths.append(str(tmp_path / f"chr{name}.vcf.gz"))
        write_vcf(c.subset(variants=chrom == name), paths[-1])
    joined = read_vcf(",".join(paths))
    _same(joined, c)
    assert len(joined.meta["sources"]) == 4
    unphased = _genome(phased=False, seed=2)
    write_vcf(unphased.subset(variants=unphased.variants["chrom"] == "2"), str(tmp_path / "u.vcf.gz"))
    mixed = read_vcf(f"{paths[0]},{tmp_path / 'u.vcf.gz'}")
    assert not mixed.phased and mixed.n_variants == 10
    other = Cohort(alleles=c.alleles[:10, :5], variants=c.variants.iloc[:5].reset_index(drop=True),
                   samples=make_samples([f"t{i}" for i in range(5)]), phased=True)
    write_vcf(other, str(tmp_path / "o.vcf.gz"))
    with pytest.raises(InputError, match="o.vcf.gz has other sample ids"):
        read_vcf(f"{paths[1]},{tmp_path / 'o.vcf.gz'}")
    with pytest.raises(InputError, match="nope.vcf.gz: file not found"):
        read_vcf(f"{paths[0]},{tmp_path / 'nope.vcf.gz'}")


def test_vcf_from_a_spooled_table_equals_the_whole_table(tmp_path):
    from genosynth.io.samples import SampleSpool
    from genosynth.io.vcf import write_vcf_blocks

    cohort = in_genomic_order(dataclasses.replace(_cohort(), samples=make_samples(["s1", "s2"])))
    kw = dict(variants=cohort.variants, meta=cohort.meta, phased=True, ploidy=2)
    write_vcf_blocks(str(tmp_path / "whole.vcf.gz"), [cohort.alleles.T], samples=cohort.samples, **kw)
    with SampleSpool(str(tmp_path / "s.tmp")) as spool:
        spool.append(cohort.samples.iloc[:1])
        spool.append(cohort.samples.iloc[1:].reset_index(drop=True))
        write_vcf_blocks(str(tmp_path / "spool.vcf.gz"), [cohort.alleles.T], samples=spool, **kw)
        spool.append(make_samples(["s 3"]))  # a bad id in a later batch: nothing written
        with pytest.raises(InputError, match="whitespace"):
            write_vcf_blocks(str(tmp_path / "bad.vcf.gz"), [np.zeros((3, 6), np.int8)], samples=spool, **kw)
    assert open(tmp_path / "spool.vcf.gz", "rb").read() == open(tmp_path / "whole.vcf.gz", "rb").read()
    assert sorted(os.listdir(tmp_path)) == ["spool.vcf.gz", "whole.vcf.gz"]
    columns = "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\ts1\ts2"
    assert columns in gzip.open(tmp_path / "spool.vcf.gz", "rt").read().splitlines()
