"""``dmsc run`` end to end on this host: a link-failure experiment with and without the SCSC
produces every table and figure; a run stopped half-way leaves what it had, marked incomplete.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from dmsc.experiments.runner import TABLES

EXPERIMENT = """\
name: link-failure-test
description: A short cut of sg4-sr2 while pod2 calls /B, with and without the SCSC.
topology: figure2
workload:
  - {client: pod2, service: /B, rate_hz: 20, protocol: http, timeout_s: 0.5}
duration_s: %(duration)s
repetitions: 1
seed: 1
timeline:
  - {at: 4, action: link_down, link: [sg4, sr2]}
  - {at: 8, action: link_up, link: [sg4, sr2]}
variants:
  - {name: routing-only}
  - {name: scsc, scsc: {probe_interval_ms: 50, telemetry_interval_ms: 250}}
"""


def write_experiment(folder, duration: int) -> str:
    path = folder / "experiment.yaml"
    path.write_text(EXPERIMENT % {"duration": duration})
    return str(path)


def dmsc_run(*arguments) -> list[str]:
    return [sys.executable, "-m", "dmsc", "run", "--quiet", *arguments]


def workload_running() -> bool:
    found = subprocess.run(["pgrep", "-f", "dmsc.nodes.workload"], capture_output=True)
    return found.returncode == 0


def only_folder(results):
    (folder,) = results.iterdir()
    return folder


def test_a_link_failure_experiment_writes_every_table_and_figure(tmp_path):
    results = tmp_path / "results"
    done = subprocess.run(dmsc_run(write_experiment(tmp_path, 12), "--results", str(results)),
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    folder = only_folder(results)
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["complete"] is True
    assert [r["variant"] for r in meta["repetitions"]] == ["routing-only", "scsc"]
    tables = {name: pd.read_csv(folder / f"{name}.csv") for name in TABLES}
    for name, columns in TABLES.items():
        assert tuple(tables[name].columns) == columns, name
    requests = tables["requests"]
    assert set(requests["variant"]) == {"routing-only", "scsc"}
    for _, per_variant in requests.groupby("variant"):
        # open loop: 12 s at 20/s whatever the cut did; the clients were ready before t0,
        # so no slot passed while one started
        assert len(per_variant) == 240
        assert per_variant["intended_s"].min() == pytest.approx(0, abs=0.01)
        assert per_variant["ok"].mean() > 0.9
    events = tables["events"]
    assert list(events["action"]) == ["link_down", "link_up"] * 2
    assert events["ok"].all()
    assert events["commands"].str.contains("ip link set").all()
    assert ((events["applied_s"] - events["at_s"]).abs() < 0.5).all()
    fib = tables["fib_changes"]
    for variant in ("routing-only", "scsc"):  # every FIB followed the cut and the repair
        changed = fib[(fib["variant"] == variant) & (fib["time_s"] > 4)]
        assert {"sg2", "sr2", "sg4"} <= set(changed["node"]), variant
    assert set(tables["telemetry"]["variant"]) == {"scsc"}  # only the SCSC variant measures
    summary = pd.read_csv(folder / "summary.csv")
    assert list(summary["variant"]) == ["routing-only", "scsc"]
    assert (summary["during_p50_ms"] > 0).all()
    for name in ("latency.png", "latency.pdf", "reroute.png", "reroute.pdf", "report.tex"):
        assert (folder / name).stat().st_size > 0, name
    assert "routing-only" in (folder / "report.tex").read_text()
    # the noise floor, before each timeline: pod2's echoes to /B through the forwarders
    pings = tables["pings"]
    assert set(pings["measurement"]) == {"floor"} and set(pings["kind"]) == {"path"}
    for _, floor in pings.groupby("variant"):
        assert len(floor) == 60  # floor_s 3 / interval_s 0.05
        assert (floor["sent_s"] < 0).all()  # before t0, before the workload
        assert floor["rtt_ms"].notna().all() and floor["rtt_ms"].between(0, 50).all()
    assert (summary["floor_p50_ms"] > 0).all() and (summary["floor_loss"] == 0).all()
    assert (folder / "calibration.csv").stat().st_size > 0
    assert "noise floor and netem accuracy" in done.stdout
    # where the CPU went: every program and the client, the rest of the machine, its idle
    cpu = tables["cpu"]
    roles = {v: set(rows["role"]) for v, rows in cpu.groupby("variant")}
    assert roles["scsc"] == {"sg", "sr", "pod", "spa", "scsc", "client", "other", "idle"}
    assert roles["routing-only"] == roles["scsc"] - {"scsc"}
    for _, rows in cpu.groupby(["variant", "repetition"]):
        machine = rows["wall_s"].iloc[0] * os.cpu_count()
        assert rows["cpu_s"].sum() == pytest.approx(machine, rel=0.1)
        assert rows.loc[rows["role"] == "sg", "cpu_s"].sum() > 0
    assert (folder / "cpu.png").stat().st_size > 0
    shares = pd.read_csv(folder / "cpu_shares.csv")
    assert set(shares["variant"]) == {"routing-only", "scsc"}


REUSED = """\
name: congestion-reused-test
description: sr2-sg4 throttled toward sg4 twice, on one network reset in between.
topology: figure2
workload:
  - {client: pod2, service: /B, rate_hz: 20, protocol: http, timeout_s: 1.0}
