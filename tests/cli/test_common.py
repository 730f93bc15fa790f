"""The CLI frame: exit codes, PREFIX.log, errors without tracebacks, seeds and threads."""

from __future__ import annotations

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
