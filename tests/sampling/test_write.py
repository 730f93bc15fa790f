"""``write_synthetic``: streamed outputs equal the in-memory writers' for the same seed, and no
temporary file (staging matrix, spooled sample table, half-written output) outlives a run."""

from __future__ import annotations

import gzip
import os

import pytest

from genosynth.sampling.write import sample_spool_path, staging_path, write_synthetic


def _bytes(path):
    with open(path, "rb") as fh:
        return fh.read()


def _vcf_text(path):
    with gzip.open(path, "rt") as fh:
        return [line for line in fh.read().splitlines() if not line.startswith("##")]  # #CHROM line and records


@pytest.mark.parametrize("fmt", ["bed", "vcf", "hapt", "pgen"])
def test_streamed_outputs_equal_the_in_memory_writers(trained, tmp_path, fmt):
    from genosynth.io.hapt import write_hapt
    from genosynth.io.pgen import write_pgen
    from genosynth.io.plink import write_bed
    from genosynth.io.samples import write_sample_table
    from genosynth.io.vcf import write_vcf

    model, _ = trained
    column = model.config.label_column
    streamed = write_synthetic(model, str(tmp_path / "s"), fmt, n=100, seed=2, batch_size=16,  # 7 batches
                               corr_guidance="none")
    cohort = model.sample(100, seed=2, corr_guidance="none")  # the same people, held in memory
    whole = str(tmp_path / "w")
    write_sample_table(cohort, f"{whole}.samples.tsv")
    if fmt == "vcf":
        write_vcf(cohort, f"{whole}.vcf.gz")
        assert _vcf_text(tmp_path / "s.vcf.gz") == _vcf_text(f"{whole}.vcf.gz")
    else:
        writer = {"bed": write_bed, "pgen": write_pgen}.get(fmt)
        written = (write_hapt(cohort, whole, tag_column=column) if fmt == "hapt"
                   else writer(cohort, whole, fid_column=column))
        for path in written:
            if not path.endswith(".pvar"):  # .pvar names the model file only in the streamed run
                assert _bytes(path) == _bytes(path.replace(whole, str(tmp_path / "s"))), path
    assert _bytes(tmp_path / "s.samples.tsv") == _bytes(f"{whole}.samples.tsv")
    assert len(streamed) >= 2 and all(os.path.exists(p) for p in streamed)
    assert not [f for f in os.listdir(tmp_path) if "tmp" in f]


def test_an_interrupted_run_leaves_nothing(trained, tmp_path, monkeypatch):
    from genosynth.io import plink

    def interrupted(*args, **kwargs):
        assert os.path.exists(sample_spool_path(str(tmp_path / "i")))  # the spooled table exists meanwhile
        raise KeyboardInterrupt

    monkeypatch.setattr(plink, "_write_bed_matrix", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_synthetic(trained[0], str(tmp_path / "i"), "bed", n=40, seed=1, batch_size=8, corr_guidance="none")
    assert os.listdir(tmp_path) == []  # no staging file, no spooled table, no half-written .fam


def test_stale_spooled_table_is_replaced(trained, tmp_path):
    stale = sample_spool_path(str(tmp_path / "r"))
    with open(stale, "wb") as fh:
        fh.write(b"not a pickle")
    write_synthetic(trained[0], str(tmp_path / "r"), "bed", n=5, seed=1, corr_guidance="none")
    assert not os.path.exists(stale) and not os.path.exists(staging_path(str(tmp_path / "r")))
    assert len(_bytes(tmp_path / "r.fam").splitlines()) == 5
