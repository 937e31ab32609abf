"""The main job until the experiment runner exists: Figure 2 emulated on Mininet, through faults.

Pod 2 calls the anycast service ``/B`` over HTTP ten times a second while a timeline cuts and
restores the link between sg4 and sr2, then crashes sg4 (its pod's instance of /B goes with it)
and restarts it. Every request is recorded (latency, which pod answered, success), with every
FIB change of every node: the figure shows the traffic following the routing.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dmsc import results
from dmsc.nodes.emulation import EmulatedNetwork
from dmsc.topologies import figure2

CLIENT, SERVICE = "pod2", "/B"
REQUEST_INTERVAL = 0.1


@dataclass(frozen=True)
class Step:
    at: float
    kind: str
    target: str
    action: Callable[[EmulatedNetwork], None]


TIMELINE = (
    Step(8.0, "link-down", "sg4-sr2", lambda n: n.set_link("sg4", "sr2", False)),
    Step(16.0, "link-up", "sg4-sr2", lambda n: n.set_link("sg4", "sr2", True)),
    Step(24.0, "node-crash", "sg4", lambda n: n.kill_node("sg4")),
    Step(36.0, "node-restart", "sg4", lambda n: n.restart_node("sg4")),
)
DURATION = 48.0


def run_timeline(network: EmulatedNetwork, folder: Path) -> tuple[list[dict], list[dict]]:
    """Start the workload, apply the timeline at its times, return (requests, events)."""
    out = folder / "requests.json"
    workload = network.hosts[CLIENT].popen(
        [
            sys.executable,
            "-m",
            "dmsc.nodes.workload",
            SERVICE,
            "--rate",
            str(1 / REQUEST_INTERVAL),
            "--duration",
            str(DURATION),
            "--out",
            str(out),
        ]
    )
    start, events = time.time(), []
    try:
        for step in TIMELINE:
            time.sleep(max(0.0, start + step.at - time.time()))  # the step's place in time
            events.append({"time": time.time(), "kind": step.kind, "target": step.target})
            step.action(network)
        workload.wait(DURATION + 30)
    finally:
        if workload.poll() is None:
            workload.kill()
            workload.wait()
    written = json.loads(out.read_text())["records"]  # open loop: times are the intended ones
    return [{**r, "time": r["intended"]} for r in written], events


def fib_changes(network: EmulatedNetwork) -> list[dict]:
    rows = []
    for node in (*network.spec.gateways, *network.spec.routers):
        if node in network.nodes_down:
            continue
        for event in network.ask(node, "events", limit=10_000):
            if event["kind"] == "fib":
                rows.append({"time": event["time"], "node": node, "detail": event["detail"]})
    return rows


def run_demo() -> dict[str, pd.DataFrame]:
    with EmulatedNetwork(figure2.spec()) as network, tempfile.TemporaryDirectory() as tmp:
        network.wait_converged(timeout=60)
        requests, events = run_timeline(network, Path(tmp))
        changes = fib_changes(network)
    return tables(requests, events, changes)


def tables(requests: list[dict], events: list[dict], changes: list[dict]):
    start = requests[0]["time"]
    frames = {
        "requests": pd.DataFrame(
            requests, columns=["time", "latency_ms", "ok", "served_by", "error"]
        ),
        "events": pd.DataFrame(events, columns=["time", "kind", "target"]),
        "fib_changes": pd.DataFrame(changes, columns=["time", "node", "detail"]),
    }
    for frame in frames.values():
        frame["time"] = (frame["time"] - start).round(4)
    frames["fib_changes"] = frames["fib_changes"][frames["fib_changes"]["time"] >= 0]
    frames["summary"] = summarise(frames["requests"], frames["events"])
    return frames


def summarise(requests: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """Per event: requests failed until the next event, the longest run of failures (the
    outage a client saw), and who served before and after."""
    rows = []
    ends = [*events["time"].iloc[1:], requests["time"].max() + REQUEST_INTERVAL]
    for (_, event), end in zip(events.iterrows(), ends, strict=True):
        window = requests[(requests["time"] >= event["time"]) & (requests["time"] < end)]
        before = requests[requests["time"] < event["time"]].tail(5)
        rows.append(
            {
                "time": event["time"],
                "kind": event["kind"],
                "target": event["target"],
                "requests": len(window),
                "failed": int((~window["ok"]).sum()),
                "outage_s": round(_longest_failure_run(window), 3),
                "served_before": _served(before),
                "served_after": _served(window.tail(5)),
            }
        )
    return pd.DataFrame(rows)


def _longest_failure_run(window: pd.DataFrame) -> float:
    longest, run_start = 0.0, None
    for _, row in window.iterrows():
        if not row["ok"]:
            run_start = row["time"] if run_start is None else run_start
        elif run_start is not None:
            longest, run_start = max(longest, row["time"] - run_start), None
    if run_start is not None:
        longest = max(longest, window["time"].max() + REQUEST_INTERVAL - run_start)
    return longest


def _served(rows: pd.DataFrame) -> str:
    answered = sorted(set(rows.loc[rows["ok"], "served_by"]))
    return " ".join(answered) or "-"


def plot(frames: dict[str, pd.DataFrame]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    requests, events = frames["requests"], frames["events"]
    figure, (top, bottom) = plt.subplots(
        2, 1, figsize=(10, 6), sharex=True, gridspec_kw={"height_ratios": [3, 2]}
    )
    for pod, rows in requests[requests["ok"]].groupby("served_by"):
        top.scatter(rows["time"], rows["latency_ms"], s=6, label=f"served by {pod}")
    failed = requests[~requests["ok"]]
    ceiling = max(requests["latency_ms"].max(), 1.0)
    top.scatter(
        failed["time"], [ceiling] * len(failed), marker="x", color="red", s=12, label="failed"
    )
    top.set_yscale("log")
    top.set_ylabel(f"HTTP {SERVICE} latency (ms)")
    top.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    results.plot_fib_changes(bottom, frames["fib_changes"], "time since the first request (s)")
    results.mark_events((top, bottom), events)
    figure.suptitle(f"DMSC Figure 2 (emulated): {CLIENT} calling {SERVICE} through faults", y=0.99)
    figure.tight_layout()
    return figure