scsc: {thresholds: {default: {max_delay_ms: 50}}}
duration_s: 16
repetitions: 2
seed: 1
reuse_network: true
timeline:
  - {at: 4, action: impair, link: [sr2, sg4], rate_mbit: 0.02, direction: forward}
  - {at: 12, action: thresholds, service: /B, max_delay_ms: null, max_jitter_ms: null,
     max_loss: null}
"""


def test_on_a_reused_network_every_repetition_starts_from_routings_choice(tmp_path):
    """The timeline leaves the link throttled and /B without limits: the reset undoes both
    and the SCSC's policies, so the second repetition starts on /B/4 and moves again."""
    (tmp_path / "reused.yaml").write_text(REUSED)
    results = tmp_path / "results"
    done = subprocess.run(dmsc_run(str(tmp_path / "reused.yaml"), "--results", str(results)),
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    folder = only_folder(results)
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["complete"] is True and meta["reuse_network"] is True
    first, second = meta["repetitions"]
    assert first["reset_s"] is None and second["reset_s"] > 0
    pings = pd.read_csv(folder / "pings.csv")  # the link's floor, but no echo in its queue
    assert set(zip(pings["kind"], pings["source"], pings["target"], strict=True)) == {
        ("path", "pod2", "/B"),
        ("link", "sr2", "sg4"),
    }
    assert set(pings["measurement"]) == {"floor"}
    cleared = [c["node"] for c in meta["tc_commands"] if c["command"][:3] == ["tc", "qdisc", "del"]]
    assert sorted(cleared) == ["sg4", "sr2"]  # by the reset: the timeline never clears
    requests = pd.read_csv(folder / "requests.csv")
    decisions = pd.read_csv(folder / "decisions.csv")
    changes = pd.read_csv(folder / "policy_changes.csv")
    for repetition in (0, 1):
        mine = requests[requests["repetition"] == repetition]
        before = mine[mine["intended_s"] < 4]
        assert len(before) > 50 and (before["served_by"] == "pod4").all(), repetition
        moved = decisions[decisions["repetition"] == repetition].iloc[0]
        assert (moved["old_instance"], moved["new_instance"]) == ("/B/4", "/B/1")
        assert 4 < moved["time_s"] < 8, repetition
        late = mine[mine["intended_s"] > moved["time_s"] + 1]
        assert (late["served_by"] == "pod1").mean() > 0.95, repetition
        added = changes[(changes["repetition"] == repetition) & (changes["change"] == "add")]
        first_adds = added.groupby("node")["time_s"].min()  # sg2 and the routers on the path
        assert "sg2" in first_adds.index, repetition
        assert first_adds.between(moved["time_s"], moved["time_s"] + 1).all(), repetition
    # the reset's removals are the second repetition's first rows, before its t0
    removed = changes[(changes["repetition"] == 1) & (changes["change"] == "delete")]
    assert "sg2" in set(removed["node"]) and (removed["time_s"] < 0).all()
    gap = second["t0"] - first["wall_end"]  # the second's SCSC rows: none from the first
    telemetry = pd.read_csv(folder / "telemetry.csv")
    assert telemetry[telemetry["repetition"] == 1]["time_s"].min() > -gap
    summary = pd.read_csv(folder / "summary.csv")
    impairs = summary[summary["action"] == "impair"]
    assert impairs["reroute_s"].between(0, 4).all() and len(impairs) == 2


def test_a_stopped_run_leaves_what_it_had_marked_incomplete(tmp_path):
    results = tmp_path / "results"
    run = subprocess.Popen(dmsc_run(write_experiment(tmp_path, 20), "--results", str(results)),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (results.exists() and any(results.iterdir())):
            assert time.monotonic() < deadline, "no results folder appeared"
            time.sleep(0.2)
        folder = only_folder(results)
        while not workload_running():  # into the first repetition's workload
            assert time.monotonic() < deadline and run.poll() is None, "no workload started"
            time.sleep(0.2)
        run.send_signal(signal.SIGTERM)
        output, _ = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode != 0, output
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["complete"] is False
    assert "KeyboardInterrupt" in meta["error"]
    for name, columns in TABLES.items():  # readable: at least the header
        assert tuple(pd.read_csv(folder / f"{name}.csv").columns) == columns


@pytest.mark.parametrize("text", ["name: x\n", "name: [\n"])
def test_a_bad_experiment_file_is_refused_before_anything_starts(tmp_path, text):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    done = subprocess.run(dmsc_run(str(path), "--results", str(tmp_path / "r")),
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2
    assert "bad.yaml" in done.stderr
    assert not (tmp_path / "r").exists()
