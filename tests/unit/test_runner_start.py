"""The runner starts every workload client first and gives them one start time (t0)."""

from __future__ import annotations

import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from dmsc.errors import DmscError
from dmsc.experiments.runner import _start_clients, _stop_workload, _wait_ready

# a client's side of the handshake: say ready (after a start-up of its own), echo the start
CLIENT = """
import sys, time
time.sleep(float(sys.argv[1]))
print("ready", flush=True)
sys.stderr.write("start " + sys.stdin.readline())
"""


def client(name: str, *argv: str) -> tuple:
    process = subprocess.Popen(
        [sys.executable, "-c", *argv],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    return (SimpleNamespace(client=name), None, process)


def test_every_client_gets_the_same_start_time_once_the_slowest_is_ready():
    outputs = [client("pod1", CLIENT, "0"), client("pod2", CLIENT, "0.5")]
    try:
        began = time.time()
        _wait_ready(outputs)
        assert time.time() - began >= 0.5  # waited for pod2's start-up
        t0 = _start_clients(outputs)
        assert t0 > time.time()  # a moment ahead, to reach every client before it passes
        for _, _, process in outputs:
            assert process.wait(10) == 0
            assert float(process.stderr.read().decode().split()[1]) == t0
    finally:
        _stop_workload(outputs)


def test_a_client_that_dies_before_ready_is_named_with_its_error():
    outputs = [client("pod1", CLIENT, "0"), client("pod3", "raise SystemExit('no route')")]
    try:
        with pytest.raises(DmscError, match="workload of pod3 did not start: no route"):
            _wait_ready(outputs)
    finally:
        _stop_workload(outputs)
    assert all(process.poll() is not None for _, _, process in outputs)


def test_a_client_never_ready_is_a_timeout_naming_it():
    outputs = [client("pod4", "import time; time.sleep(30)")]
    try:
        with pytest.raises(DmscError, match=r"workload of pod4 not ready after 0.3 s"):
            _wait_ready(outputs, timeout=0.3)
    finally:
        _stop_workload(outputs)
    assert outputs[0][2].poll() is not None  # stopped, not left behind
