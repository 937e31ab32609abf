"""Fixtures of the VM tests: each test boots the VM with ``dmsc vm run`` (as a user would) and
asserts on its exit status, output and results folder. Every test here is marked ``vm`` and is
skipped, saying why, only when no image has been built (``scripts/ci-vm.sh`` builds it first
and sets ``DMSC_VM_REQUIRE_IMAGE=1``, which turns that skip into a failure).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from dmsc.vm import VmImageMissing
from dmsc.vm.image import find_image, lookup_cache_dirs, project_root

HERE = Path(__file__).parent
#: Generous: the boot takes ~10 s under TCG (3 s under UML), the selftest's Mininet check ~1 min.
SELFTEST_TIMEOUT_S = 900
#: The DMSC network starts in ~35-100 s under TCG, the measurements take ~2 min.
FORWARDED_NETEM_TIMEOUT_S = 900


def _missing_image_reason() -> str | None:
    try:
        find_image(lookup_cache_dirs())
    except VmImageMissing as error:
        return f"experiment VM image not built: {error}"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    vm_items = [item for item in items if HERE in Path(str(item.fspath)).parents]
    reason = _missing_image_reason() if vm_items else None
    if reason and os.environ.get("DMSC_VM_REQUIRE_IMAGE"):
        pytest.exit(f"DMSC_VM_REQUIRE_IMAGE is set but {reason}", returncode=3)
    for item in vm_items:
        item.add_marker(pytest.mark.vm)
        item.add_marker(pytest.mark.slow)
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


VmRun = Callable[..., subprocess.CompletedProcess]


@pytest.fixture(scope="session")
def vm_run() -> VmRun:
    """``dmsc vm run [OPTIONS] -- COMMAND...`` from the checkout; returns the finished process.
    The backend is ``auto`` (what users get) unless a test names one."""

    def run(command: Sequence[str], *, results: Path, timeout: float = 300,
            with_ovs: bool = False, backend: str = "auto",
    ) -> subprocess.CompletedProcess:  # fmt: skip
        argv = [sys.executable, "-m", "dmsc.cli.vm", "run", "--results", str(results),
                "--timeout", str(timeout), "--backend", backend]  # fmt: skip
        argv += ["--with-ovs"] if with_ovs else []
        argv += ["--", *command]
        return subprocess.run(
            argv, cwd=project_root(), capture_output=True, text=True, timeout=timeout + 120
        )

    return run


RunExperiment = Callable[..., tuple[subprocess.CompletedProcess, Path]]


@pytest.fixture(scope="session")
def run_experiment(vm_run: VmRun, tmp_path_factory: pytest.TempPathFactory) -> RunExperiment:
    """``dmsc run FILE [ARGS]`` in the VM, quiet, into a fresh results folder; returns the
    finished process and the one results folder it wrote (asserted: exactly one)."""

    def run(experiment: str, *arguments: str, timeout: float) -> tuple:
        results = tmp_path_factory.mktemp(f"vm-{Path(experiment).stem}")
        proc = vm_run(
            ["python3", "-m", "dmsc", "run", experiment, *arguments, "--results", "/results",
             "--quiet"],
            results=results, timeout=timeout,
        )  # fmt: skip
        folders = [p for p in results.iterdir() if p.is_dir()]
        assert len(folders) == 1, f"exit {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr}"
        print(proc.stdout[-3000:])
        return proc, folders[0]

    return run


@pytest.fixture(scope="session")
def selftest(vm_run: VmRun, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """One boot running every in-VM check (``dmsc.vm.guest.selftest``); check name → result."""
    results = tmp_path_factory.mktemp("vm-selftest")
    proc = vm_run(
        ["python3", "-m", "dmsc.vm.guest.selftest", "--out", "/results/selftest.json"],
        results=results, timeout=SELFTEST_TIMEOUT_S, with_ovs=True,
    )  # fmt: skip
    report = results / "selftest.json"
    assert report.exists(), f"no report (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    checks = {check["name"]: check for check in json.loads(report.read_text())}
    print(proc.stdout)
    return checks


@pytest.fixture(scope="session")
def forwarded_netem(vm_run: VmRun, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One boot measuring netem through the DMSC forwarders (``dmsc.vm.guest.forwarded_netem``):
    its report, with the ``checks`` by name and the run's ``exit_status``."""
    results = tmp_path_factory.mktemp("vm-forwarded-netem")
    proc = vm_run(
        ["python3", "-m", "dmsc.vm.guest.forwarded_netem", "--out",
         "/results/forwarded-netem.json"],
        results=results, timeout=FORWARDED_NETEM_TIMEOUT_S,
    )  # fmt: skip
    path = results / "forwarded-netem.json"
    assert path.exists(), f"no report (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    report = json.loads(path.read_text())
    report["checks"] = {check["name"]: check for check in report["checks"]}
    report["exit_status"] = proc.returncode
    print(proc.stdout)
    return report
