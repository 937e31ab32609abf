"""Fixtures for root tests: network namespaces joined by veths, always deleted afterwards.

Every fixture cleans up in ``finally`` (namespaces, their veths, every process in them), also
when a test fails. Without root, or without a tool the tests run, they skip and say why.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dmsc.dataplane import netutil

REPO = Path(__file__).resolve().parents[2]
#: tool -> Debian package
TOOLS = {
    "ip": "iproute2",
    "ethtool": "ethtool",
    "ping": "iputils-ping",
    "traceroute": "traceroute",
}


def require_root_and_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces (CI runs these tests as root)")
    missing = [
        f"{tool} (Debian: {package})" for tool, package in TOOLS.items() if not shutil.which(tool)
    ]
    if missing:
        pytest.skip(f"missing tools: {', '.join(missing)}")


@pytest.fixture
def namespaces() -> Iterator[netutil.Namespaces]:
    require_root_and_tools()
    spaces = netutil.Namespaces(f"dpt{os.getpid() % 100000}")
    try:
        yield spaces
    finally:
        created = list(spaces.names)
        spaces.close()
    remaining = netutil.run(["ip", "netns", "list"]).stdout
    assert not [name for name in created if name in remaining.split()], remaining


@pytest.fixture
def chain(namespaces: netutil.Namespaces) -> netutil.Chain:
    """client -- fwd -- server (and a direct client -- server link); kernel forwarding off."""
    return netutil.build_chain(namespaces)


def popen_in(namespace: str, argv: list[str], **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(netutil.netns_exec(namespace, argv), env=env, **kwargs)


def stop_process(process: subprocess.Popen, timeout: float = 5.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class RunningForwarder:
    process: subprocess.Popen
    stats_path: Path

    def stats(self, timeout: float = 5.0) -> dict:
        """Ask for a counters dump (SIGUSR1) and read it once written."""
        before = self.stats_path.stat().st_mtime_ns if self.stats_path.exists() else 0
        self.process.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stats_path.exists() and self.stats_path.stat().st_mtime_ns != before:
                return json.loads(self.stats_path.read_text())
            time.sleep(0.05)
        raise AssertionError("the forwarder wrote no stats")


@pytest.fixture
def forwarder(chain: netutil.Chain, tmp_path: Path) -> Iterator[RunningForwarder]:
    """The Python forwarder (subprocess) in the chain's fwd namespace; fails the test if it
    wrote anything to stderr (a traceback) or exited badly."""
    config = tmp_path / "forwarder.json"
    config.write_text(json.dumps(chain.forwarder_config()))
    stats = tmp_path / "stats.json"
    argv = [sys.executable, "-m", "dmsc.dataplane.forwarder", "--config", str(config)]
    process = popen_in(
        chain.fwd,
        [*argv, "--stats", str(stats)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        assert "ready" in line, process.stderr.read() if process.stderr else line
        yield RunningForwarder(process, stats)
    finally:
        stop_process(process)
    errors = process.stderr.read() if process.stderr else ""
    assert process.returncode == 0 and not errors, errors
