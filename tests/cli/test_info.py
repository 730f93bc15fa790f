"""``genosynth info``: summary figures of real inputs, JSON output, skipped-record counts, errors."""

from __future__ import annotations

import json

from _io_helpers import data_files, tiny_vcf
from genosynth.cli import main


def test_info_805_with_panel(data_805, tmp_path, capsys):
    out = tmp_path / "i"
    status = main(["info", "--hapt", str(data_805 / "haplotypes.hapt.gz"), "--legend", str(data_805 / "snps.legend"),
                   "--samples", str(data_805 / "panel.tsv"), "--out", str(out)])
    assert status == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "i.info.json").read_text())
    assert summary["samples"] == 2002 and summary["variants"] == 805 and summary["phased"] is True
    assert sum(summary["super_pop"].values()) == 2002 and set(summary["super_pop"]) == {"AFR", "AMR", "EAS", "EUR",
                                                                                         "SAS"}
    assert len(summary["pop"]) == 26 and summary["missing_rate"] == 0.0
    assert set(summary["chromosomes"]) == {str(c) for c in range(1, 23)}


def test_info_reports_skipped_records(tmp_path, capsys):
    path = tiny_vcf(tmp_path / "t.vcf", ["1 10 a A G . . . GT 0/1 1/1 ./.", "1 20 b A G,T . . . GT 0/1 0/2 0/0",
                                         "1 30 c A AT . . . GT 0/1 0/0 0/0"])
    status = main(["info", "--vcf", path, "--out", str(tmp_path / "s")])
    stdout = capsys.readouterr().out
    assert status == 0
    summary = json.loads((tmp_path / "s.info.json").read_text())
    assert summary["skipped"] == {"multi-allelic": 1, "non-SNP": 1}
    assert summary["variants"] == 1 and summary["phased"] is False
    assert summary["missing_rate"] == 1 / 3 and summary["variants_with_missing"] == 1
    assert "Skipped 1 multi-allelic records" in stdout


def test_info_bad_input_exit_2_no_json(tmp_path, capsys):
    path = tiny_vcf(tmp_path / "g.vcf", ["1 10 a A G . . . DP 3 4 5"], gt_header=False)
    out_dir = tmp_path / "o"
    assert main(["info", "--vcf", path, "--out", str(out_dir / "x")]) == 2
    assert "no FORMAT/GT" in capsys.readouterr().err
    assert data_files(out_dir) == []


def test_info_reads_the_sample_table_beside_the_input(sim_cohort, tmp_path, capsys):
    from genosynth.io import write_cohort
    from genosynth.io.samples import write_sample_table

    cohort = sim_cohort.subset(samples=range(0, 300, 10), variants=range(20))
    for fmt in ("vcf", "bed"):
        prefix = str(tmp_path / f"syn_{fmt}")
        write_cohort(cohort, prefix, fmt)
        write_sample_table(cohort, f"{prefix}.samples.tsv")
        given = ["--vcf", f"{prefix}.vcf.gz"] if fmt == "vcf" else ["--bfile", prefix]
        assert main(["info", *given, "--out", prefix]) == 0
        assert f"{prefix}.samples.tsv (found beside the input" in capsys.readouterr().out
        summary = json.loads(open(f"{prefix}.info.json").read())
        assert summary["super_pop"] == {"AFR": 10, "EAS": 10, "EUR": 10}
    other = tmp_path / "other.tsv"
    other.write_text("sample\tsuper_pop\n" + "".join(f"{s}\tX\n" for s in cohort.samples["sample"]))
    assert main(["info", "--vcf", str(tmp_path / "syn_vcf.vcf.gz"), "--samples", str(other)]) == 0
    assert "found beside" not in capsys.readouterr().out  # --samples wins
