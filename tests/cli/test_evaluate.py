"""``genosynth evaluate`` through ``main([...])``: mixed input formats, labels, sidecar, user errors."""

from __future__ import annotations

import json
import os

import pytest

from genosynth.cli import main
from genosynth.evaluate import copy_generator, independent_snps_generator, split_train_holdout
from genosynth.io import write_cohort
from genosynth.io.samples import write_sample_table

FAST = {"classifiers": ["lr"], "mia_repeats": 2, "aats_repeats": 1, "gwas_repeats": 2, "max_ld_pairs": 20000,
        "min_group_size": 10}


@pytest.fixture(scope="module")
def files(sim_cohort, tmp_path_factory):
    d = tmp_path_factory.mktemp("evalcli")
    train, holdout = split_train_holdout(sim_cohort, holdout_fraction=0.25, seed=3)
    write_cohort(train, str(d / "train"), "hapt")
    write_cohort(holdout, str(d / "holdout"), "bed")
    write_sample_table(sim_cohort, str(d / "samples.tsv"))
    write_cohort(independent_snps_generator(train, n=100, seed=1), str(d / "indep"), "bed", tag_column="super_pop")
    copy = copy_generator(train, seed=2)
    write_cohort(copy, str(d / "copy"), "vcf")
    write_sample_table(copy, str(d / "copy_samples.tsv"))  # the generator's own sample table
    (d / "copy.privacy.json").write_text(json.dumps({"epsilon": 1.5, "delta": 1e-6}))
    (d / "fast.json").write_text(json.dumps(FAST))
    short = train.subset(variants=list(range(train.n_variants - 1)))
    write_cohort(short, str(d / "short"), "vcf")
    return d


def test_evaluate_two_synthetic_sets_in_mixed_formats(files, capsys):
    d = files
    out = d / "res" / "ev"
    rc = main(["evaluate", "--real", str(d / "train.hapt"), "--holdout", str(d / "holdout"),
               "--synthetic", f"indep={d / 'indep.bed'}", "--synthetic", f"copy={d / 'copy.vcf.gz'}",
               "--samples", str(d / "samples.tsv"), "--synthetic-samples", f"copy={d / 'copy_samples.tsv'}",
               "--config", str(d / "fast.json"), "--gwas-groups", "AFR,EUR",
               "--out", str(out), "--seed", "5"])
    assert rc == 0
    for ext in ("json", "html", "log"):
        assert os.path.exists(f"{out}.{ext}"), ext
    res = json.loads(open(f"{out}.json").read())
    assert res["privacy"]["copy"]["guarantee"] == {"epsilon": 1.5, "delta": 1e-6}
    assert res["privacy"]["indep"]["guarantee"] is None
    assert res["labels"]["indep"]["super_pop"]["source"] == "fid"  # .fam FID written from super_pop
    assert res["labels"]["copy"]["super_pop"]["source"] == "given"  # from --synthetic-samples
    assert res["labels"]["indep"]["pop"]["source"] == "pseudo"
    assert res["gwas"]["design"]["case"] == "AFR" and res["gwas"]["design"]["control"] == "EUR"
    assert res["summary"]["copy"]["identical_to_train"] == res["inputs"]["synthetic"]["copy"]["n_samples"]
    assert res["seed"] == 5 and res["config"]["classifiers"] == ["lr"]
    prov = res["provenance"]["inputs"]
    assert set(prov["real"]) == {str(d / "train.hapt"), str(d / "train.legend")}
    assert len(prov["holdout"]) == 3 and all(len(h) == 64 for h in prov["holdout"].values())
    log = open(f"{out}.log").read()
    assert "copy: red lights:" in log and "identical_to_train" in log
    assert "pseudo-labels" in capsys.readouterr().err  # indep's pop labels


@pytest.mark.parametrize("case,message", [
    ("short", "convert --extract"),
    ("nolegend", "legend"),
    ("badname", "NAME=PATH"),
    ("badgroups", "CASE,CONTROL"),
])
def test_user_errors_exit_2_with_the_fix(files, tmp_path, capsys, case, message):
    d = files
    syn = {"short": str(d / "short.vcf.gz"), "badname": f"holdout={d / 'copy.vcf.gz'}"}.get(case, str(d / "copy.vcf.gz"))
    real = str(d / "train.hapt")
    if case == "nolegend":
        os.makedirs(tmp_path / "h", exist_ok=True)
        real = str(tmp_path / "h" / "train.hapt")
        with open(real, "w") as fh:
            fh.write(open(d / "train.hapt").read())
    argv = ["evaluate", "--real", real, "--holdout", str(d / "holdout"), "--synthetic", syn,
            "--samples", str(d / "samples.tsv"), "--config", str(d / "fast.json"), "--out", str(tmp_path / "o")]
    if case == "badgroups":
        argv += ["--gwas-groups", "AFR"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not os.path.exists(tmp_path / "o.json") and not os.path.exists(tmp_path / "o.html")
