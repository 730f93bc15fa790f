"""``genosynth sample``: sample ids unique across runs, provenance in the headers, and clean failures
(an impossible --n, SIGTERM, a stale staging file)."""

from __future__ import annotations

import gzip
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from genosynth.cli import main
from genosynth.provenance import sha256_file


def _sample(path, out, *extra):
    return main(["sample", "--model", path, "--out", str(out), "--no-progress", "--threads", "1", *extra])


def _vcf_lines(path):
    with gzip.open(path, "rt") as fh:
        return fh.read().splitlines()


def test_default_id_prefix_names_the_run_and_user_prefix_keeps_the_alleles(trained, tmp_path):
    _, path = trained
    assert _sample(path, tmp_path / "a", "--n", "5", "--format", "vcf", "--seed", "1") == 0
    assert _sample(path, tmp_path / "b", "--n", "5", "--format", "vcf", "--seed", "1", "--id-prefix", "syn") == 0
    a, b = _vcf_lines(tmp_path / "a.vcf.gz"), _vcf_lines(tmp_path / "b.vcf.gz")
    ids_a = a[[line.startswith("#CHROM") for line in a].index(True)].split("\t")[9:]
    ids_b = b[[line.startswith("#CHROM") for line in b].index(True)].split("\t")[9:]
    assert ids_a == [f"a_s1_{k:07d}" for k in range(1, 6)] and ids_b == [f"syn{k:07d}" for k in range(1, 6)]
    body = [line for line in a if not line.startswith("#")]
    assert body == [line for line in b if not line.startswith("#")]  # same seed, same alleles
    rows = open(tmp_path / "a.samples.tsv").read().splitlines()[1:]
    assert [row.split("\t")[0] for row in rows] == ids_a


def test_vcf_header_carries_model_digest_seed_and_privacy_status(trained, tmp_path):
    _, path = trained
    assert _sample(path, tmp_path / "h", "--n", "3", "--format", "vcf", "--seed", "7") == 0
    header = [line for line in _vcf_lines(tmp_path / "h.vcf.gz") if line.startswith("##")]
    assert f"##genosynth_model_sha256={sha256_file(path)}" in header
    assert "##genosynth_seed=7" in header and "##genosynth_model=model.pt" in header
    assert "##genosynth_privacy_status=no formal DP guarantee" in header


