"""A command that cannot go on prints one message naming what is wrong and what to do, and exits
non-zero: no traceback reaches the user for a condition the project knows about."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dmsc.cli import main, missing_file_message
from dmsc.cli import run as run_cli

ROOT = Path(__file__).resolve().parents[2]
MAIN_EXPERIMENT = ROOT / "experiments" / "delay-reroute.yaml"
HOST_EXPERIMENT = ROOT / "experiments" / "link-failure.yaml"  # no netem: checkable here


def dmsc(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dmsc", *argv], cwd=ROOT, capture_output=True, text=True
    )


def test_main_job_without_the_vm_host_tools_says_run_setup(monkeypatch, capsys, tmp_path):
    # a fresh machine: the experiment needs the VM and debootstrap is not installed
    real_which = shutil.which
    monkeypatch.setattr(run_cli, "needs_vm", lambda path: True)
    monkeypatch.setattr(
        "dmsc.vm.image.shutil.which",
        lambda tool: None if tool == "debootstrap" else real_which(tool),
    )
    status = main(["run", str(MAIN_EXPERIMENT), "--vm", "auto", "--results", str(tmp_path)])
    err = capsys.readouterr().err
    assert status == 2
    assert "debootstrap" in err and "./testbed setup" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_missing_program_is_named_with_the_fix(monkeypatch, capsys):
    def runs_a_program_that_is_not_there(args):
        subprocess.run(["dmsc-no-such-program", "--version"], check=False)

    monkeypatch.setattr("dmsc.cli.names.run", runs_a_program_that_is_not_there)
    assert main(["name", "/B/4"]) == 2
    err = capsys.readouterr().err
    assert "'dmsc-no-such-program' is not installed; run ./testbed setup" in err
    assert "Traceback" not in err


def test_a_missing_file_is_not_called_a_missing_program(tmp_path):
    error = FileNotFoundError(2, "No such file or directory", str(tmp_path / "gone.yaml"))
    assert missing_file_message(error) == f"{tmp_path / 'gone.yaml'}: no such file or directory"


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["run", "experiments/no-such-experiment.yaml", "--check"], "no-such-experiment.yaml"),
        (["run", str(HOST_EXPERIMENT), "--check", "--repetitions", "0"], "--repetitions"),
        (["run", str(HOST_EXPERIMENT), "--check", "--quick", "--repetitions", "3"], "--quick"),
        (["run", str(HOST_EXPERIMENT), "--check", "--variants", "nope"], "nope"),
        (["run", str(HOST_EXPERIMENT), "--vm", "sometimes"], "--vm"),
    ],
)
def test_bad_arguments_get_one_message_and_a_non_zero_status(argv, named):
    result = dmsc(*argv)
    assert result.returncode == 2, result.stdout + result.stderr
    assert named in result.stderr
    assert "Traceback" not in result.stderr


def test_quick_is_one_repetition_per_variant():
    result = dmsc("run", str(HOST_EXPERIMENT), "--check", "--quick")
    assert result.returncode == 0, result.stderr
    assert "1 repetition" in result.stdout
