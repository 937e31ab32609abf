"""Root-only tests on Mininet: real namespaces, real programs. CI runs them as root."""

import os
import subprocess
from pathlib import Path

import pytest

from dmsc.nodes.emulation import RUN_ROOT, EmulatedNetwork


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/mininet/" in str(item.fspath):
            item.add_marker(pytest.mark.root)


@pytest.fixture(autouse=True)
def needs_root():
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces (CI runs as root)")


def mininet_shells() -> set[int]:
    result = subprocess.run(["pgrep", "-f", "mininet:"], capture_output=True, text=True)
    return {int(pid) for pid in result.stdout.split()}


def run_folders() -> set[Path]:
    return set(RUN_ROOT.glob("*")) if RUN_ROOT.exists() else set()


def node_programs() -> set[int]:
    result = subprocess.run(
        ["pgrep", "-f", "dmsc.nodes|dmsc spa serve|dmsc scsc"], capture_output=True, text=True
    )
    return {int(pid) for pid in result.stdout.split()}


@pytest.fixture(autouse=True)
def leaves_nothing_behind():
    """Every test must leave no host shell (namespace), node program or run folder."""
    shells, folders, programs = mininet_shells(), run_folders(), node_programs()
    yield
    assert mininet_shells() - shells == set(), "Mininet host shells left running"
    assert run_folders() - folders == set(), "run folders left under /run/dmsc"
    assert node_programs() - programs == set(), "node programs left running"


@pytest.fixture
def emulate(request):
    """Start an EmulatedNetwork; on failure, show the programs' logs; always tear down."""
    networks = []

    def start(spec, **options) -> EmulatedNetwork:
        network = EmulatedNetwork(spec, **options)
        networks.append(network)
        network.start()
        return network

    yield start
    for network in networks:
        failed = getattr(request.node, "rep_call", None)
        if failed is not None and failed.failed:
            for host, tail in network.log_tails().items():
                print(f"----- {host} log -----\n{tail}")
        network.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
