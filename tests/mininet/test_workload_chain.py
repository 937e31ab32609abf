"""Open-loop load through a three-service call chain on Figure 2, run by ``dmsc run``.

pod2 calls /A/1 (pod1), whose /A calls /B/4 (pod4), whose /B calls /C/3 (pod3). Only the last
hop crosses sr3-sg3, which is throttled to 50 kbit/s toward sg3 (HTB, as this kernel has no
netem) while the workload runs: the queue it builds shows in the deepest hop's rows and, through
the chain, in the front end's latency, while the hops above it stay on fast links.
"""

from __future__ import annotations

import subprocess
import sys

import pandas as pd

EXPERIMENT = """\
name: chain-test
description: A three-service chain with its last hop throttled half-way.
topology: figure2
workload:
  - {client: pod2, service: /A/1, rate_hz: 10, timeout_s: 2.0}
calls:
  /A: {calls: [/B/4], timeout_s: 1.5}
  /B: {calls: [/C/3], timeout_s: 1.0}
duration_s: 16
repetitions: 1
seed: 1
timeline:
  - {at: 6, action: impair, link: [sr3, sg3], rate_mbit: 0.05, direction: forward}
  - {at: 12, action: clear, link: [sr3, sg3]}
"""


def test_a_throttled_link_deep_in_a_call_chain_shows_in_the_front_end_and_its_hop(tmp_path):
    path = tmp_path / "chain.yaml"
    path.write_text(EXPERIMENT)
    results = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "dmsc", "run", "--quiet", str(path), "--results", str(results)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (folder,) = results.iterdir()
    calls = pd.read_csv(folder / "requests.csv", keep_default_na=False)
    calls["depth"] = calls["call_id"].str.count(r"\.")
    front = calls[calls["depth"] == 0]
    assert 150 <= len(front) <= 160, "open loop: every call of 16 s at 10/s was made"
    assert (front["parent_id"] == "").all() and set(front["client"]) == {"pod2"}

    # every front-end call made one hop to /B/4 from pod1, and that one to /C/3 from pod4
    first = calls[calls["depth"] == 1]
    second = calls[calls["depth"] == 2]
    assert set(zip(first["client"], first["service"], strict=True)) == {("pod1", "/B/4")}
    assert set(zip(second["client"], second["service"], strict=True)) == {("pod4", "/C/3")}
    assert set(first["parent_id"]) <= set(front["call_id"])
    assert set(second["parent_id"]) <= set(first["call_id"])
    assert (second["trace_id"] == second["call_id"].str.split(".").str[0]).all()
    assert len(first) >= 0.95 * len(front)
    served = front[front["ok"].astype(str) == "True"]
    assert set(served["served_by"]) == {"pod1"}

    def median(rows, start, end):
        window = rows[(rows["intended_s"].astype(float) >= start)
                      & (rows["intended_s"].astype(float) < end)
                      & (rows["ok"].astype(str) == "True")]  # fmt: skip
        assert len(window) >= 10, f"too few successful calls in [{start}, {end})"
        return window["latency_ms"].astype(float).median()

    before, during = median(front, 1, 6), median(front, 7.5, 12)
    assert during > before + 50, (before, during)  # the queue behind the throttled link
    deep_before, deep_during = median(second, 1, 6), median(second, 7.5, 12)
    assert deep_during > deep_before + 50, (deep_before, deep_during)
    # the hop above the throttled link is slow only by what it waits for below
    above = median(first, 7.5, 12) - deep_during
    assert above < 0.5 * (deep_during - deep_before), (above, deep_during)
    assert (folder / "percentiles.csv").exists()
