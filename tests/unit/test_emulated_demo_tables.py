"""The emulated demo's tables, from hand-made request records (no Mininet needed)."""

from dmsc import emulated_demo


def records():
    rows = []
    for i in range(100):  # 10 s of requests, 10 per second
        t = 1000.0 + i * 0.1
        failed = 32 <= i < 40  # 0.8 s outage after the event at 3.0 s
        served = "pod4" if i < 32 else "pod1"
        rows.append(
            {
                "time": t,
                "latency_ms": 3.0,
                "ok": not failed,
                "served_by": "" if failed else served,
                "error": "timeout" if failed else "",
            }
        )
    return rows


def test_summary_measures_the_outage_and_who_served_around_each_event():
    events = [
        {"time": 1003.0, "kind": "node-crash", "target": "sg4"},
        {"time": 1006.0, "kind": "node-restart", "target": "sg4"},
    ]
    changes = [
        {"time": 1003.5, "node": "sr2", "detail": "changed ['/B']"},
        {"time": 990.0, "node": "sr2", "detail": "before the run"},
    ]
    frames = emulated_demo.tables(records(), events, changes)
    crash, restart = frames["summary"].to_dict("records")
    assert (crash["failed"], crash["outage_s"]) == (8, 0.8)
    assert (crash["served_before"], crash["served_after"]) == ("pod4", "pod1")
    assert restart["failed"] == 0 and restart["outage_s"] == 0.0
    assert list(frames["fib_changes"]["time"]) == [3.5]  # times relative to the first request


def test_an_outage_still_open_at_the_end_counts_to_the_end():
    rows = records()
    for row in rows[90:]:
        row.update(ok=False, served_by="")
    events = [{"time": 1008.5, "kind": "link-down", "target": "x"}]
    summary = emulated_demo.tables(rows, events, [])["summary"].iloc[0]
    assert summary["outage_s"] == 1.0
