"""A results folder: tidy CSV tables, figures as PNG and PDF, and metadata.json."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import pandas as pd

RECORDED_PACKAGES = (
    "dmsc-testbed",
    "protobuf",
    "grpcio",
    "cryptography",
    "networkx",
    "topohub",  # the topology data set a topohub: network came from
    "pandas",
    "matplotlib",
)


def new_results_dir(root: Path, label: str) -> Path:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = root / f"{label}-{stamp}"
    path.mkdir(parents=True, exist_ok=False)
    return path


#: Set by ``dmsc vm run`` for the guest's command: the checkout's commit as the host's git sees
#: it. The guest cannot tell: its image has no git, and the shared checkout is not its own.
HOST_COMMIT_ENV = "DMSC_HOST_COMMIT"


def git_commit(repo: Path) -> str | None:
    """HEAD of ``repo``, with ``-dirty`` if it has changes; in the VM, what the host said."""
    try:
        result = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return os.environ.get(HOST_COMMIT_ENV) or None
    dirty = subprocess.run(
        ["git", "-C", str(repo), "status", "--porcelain"],
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout.strip()
    return result.stdout.strip() + ("-dirty" if dirty else "")


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def run_metadata(config: dict, repo: Path) -> dict:
    """What a reader needs to reproduce a run: code, configuration, platform, seeds."""
    canonical = json.dumps(config, sort_keys=True, default=str)
    return {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": git_commit(repo),
        "config": config,
        "config_sha256": hashlib.sha256(canonical.encode()).hexdigest(),
        "kernel": platform.release(),
        "vm_backend": os.environ.get("DMSC_VM_BACKEND"),  # uml or qemu; None: not in the VM
        "python": platform.python_version(),
        "packages": package_versions(),
    }


def write_tables(frames: dict[str, pd.DataFrame], folder: Path) -> list[Path]:
    paths = []
    for name, frame in frames.items():
        path = folder / f"{name}.csv"
        frame.to_csv(path, index=False)
        paths.append(path)
    return paths


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display: the VM and CI have none)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_figure(figure, folder: Path, name: str) -> list[Path]:
    paths = [folder / f"{name}.png", folder / f"{name}.pdf"]
    figure.savefig(paths[0], dpi=150)
    figure.savefig(paths[1])
    return paths


def write_metadata(meta: dict, folder: Path) -> Path:
    path = folder / "metadata.json"
    path.write_text(json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")
    return path


def plot_fib_changes(axis, changes: pd.DataFrame, xlabel: str) -> None:
    """One row per node, a tick at each FIB change (``changes``: time, node)."""
    nodes = sorted(set(changes["node"]))
    axis.scatter(changes["time"], [nodes.index(n) for n in changes["node"]], marker="|", s=80)
    axis.set_yticks(range(len(nodes)), nodes)
    axis.set_ylabel("FIB change")
    axis.set_xlabel(xlabel)


def mark_events(axes, events: pd.DataFrame) -> None:
    """A dotted line at each event on every axis, labelled above the first one."""
    for axis in axes:
        for when in events["time"]:
            axis.axvline(when, color="grey", linestyle=":", linewidth=0.8)
    for _, event in events.iterrows():
        axes[0].annotate(
            event["kind"],
            (event["time"], 1.02),
            xycoords=("data", "axes fraction"),
            rotation=30,
            va="bottom",
            fontsize=7,
            color="dimgrey",
        )
