"""The experiment VM does what it is for: netem delay, jitter and loss, the Open vSwitch kernel
datapath and Mininet work inside it, and ``dmsc vm run`` reports status, results and deadlines.

The tolerances of the netem checks are in ``dmsc/vm/guest/selftest.py`` (``delay_bounds``,
``binomial_bounds``), with their justification.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from dmsc.vm import runner

pytestmark = [pytest.mark.vm, pytest.mark.slow]


def describe(check: dict) -> str:
    return f"{check['detail']}\ncommands: {check['commands']}"


def test_netem_delay_and_jitter(selftest):
    check = selftest["delay"]
    assert check["ok"], describe(check)
    assert 40 <= check["measured"]["median"] <= 62


def test_netem_loss_within_a_binomial_band(selftest):
    check = selftest["loss"]
    assert check["ok"], describe(check)
    assert check["measured"]["sent"] == 200


def test_open_vswitch_kernel_datapath(selftest):
    check = selftest["ovs"]
    assert check["ok"], describe(check)


def test_mininet_pingall_over_tc_links(selftest):
    check = selftest["mininet"]
    assert check["ok"], describe(check)


def expected_kernel(backend: str) -> Callable[[str], bool]:
    """Whether a guest's ``uname -r`` is the one ``backend`` boots."""
    if backend == "uml":
        release = runner.uml_version()
        return lambda kernel: kernel == release
    return lambda kernel: kernel.endswith("-amd64")  # Debian's kernel, from the image


def vm_processes_naming(path: Path) -> list[str]:
    """Host processes whose command line names ``path`` (a VM's results share): what is left
    of a VM that was stopped."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            words = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue  # ended meanwhile
        if any(str(path).encode() in word for word in words):
            found.append(f"{cmdline.parent.name}: {b' '.join(words)[:200]!r}")
    return found


@pytest.mark.parametrize("backend", ["uml", "qemu"])
def test_status_results_and_read_only_checkout(vm_run, tmp_path, backend):
    script = (
        "uname -r > /results/kernel; echo hello > /results/hello.txt; "
        "echo $DMSC_VM_BACKEND > /results/backend; "
        "python3 -c 'import dmsc, mininet.net; print(\"imports ok\")'; "
        "if touch /dmsc/.vm-write-probe 2>/dev/null; then exit 1; fi; exit 7"
    )
    proc = vm_run(["sh", "-c", script], results=tmp_path, timeout=300, backend=backend)
    assert proc.returncode == 7, proc.stdout + proc.stderr
    assert "imports ok" in proc.stdout
    assert (tmp_path / "hello.txt").read_text() == "hello\n"
    assert (tmp_path / "backend").read_text() == f"{backend}\n"
    kernel = (tmp_path / "kernel").read_text().strip()
    assert expected_kernel(backend)(kernel), kernel
    assert (tmp_path / "vm-console.log").exists()


@pytest.mark.parametrize("backend", ["uml", "qemu"])
def test_a_hung_command_is_stopped_at_the_deadline_and_leaves_no_process(vm_run, tmp_path, backend):
    proc = vm_run(
        ["sh", "-c", "echo started; sleep 1000"], results=tmp_path, timeout=40, backend=backend
    )
    assert proc.returncode == 124, proc.stdout + proc.stderr
    assert "timed out after 40 s while the command ran" in proc.stderr
    assert "started" in proc.stdout
    # UML runs a host process per guest address space: all of them went with the VM
    assert vm_processes_naming(tmp_path) == []


def test_a_project_command_runs_in_the_vm_and_its_results_reach_the_host(vm_run, tmp_path):
    # `dmsc` in the VM is the project's CLI from the shared checkout; /results is `--results`
    proc = vm_run(["dmsc", "demo", "--out", "/results"], results=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run,) = tmp_path.glob("demo-*")
    for name in ("events.csv", "route_changes.csv", "metadata.json", "routes.png"):
        assert (run / name).stat().st_size > 0, name
    metadata = json.loads((run / "metadata.json").read_text())  # the guest's kernel, recorded
    assert metadata["vm_backend"] in ("uml", "qemu")
    assert expected_kernel(metadata["vm_backend"])(metadata["kernel"]), metadata
