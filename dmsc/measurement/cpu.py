"""CPU time from /proc as data: what each node program, and the machine, spent in a span.

The control plane's cost in the data plane (docs/experiments.md, "Where the CPU goes") is a
question of shares: on the VM's one CPU every probe, telemetry report and decision round runs
instead of a forwarder. ``/proc/PID/stat`` gives a process's user and system time (all its
threads), ``/proc/stat`` the machine's busy and idle time, both in clock ticks. The parsers are
pure; :func:`read_process` and :func:`read_machine` are the only reads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

TICKS_PER_S = os.sysconf("SC_CLK_TCK")
#: /proc/stat's cpu line: user nice system idle iowait irq softirq steal (guest time is in user)
_IDLE_FIELDS = (3, 4)  # idle, iowait
_COUNTED_FIELDS = 8


@dataclass(frozen=True)
class MachineTimes:
    busy_s: float
    idle_s: float


def parse_process_stat(text: str) -> tuple[int, float]:
    """(parent pid, user + system seconds) from a ``/proc/PID/stat`` line. The command name,
    field 2, is in parentheses and may hold spaces or parentheses itself: fields are counted
    from the last ``)``. ValueError for anything else."""
    closing = text.rfind(")")
    if closing < 0:
        raise ValueError("no ')' closing the command name")
    fields = text[closing + 1 :].split()
    if len(fields) < 13:
        raise ValueError(f"{len(fields) + 2} fields, a stat line has at least 15")
    # after the name: state(3) ppid(4) ... utime(14) stime(15)
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS_PER_S


def parse_machine_stat(text: str) -> MachineTimes:
    """The machine's busy and idle seconds, all CPUs together, from ``/proc/stat``."""
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == "cpu":
            ticks = [int(v) for v in parts[1 : 1 + _COUNTED_FIELDS]]
            idle = sum(ticks[i] for i in _IDLE_FIELDS if i < len(ticks))
            return MachineTimes((sum(ticks) - idle) / TICKS_PER_S, idle / TICKS_PER_S)
    raise ValueError("no 'cpu' line")


def read_processes(pids, proc: Path = Path("/proc")) -> dict[int, float | None]:
    """Per pid, user + system seconds of it and every process below it (what it started);
    None when it is gone. One read of the process table for all. A descendant that exited
    during the span is not counted: its time went to its parent's cutime only once waited
    for, which the node programs do not do."""
    stats = _all_stats(proc)
    children: dict[int, list[int]] = {}
    for each, (parent, _) in stats.items():
        children.setdefault(parent, []).append(each)
    return {pid: _tree_seconds(pid, stats, children) if pid in stats else None for pid in pids}


def read_process(pid: int, proc: Path = Path("/proc")) -> float | None:
    return read_processes([pid], proc)[pid]


def _tree_seconds(pid: int, stats: dict, children: dict) -> float:
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        total += stats[current][1]
        pending.extend(children.get(current, ()))
    return total


def read_machine(proc: Path = Path("/proc")) -> MachineTimes:
    return parse_machine_stat((proc / "stat").read_text())


def _all_stats(proc: Path) -> dict[int, tuple[int, float]]:
    stats = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stats[int(entry.name)] = parse_process_stat((entry / "stat").read_text())
        except (OSError, ValueError):  # gone meanwhile, or not ours to read
            continue
    return stats
