"""Remove what crashed emulations left behind, like `mn -c` but only what this project made.

Each emulation records its Mininet host shells and links in ``/run/dmsc/<run>/state.json``; a
run whose owner process is gone is cleaned: its node programs (found by the run folder in their
command line) and host shells are terminated, its links deleted, its folder removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from dmsc.nodes.emulation import RUN_ROOT


def _alive(pid: int) -> bool:
    """Running (a zombie, killed but not yet reaped, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def _processes_mentioning(text: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if (
            entry.name.isdigit()
            and int(entry.name) != os.getpid()
            and text in _cmdline(int(entry.name))
        ):
            pids.append(int(entry.name))
    return pids


def _terminate(pids: list[int], grace: float = 3.0) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def stale_runs(root: Path = RUN_ROOT) -> list[Path]:
    """Run folders whose owning process is gone (or that have no state file at all)."""
    runs = []
    for folder in sorted(root.glob("*")) if root.exists() else []:
        state_file = folder / "state.json"
        if not state_file.exists():
            runs.append(folder)
            continue
        state = json.loads(state_file.read_text())
        if not _alive(state["pid"]):
            runs.append(folder)
    return runs


def clean_run(folder: Path) -> list[str]:
    """Clean one stale run; returns what was done, one line each."""
    done = []
    programs = _processes_mentioning(str(folder))
    if programs:
        _terminate(programs)
        done.append(f"stopped {len(programs)} node program(s)")
    state_file = folder / "state.json"
    if state_file.exists():
        state = json.loads(state_file.read_text())
        shells = [pid for pid in state["shells"].values() if "mininet:" in _cmdline(pid)]
        _terminate(shells, grace=1.0)
        if shells:
            done.append(f"stopped {len(shells)} Mininet host shell(s)")
        for link in state["links"]:
            if Path(f"/sys/class/net/{link}").exists():
                subprocess.run(["ip", "link", "del", link], capture_output=True, check=False)
                done.append(f"deleted link {link}")
    shutil.rmtree(folder, ignore_errors=True)
    done.append(f"removed {folder}")
    return done