@pytest.mark.skipif(not (shutil.which("bcftools") and shutil.which("tabix")), reason="needs bcftools and tabix")
def test_bcftools_merges_two_runs(trained, tmp_path):
    _, path = trained
    for seed in ("1", "2"):
        assert _sample(path, tmp_path / "syn", "--n", "4", "--format", "vcf", "--seed", seed) == 0
        os.replace(tmp_path / "syn.vcf.gz", tmp_path / f"run{seed}.vcf.gz")
        subprocess.run(["tabix", "-p", "vcf", str(tmp_path / f"run{seed}.vcf.gz")], check=True)
    merged = str(tmp_path / "merged.vcf.gz")
    done = subprocess.run(["bcftools", "merge", "-Oz", "-o", merged, str(tmp_path / "run1.vcf.gz"),
                           str(tmp_path / "run2.vcf.gz")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    names = subprocess.run(["bcftools", "query", "-l", merged], capture_output=True, text=True, check=True).stdout.split()
    assert len(names) == 8 and len(set(names)) == 8
    assert names[0] == "syn_s1_0000001" and names[4] == "syn_s2_0000001"


def test_impossible_n_is_one_line_exit_2_and_nothing_written(trained, tmp_path, capsys):
    _, path = trained
    assert _sample(path, tmp_path / "big", "--n", "1000000000000", "--format", "vcf", "--seed", "1") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "lower --n" in err and "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == ["big.log"]


def test_bad_id_prefix_exit_2(trained, tmp_path, capsys):
    _, path = trained
    assert _sample(path, tmp_path / "x", "--n", "3", "--id-prefix", "a b") == 2
    assert "--id-prefix" in capsys.readouterr().err


def test_stale_staging_file_is_removed(trained, tmp_path, capsys):
    _, path = trained
    stale = tmp_path / "s.staging.tmp"
    stale.write_bytes(b"\0" * 4096)
    assert _sample(path, tmp_path / "s", "--n", "3", "--format", "bed", "--seed", "1") == 0
    assert not stale.exists()
    assert "staging file of an earlier run" in capsys.readouterr().err


def test_sigterm_cleans_up_like_ctrl_c(trained, tmp_path):
    _, path = trained
    out = tmp_path / "t"
    cmd = [sys.executable, "-c", "import sys; from genosynth.cli import main; sys.exit(main())", "sample",
           "--model", path, "--n", "2000000", "--format", "vcf", "--seed", "1", "--threads", "1",
           "--batch-size", "64", "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    staging = tmp_path / "t.staging.tmp"
    deadline = time.monotonic() + 240
    while not staging.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert staging.exists(), "the run never started staging"
    time.sleep(1.0)  # inside the batch loop
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert sorted(os.listdir(tmp_path)) == ["t.log"]  # no staging file, no half-written output


def test_temperature_option_is_used_recorded_and_checked(trained, tmp_path):
    """``--temperature`` overrides the model's decoder temperature (recorded in PREFIX.sample.json, and
    sharper draws change the alleles); a temperature <= 0 is refused."""
    import json

    _, path = trained
    assert _sample(path, tmp_path / "t1", "--n", "20", "--format", "vcf", "--seed", "3") == 0
    assert _sample(path, tmp_path / "t2", "--n", "20", "--format", "vcf", "--seed", "3", "--temperature", "0.3") == 0
    assert json.loads((tmp_path / "t1.sample.json").read_text())["temperature"] == 1.0
    assert json.loads((tmp_path / "t2.sample.json").read_text())["temperature"] == 0.3
    body = lambda p: [line for line in _vcf_lines(p) if not line.startswith("#")]
    assert body(tmp_path / "t1.vcf.gz") != body(tmp_path / "t2.vcf.gz")
    assert _sample(path, tmp_path / "t0", "--n", "3", "--temperature", "0") == 2
    assert not os.path.exists(tmp_path / "t0.bed")


def test_stochastic_ddim_steps_are_seeded_and_checked(trained, tmp_path):
    """``--sampler ddim --eta 1`` draws its step noise from the run's seed: the same seed gives the same
    alleles, and they differ from deterministic steps; ``--eta`` with the deterministic dpm++2m sampler,
    or outside [0, 1], is refused."""
    import json

    _, path = trained
    args = ("--n", "20", "--format", "vcf", "--seed", "4", "--sampler", "ddim", "--steps", "6")
    for name, eta in (("e1", "1"), ("e1b", "1"), ("e0", "0")):
        assert _sample(path, tmp_path / name, *args, "--eta", eta) == 0
    body = lambda p: [line for line in _vcf_lines(p) if not line.startswith("#")]
    assert body(tmp_path / "e1.vcf.gz") == body(tmp_path / "e1b.vcf.gz")
    assert body(tmp_path / "e1.vcf.gz") != body(tmp_path / "e0.vcf.gz")
    assert json.loads((tmp_path / "e1.sample.json").read_text())["eta"] == 1.0
    assert _sample(path, tmp_path / "x", "--n", "3", "--sampler", "dpm++2m", "--eta", "1") == 2
    assert _sample(path, tmp_path / "x", "--n", "3", "--sampler", "ddim", "--eta", "1.5") == 2


def test_precision_option_is_used_and_recorded(trained, tmp_path):
    """``--precision bf16`` runs the DiT under bfloat16 autocast (other alleles than fp32 for the same seed) and
    is recorded in PREFIX.sample.json; the default is fp32, bit-reproducible."""
    import json

    _, path = trained
    args = ("--n", "300", "--format", "vcf", "--seed", "3")  # 24,000 draws: a few change in bf16
    for name, extra in (("p32", ()), ("p32b", ("--precision", "fp32")), ("p16", ("--precision", "bf16"))):
        assert _sample(path, tmp_path / name, *args, *extra) == 0
    body = lambda p: [line for line in _vcf_lines(p) if not line.startswith("#")]
    assert body(tmp_path / "p32.vcf.gz") == body(tmp_path / "p32b.vcf.gz")
    assert body(tmp_path / "p32.vcf.gz") != body(tmp_path / "p16.vcf.gz")
    assert json.loads((tmp_path / "p32.sample.json").read_text())["precision"] == "fp32"
    assert json.loads((tmp_path / "p16.sample.json").read_text())["precision"] == "bf16"
