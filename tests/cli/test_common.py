"""The CLI frame: exit codes, PREFIX.log, errors without tracebacks, seeds and threads."""

from __future__ import annotations

import os

import pytest

from genosynth.cli import COMMANDS, main
from genosynth.cli.common import RunLog, read_id_list, resolve_seed
from genosynth.errors import InputError


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "usage" in capsys.readouterr().err.lower()


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert "genosynth" in capsys.readouterr().out


def test_every_registered_command_is_importable():
    import importlib

    for name, module in COMMANDS.items():
        mod = importlib.import_module(f"genosynth.cli.{module}")
        assert callable(mod.add_arguments) and callable(mod.run) and mod.HELP, name


def test_missing_input_is_a_clean_error_with_log(tmp_path, capsys):
    out = tmp_path / "res"
    status = main(["info", "--hapt", str(tmp_path / "nope.hapt"), "--legend", str(tmp_path / "nope.legend"),
                   "--out", str(out)])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("Error: ") and "not found" in err and "Traceback" not in err
    log = (tmp_path / "res.log").read_text()
    assert "Command: genosynth info" in log and "Error:" in log
    assert not (tmp_path / "res.info.json").exists()


def test_two_inputs_are_refused(tmp_path, capsys):
    status = main(["info", "--bfile", "a", "--vcf", "b.vcf"])
    assert status == 2
    assert "exactly one input" in capsys.readouterr().err


def test_seed_is_drawn_and_recorded(tmp_path):
    with RunLog(str(tmp_path / "x"), "test", []) as log:
        seed = resolve_seed(None, log)
    assert 0 <= seed < 2**31
    assert f"seed: {seed}" in (tmp_path / "x.log").read_text()
    assert resolve_seed(7) == 7
    with pytest.raises(InputError):
        resolve_seed(-1)


def test_read_id_list_takes_iid_of_two_columns(tmp_path):
    path = tmp_path / "keep.txt"
    path.write_text("#FID IID\nF1 A\nB\n\n")
    assert read_id_list(str(path)) == ["A", "B"]
    with pytest.raises(InputError, match="not found"):
        read_id_list(str(tmp_path / "missing.txt"))


# ---------------------------------------------------------------------------------- issue 20
def _train_args(small, folder):
    from genosynth.io import write_cohort
    from genosynth.io.samples import write_sample_table

    write_cohort(small, str(folder / "real"), "hapt")
    write_sample_table(small, str(folder / "real.samples.tsv"))
    return ["train", "--hapt", str(folder / "real.hapt"), "--legend", str(folder / "real.legend"),
            "--samples", str(folder / "real.samples.tsv"), "--size", "tiny", "--no-progress", "--threads", "1"]


def test_resume_without_seed_reads_the_seed_from_the_checkpoint(small, tmp_path, monkeypatch, capsys):
    """A run without --seed, killed, then --resume: continues with the drawn seed, ends as an uninterrupted run."""
    import re

    from _testlib import same_tensors

    import genosynth.training.plain as plain
    from genosynth.models.checkpoint import load_checkpoint

    argv = _train_args(small, tmp_path)
    prefix = str(tmp_path / "killed")
    real = plain.train_generator

    def killed_after_first_vae_epoch(*args, **kwargs):
        def stop(stage, epoch):
            if (stage, epoch) == ("vae", 1):
                raise KeyboardInterrupt
        return real(*args, callback=stop, **kwargs)

    monkeypatch.setattr(plain, "train_generator", killed_after_first_vae_epoch)
    assert main(argv + ["--out", prefix]) == 130
    monkeypatch.undo()
    first_log = open(f"{prefix}.log").read()
    seed = int(re.search(r"^seed: (\d+)$", first_log, re.MULTILINE).group(1))
    assert load_checkpoint(f"{prefix}.pt")["state"]["stage"] == "vae"

    assert main(argv + ["--out", prefix, "--resume"]) == 0, capsys.readouterr().err
    log = open(f"{prefix}.log").read()
    assert log.startswith(first_log)  # the interrupted run's record, its drawn seed included, is kept
    assert f"--resume: seed {seed} read from {prefix}.pt" in log
    assert re.findall(r"^seed: (\d+)$", log, re.MULTILINE) == [str(seed)] * 2  # drawn, then read back
    reference = str(tmp_path / "full")
    assert main(argv + ["--out", reference, "--seed", str(seed)]) == 0
    assert same_tensors(load_checkpoint(f"{prefix}.pt")["state"], load_checkpoint(f"{reference}.pt")["state"])
    assert main(argv + ["--out", prefix, "--resume", "--seed", str(seed + 1)]) == 2  # an explicit other seed: refused
    assert "different seed" in capsys.readouterr().err


def test_threads_zero_is_refused(tmp_path):
    from genosynth.cli.common import set_threads

    with pytest.raises(InputError, match="--threads must be >= 1"):
        set_threads(0)
    assert set_threads(None) >= 1


def test_argparse_errors_are_one_line(capsys):
    assert main(["info", "--vcf", "x.vcf", "--nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("Error: ") and "genosynth info --help" in err
    assert main(["train", "--threads", "0", "--out", "o"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--threads: must be >= 1" in err and "genosynth train --help" in err


def test_outputs_are_checked_against_every_input(tmp_path, monkeypatch):
    """check_outputs compares each input file (links and relative paths resolved) with each output."""
    import argparse

    from genosynth.cli.common import check_outputs, output_files

    monkeypatch.chdir(tmp_path)
    for name in ("a.bed", "a.bim", "a.fam", "keep.txt"):
        (tmp_path / name).write_text("x")
    args = argparse.Namespace(command="convert", bfile="a", keep="keep.txt", format="bed", out="a")
    assert output_files(args, "a") == ["a.log", "a.bed", "a.bim", "a.fam", "a.samples.tsv"]
    with pytest.raises(InputError, match=r"would overwrite the input a.bed \(--bfile\)"):
        check_outputs(args, "a")
    args.format = "vcf"
    check_outputs(args, "a")  # a.vcf.gz, a.samples.tsv and a.log replace no input
    args.keep = "o.log"
    (tmp_path / "o.log").write_text("x")
    with pytest.raises(InputError, match="o.log"):
        check_outputs(args, str(tmp_path / "sub" / ".." / "o"))
    with pytest.raises(InputError, match="is a file, not a folder"):
        check_outputs(args, "keep.txt/deeper/o")
    check_outputs(args, None)  # no --out: nothing is written


def test_the_cli_makes_openmp_threads_wait_passively_unless_the_user_chose():
    import subprocess
    import sys

    code = "import os, sys, genosynth.cli; print(os.environ['OMP_WAIT_POLICY'], 'torch' in sys.modules)"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    run = lambda e: subprocess.run([sys.executable, "-c", code], env=e, capture_output=True, text=True,  # noqa: E731
                                   check=True).stdout.split()
    assert run(env) == ["PASSIVE", "False"]  # set before torch is imported
    assert run({**env, "OMP_WAIT_POLICY": "ACTIVE"})[0] == "ACTIVE"
