"""The report of a results folder, from hand-made folders under tests/unit/data/ (no emulation).

results-delay (complete). pod2 calls /B every 0.4 s for 16 s (requests 0..39); sr2-sg4 is
impaired at 10 s and cleared at 14 s, both applied on time. Thresholds: max_delay_ms 50.

- scsc #0: pod4 answers in 2 ms before; at 10.0 pod4 in 102 ms, 10.4 fails, pod1 in 5 ms from
  10.8 (reroute 0.8); after the clear pod1 twice, then pod4 in 2 ms. Telemetry sg2->/B/4 each
  second at x.3, 101 ms from 10.3 (detect 0.3); decision at 10.5 (decide 0.5), its policies
  installed at 10.55 and 10.6 (install 0.6; policy_changes.csv, and the same times in the final
  tables, policies.csv), sr1's deleted at 15.5. Distractors: sg5->/B/1 without replies already
  at 9.5 (so its 10.1 sample detects nothing), sg2->/C/1 at 10.05, a decision about /C at 10.2
  and a /C policy at 10.7: /C is not called by the workload.
- scsc #1: telemetry at x.5 (detect 0.5), decision 10.9, policies added at 10.95 and modified at
  11.0 (install 1.0);
  pod4 at 10.0 and 10.4 (102 ms), 10.8 fails, pod1 from 11.2 (reroute 1.2) and after the clear.
- routing-only #0: pod4 throughout, 102 ms during the impairment; no SCSC: no telemetry,
  decisions or policies.
- cpu.csv: 16 s of one CPU per repetition (tests/unit/test_cpu.py has the shares by hand).

results-incomplete: ``complete`` false, scsc #0 only, the run died at 12 s before the clear
and before policies.csv was written. Telemetry at x.2 (detect 0.2), decision 10.6, pod4 at 10.0
and 10.4 (102 ms), pod1 from 10.8.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from dmsc.cli import main
from dmsc.errors import DmscError
from dmsc.experiments import report

DATA = Path(__file__).parent / "data"
DELAY, INCOMPLETE = DATA / "results-delay", DATA / "results-incomplete"
NAN = math.nan

# Percentiles are nearest rank: p95 of nine samples is the 9th smallest (ceil(0.95 * 9)).
# before: 25 calls of 2 ms; during: 10 due, one failed, eight 5 ms and one 102 ms.
SCSC_0 = {
    "detect_s": 0.3, "decide_s": 0.5, "install_s": 0.6, "reroute_s": 0.8,
    "false_alarms": 1,  # sg5->/B/1 without replies at 9.5, before the impairment
    "before_n": 25, "before_p50_ms": 2.0, "before_p95_ms": 2.0, "before_p999_ms": 2.0,
    "before_loss": 0.0,
    "during_n": 9, "during_p50_ms": 5.0, "during_p95_ms": 102.0, "during_p99_ms": 102.0,
    "during_loss": 0.1,
    "after_n": 5, "after_p50_ms": 2.0, "after_p95_ms": 5.0, "after_loss": 0.0,  # [2, 2, 2, 5, 5]
}  # fmt: skip
SCSC_1 = {
    "detect_s": 0.5, "decide_s": 0.9, "install_s": 1.0, "reroute_s": 1.2, "false_alarms": 0,
    "before_p50_ms": 2.0, "before_p95_ms": 2.0, "before_loss": 0.0,
    # during: 7 x 5, 2 x 102
    "during_n": 9, "during_p50_ms": 5.0, "during_p95_ms": 102.0, "during_loss": 0.1,
    "after_p50_ms": 5.0, "after_p95_ms": 5.0, "after_loss": 0.0,
}  # fmt: skip
ROUTING_ONLY = {
    "detect_s": NAN, "decide_s": NAN, "install_s": NAN, "reroute_s": NAN, "false_alarms": NAN,
    "before_p50_ms": 2.0, "before_p95_ms": 2.0, "before_loss": 0.0,
    "during_n": 10, "during_p50_ms": 102.0, "during_p95_ms": 102.0, "during_loss": 0.0,
    "after_p50_ms": 2.0, "after_p95_ms": 2.0, "after_loss": 0.0,
}  # fmt: skip


def copy(source: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(source, tmp_path / source.name))


def edit(folder: Path, name: str, old: str, new: str) -> None:
    path = folder / name
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def append(folder: Path, name: str, line: str) -> None:
    with (folder / name).open("a") as stream:
        stream.write(line + "\n")


def row(summary: pd.DataFrame, variant: str, repetition: int = 0) -> dict:
    chosen = summary[(summary["variant"] == variant) & (summary["repetition"] == repetition)]
    assert len(chosen) == 1
    return chosen.iloc[0].to_dict()


def assert_values(actual: dict, expected: dict) -> None:
    for key, value in expected.items():
        if math.isnan(value):
            assert math.isnan(actual[key]), key
        else:
            assert actual[key] == pytest.approx(value, abs=1e-6), key  # rounded to 1e-6


# ---------------------------------------------------------------- summary.csv


def test_summary_has_the_contract_columns_and_a_row_per_degrading_event():
    summary = report.build_summary(DELAY)
    assert list(summary.columns[:6]) == [
        "variant", "repetition", "event_index", "action", "target", "at_s",
    ]  # fmt: skip
    assert set(report.METRICS) <= set(summary.columns)
    # the clear events have no row; the impairment is event 0 of each repetition
    assert list(zip(summary["variant"], summary["repetition"], strict=True)) == [
        ("scsc", 0), ("scsc", 1), ("routing-only", 0),
    ]  # fmt: skip
    assert set(summary["action"]) == {"impair"} and set(summary["event_index"]) == {0}
    assert set(summary["target"]) == {"sr2-sg4"} and set(summary["at_s"]) == {10.0}


@pytest.mark.parametrize(("repetition", "expected"), [(0, SCSC_0), (1, SCSC_1)])
def test_scsc_parts_and_windows_are_as_hand_computed(repetition, expected):
    assert_values(row(report.build_summary(DELAY), "scsc", repetition), expected)


def test_routing_only_never_moves_and_has_no_control_parts():
    assert_values(row(report.build_summary(DELAY), "routing-only"), ROUTING_ONLY)


def test_a_pair_bad_before_the_event_is_not_a_detection_but_a_new_one_is(tmp_path):
    folder = copy(DELAY, tmp_path)
    edit(folder, "telemetry.csv", "scsc,0,9.5,sg5,/B/1,,,1.0,\n", "")
    # sg5 -> /B/1 now has no sample before 10.1: its first sample, with no reply, detects
    assert row(report.build_summary(folder), "scsc")["detect_s"] == pytest.approx(0.1)


def test_durations_count_from_when_the_event_was_applied(tmp_path):
    folder = copy(DELAY, tmp_path)
    edit(folder, "events.csv", "scsc,0,10,10.0,impair", "scsc,0,10,10.1,impair")
    result = row(report.build_summary(folder), "scsc")
    assert result["at_s"] == 10.0
    assert_values(result, {"detect_s": 0.2, "decide_s": 0.4, "install_s": 0.5, "reroute_s": 0.7})
    # during starts at 10.1: one failure and eight 5 ms answers; the 102 ms one is before
    assert_values(result, {"during_loss": 1 / 9, "during_p95_ms": 5.0, "during_n": 8})


def test_policies_of_the_pairs_next_decision_are_not_this_ones(tmp_path):
    folder = copy(DELAY, tmp_path)
    append(folder, "decisions.csv", "scsc,0,10.58,sg2,/B,path,/B/1,,/B/1,sg2>sr3>sg1,False")
    # sg2's policy at 10.6 belongs to the decision at 10.58; sr1's at 10.55 to the first
    assert row(report.build_summary(folder), "scsc")["install_s"] == pytest.approx(0.55)


def test_install_comes_from_the_change_log_also_when_the_final_tables_lost_it(tmp_path):
    folder = copy(DELAY, tmp_path)
    edit(folder, "policies.csv", "scsc,0,sr1", "scsc,1,sr1")
    edit(folder, "policies.csv", "scsc,0,sg2", "scsc,1,sg2")
    assert row(report.build_summary(folder), "scsc")["install_s"] == pytest.approx(0.6)


def test_without_a_change_log_install_comes_from_the_final_tables_and_is_noted(tmp_path):
    folder = copy(DELAY, tmp_path)
    (folder / "policy_changes.csv").unlink()
    run = report.load_run(folder)
    assert run.notes == (
        f"policy_changes.csv is missing: {report.OPTIONAL_TABLES['policy_changes']}",
    )
    assert row(report.build_summary(run), "scsc")["install_s"] == pytest.approx(0.6)
    edit(folder, "policies.csv", "scsc,0,sr1", "scsc,1,sr1")
    edit(folder, "policies.csv", "scsc,0,sg2", "scsc,1,sg2")  # replaced later: gone
    assert math.isnan(row(report.build_summary(folder), "scsc")["install_s"])


def test_a_change_log_with_an_unknown_change_is_refused_naming_the_line(tmp_path):
    folder = copy(DELAY, tmp_path)
    edit(folder, "policy_changes.csv", "scsc,1,11.0,sg2,modify", "scsc,1,11.0,sg2,replace")
    with pytest.raises(DmscError, match=r"policy_changes.csv: line 7: .*add, modify or delete"):
        report.load_run(folder)


def test_a_link_is_cleared_whichever_way_its_ends_are_written(tmp_path):
    folder = copy(DELAY, tmp_path)
    edit(folder, "events.csv", "scsc,0,14,14.0,clear,sr2-sg4", "scsc,0,14,14.0,clear,sg4-sr2")
    assert_values(row(report.build_summary(folder), "scsc"), SCSC_0)


def test_a_clear_of_another_link_does_not_end_the_impairment(tmp_path):
    folder = copy(DELAY, tmp_path)
    edit(folder, "events.csv", "scsc,0,14,14.0,clear,sr2-sg4", "scsc,0,14,14.0,clear,sr1-sg1")
    result = row(report.build_summary(folder), "scsc")
    # during runs to the end: 102, 10 x 5, 3 x 2 and one failure out of 15; no after window
    assert_values(
        result,
        {"during_p50_ms": 5.0, "during_loss": 1 / 15, "after_p50_ms": NAN, "after_loss": NAN},
    )


def test_a_failed_event_is_left_out_and_noted(tmp_path):
    folder = copy(DELAY, tmp_path)
    edit(folder, "events.csv", "delay 100ms,True,", "delay 100ms,False,RTNETLINK answers: busy")
    run = report.load_run(folder)
    summary = report.build_summary(run)
    assert ("scsc", 0) not in set(zip(summary["variant"], summary["repetition"], strict=True))
    assert any("impair sr2-sg4 at 10 s failed (RTNETLINK answers: busy)" in n for n in run.notes)


def test_windows_are_by_when_a_call_was_due_not_when_it_left(tmp_path):
    folder = copy(DELAY, tmp_path)
    # the last call due before the impairment left late, inside it: it still counts before
    edit(folder, "requests.csv", "/B,9.6,9.6,2.0,2.0", "/B,9.6,10.5,2.0,2.0")
    assert_values(row(report.build_summary(folder), "scsc"), SCSC_0)


def test_hops_below_the_clients_calls_are_in_percentiles_not_in_the_summary(tmp_path):
    folder = copy(DELAY, tmp_path)
    for k, latency in enumerate((90.0, 95.0, 400.0)):  # pod4's calls to /C while answering
        append(folder, "requests.csv", f"scsc,0,v0r0c0-25,v0r0c0-25.{k},v0r0c0-25,pod4,/C,"
                                       f"10.{k},10.{k},{latency},{latency},True,pod1,")  # fmt: skip
    assert_values(row(report.build_summary(folder), "scsc"), SCSC_0)
    ladder = report.build_percentiles(folder)
    hops = ladder[(ladder["variant"] == "scsc") & (ladder["depth"] == 1)]
    assert list(zip(hops["window"], hops["client"], hops["service"], hops["n"], strict=True)) == [
        ("during", "pod4", "/C", 3),
    ]
    assert hops.iloc[0]["p50_ms"] == 95.0 and hops.iloc[0]["max_ms"] == 400.0
    front = ladder[(ladder["variant"] == "scsc") & (ladder["depth"] == 0)]
    during = front[front["window"] == "during"].iloc[0]
    # both repetitions pooled: 9 + 9 successful calls, 2 of 20 failed
    assert (during["n"], during["loss"], during["max_ms"]) == (18, 0.1, 102.0)
    assert during["thin"] == "p50 p90 p95 p99 p99.9"  # 18 samples: all thin


def test_percentiles_are_nearest_rank_and_flagged_when_thin():
    ladder = report.percentiles(pd.Series(range(1, 1001), dtype=float), report.LADDER)
    assert ladder == {"p50_ms": 500, "p90_ms": 900, "p95_ms": 950, "p99_ms": 990, "p999_ms": 999}
    assert report.thin(1000, report.LADDER) == ["p999_ms"]  # one sample above p99.9
    assert report.thin(200, report.SUMMARY_PERCENTILES) == ["p99_ms", "p999_ms"]
    assert report.thin(199, report.SUMMARY_PERCENTILES) == ["p95_ms", "p99_ms", "p999_ms"]
    assert all(math.isnan(v) for v in report.percentiles(pd.Series([], dtype=float),
                                                          report.LADDER).values())  # fmt: skip


def test_thin_summary_percentiles_are_noted_per_variant_and_window():
    notes = report.latency_notes(report.build_summary(DELAY))
    assert "scsc, before: p95, p99, p99.9 rest on fewer than 10 calls above them (n = 25)" in notes
    assert "scsc, during: p50, p95, p99, p99.9 rest on fewer than 10 calls above them (n = 9)" in (
        notes
    )
    assert len(notes) == 6  # two variants, three windows


def test_calls_refused_at_the_bound_are_losses_and_noted(tmp_path):
    folder = copy(DELAY, tmp_path)
    edit(folder, "requests.csv", "/B,11.2,11.2,5.0,5.0,True,pod1,", "/B,11.2,,12.2,,False,,"
                                                                 "in-flight bound")  # fmt: skip
    run = report.load_run(folder)
    assert "scsc: 1 call refused at the in-flight bound (never sent, counted as lost)" in run.notes
    summary = report.build_summary(run)
    assert_values(row(summary, "scsc"), {"during_loss": 0.2, "during_n": 8})
    assert (
        "scsc, during: p50, p95, p99, p99.9 rest on fewer than 10 calls above them (n = 8-9)"
        in (report.latency_notes(summary))
    )


def test_results_from_before_open_loop_load_still_load_and_say_so(tmp_path):
    folder = copy(DELAY, tmp_path)
    frame = pd.read_csv(folder / "requests.csv", keep_default_na=False, dtype=str)
    old = ["variant", "repetition", "client", "service", "sent_s", "latency_ms", "ok",
           "served_by", "error"]  # fmt: skip
    frame[old].to_csv(folder / "requests.csv", index=False)
    run = report.load_run(folder)
    assert report.PREDATES_OPEN_LOOP in run.notes
    assert_values(row(report.build_summary(run), "scsc"), SCSC_0)
    requests = run.tables["requests"]
    assert (requests["intended_s"] == requests["sent_s"]).all()
    assert (requests["parent_id"] == "").all()


def test_a_closed_loop_variant_is_noted(tmp_path):
    folder = copy(DELAY, tmp_path)
    meta = json.loads((folder / "metadata.json").read_text())
    meta["variants"]["routing-only"]["workload"] = [{"client": "pod2", "arrivals": "closed"}]
    (folder / "metadata.json").write_text(json.dumps(meta))
    notes = report.load_run(folder).notes
    assert [n for n in notes if "closed-loop" in n] == [
        "routing-only: closed-loop client (pod2): latency from the actual send; calls a stall "
        "held up were never made (coordinated omission)"
    ]


def test_main_instance_is_the_most_frequent_then_the_latest():
    requests = pd.DataFrame({"intended_s": [1.0, 2.0, 3.0, 4.0], "served_by": list("abba")})
    assert report.main_instance(requests) == "a"  # two each: a served last
    assert report.main_instance(requests.iloc[:3]) == "b"


# ---------------------------------------------------------------- over repetitions, compare


def test_aggregate_takes_median_and_p95_over_repetitions():
    table = report.aggregate(report.build_summary(DELAY)).set_index(["variant", "metric"])
    expected = {
        ("scsc", "detect_s"): (0.4, 0.49),
        ("scsc", "decide_s"): (0.7, 0.88),
        ("scsc", "install_s"): (0.8, 0.98),
        ("scsc", "reroute_s"): (1.0, 1.18),
        ("scsc", "during_p95_ms"): (102.0, 102.0),
        ("scsc", "during_n"): (9, 9),
    }
    for key, (median, p95) in expected.items():
        assert table.loc[key, "median"] == pytest.approx(median), key
        assert table.loc[key, "p95"] == pytest.approx(p95), key
    assert (
        table.loc[("scsc", "reroute_s"), "n"],
        table.loc[("scsc", "reroute_s"), "repetitions"],
    ) == (2, 2)
    assert table.loc[("routing-only", "reroute_s"), "n"] == 0
    assert math.isnan(table.loc[("routing-only", "reroute_s"), "median"])


def test_compare_labels_each_folder_by_its_name():
    table = report.compare([DELAY, INCOMPLETE])
    reroutes = table[table["metric"] == "reroute_s"].set_index(["results", "variant"])["median"]
    assert list(reroutes.index) == [
        ("results-delay", "scsc"),
        ("results-delay", "routing-only"),
        ("results-incomplete", "scsc"),
    ]
    assert reroutes.iloc[0] == pytest.approx(1.0) and math.isnan(reroutes.iloc[1])
    assert reroutes.iloc[2] == pytest.approx(0.8)


def test_compare_names_folders_of_the_same_name_by_their_path(tmp_path):
    first, second = copy(DELAY, tmp_path / "a"), copy(DELAY, tmp_path / "b")
    assert set(report.compare([first, second])["results"]) == {str(first), str(second)}


# ---------------------------------------------------------------- files


def test_write_report_writes_summary_figures_and_latex(tmp_path):
    folder = copy(DELAY, tmp_path)
    paths = report.write_report(folder)
    assert [p.name for p in paths] == [
        "summary.csv", "percentiles.csv", "calibration.csv", "detection.csv", "cpu_shares.csv",
        "latency.png", "latency.pdf", "reroute.png", "reroute.pdf", "cpu.png", "cpu.pdf",
        "report.tex",
    ]  # fmt: skip
    assert all(p.parent == folder and p.stat().st_size > 0 for p in paths)
    assert (folder / "latency.png").read_bytes().startswith(b"\x89PNG")
    assert (folder / "reroute.pdf").read_bytes().startswith(b"%PDF")
    written = pd.read_csv(folder / "summary.csv")
    pd.testing.assert_frame_equal(written, report.build_summary(folder), check_dtype=False)
    tex = (folder / "report.tex").read_text()
    assert r"\usepackage{booktabs}" in tex and tex.count(r"\toprule") == 2
    assert r"\caption{Variant scsc:" in tex and r"\caption{Variant routing-only:" in tex
    assert tex.count(r"\begin{table}") == tex.count(r"\end{table}") == 2
    assert r"reroute (s) & 1.000 & 1.180 \\" in tex
    assert r"loss during & 10.0\% & 10.0\% \\" in tex
    assert r"traffic moved & \multicolumn{2}{c}{0 of 1} \\" in tex


def test_latex_escape():
    assert report.latex_escape(r"a_b & 50% #1 {x} ~ ^ \ $") == (
        r"a\_b \& 50\% \#1 \{x\} \textasciitilde{} \textasciicircum{} \textbackslash{} \$"
    )


def test_an_incomplete_run_is_reported_as_far_as_it_goes(tmp_path):
    folder = copy(INCOMPLETE, tmp_path)
    run = report.load_run(folder)
    assert not run.complete
    assert run.notes == (
        report.INCOMPLETE,
        "policies.csv is missing: read as empty",
        f"pings.csv is missing: {report.OPTIONAL_TABLES['pings']}",
        f"cpu.csv is missing: {report.OPTIONAL_TABLES['cpu']}",
    )
    expected = {
        "detect_s": 0.2, "decide_s": 0.6, "install_s": NAN, "reroute_s": 0.8,
        "during_p50_ms": 5.0, "during_p95_ms": 102.0, "during_loss": 0.0,  # 3 x 5, 2 x 102
        "after_p50_ms": NAN, "after_p95_ms": NAN, "after_loss": NAN,  # never cleared
    }  # fmt: skip
    assert_values(row(report.build_summary(run), "scsc"), expected)
    report.write_report(run)
    assert r"\textbf{Incomplete run}" in (folder / "report.tex").read_text()
    assert not (folder / "policies.csv").exists()  # read as empty, not written
    for figure in (
        report.latency_figure(run),
        report.reroute_figure(run, report.build_summary(run)),
    ):
        assert "INCOMPLETE RUN" in figure.get_suptitle()


def test_the_cli_rebuilds_prints_and_compares(tmp_path, capsys):
    delay, incomplete = copy(DELAY, tmp_path), copy(INCOMPLETE, tmp_path)
    out = tmp_path / "out"
    assert main(["report", str(delay), str(incomplete), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"== {incomplete}: INCOMPLETE" in printed
    assert "note: policies.csv is missing: read as empty" in printed
    assert "event 0: impair sr2-sg4 at 10 s" in printed
    assert "results-delay/routing-only" in printed and "results-incomplete/scsc" in printed
    comparison = pd.read_csv(out / "comparison.csv")
    assert set(comparison["results"]) == {"results-delay", "results-incomplete"}
    assert (delay / "report.tex").exists() and (incomplete / "report.tex").exists()


def test_the_cli_with_one_folder_writes_no_comparison(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = copy(DELAY, tmp_path)
    assert main(["report", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "reroute_s                 1 (1.18)" in out
    assert "moved                          2/2            0/1" in out
    assert not (tmp_path / "comparison.csv").exists()


# ---------------------------------------------------------------- bad input


def _remove(name):
    return lambda folder: (folder / name).unlink()


def _write(name, text):
    return lambda folder: (folder / name).write_text(text)


def _metadata(change):
    def mutate(folder):
        data = json.loads((folder / "metadata.json").read_text())
        change(data)
        (folder / "metadata.json").write_text(json.dumps(data))

    return mutate


BAD_INPUTS = {
    "missing table": (_remove("decisions.csv"), "decisions.csv: missing; a results folder has"),
    "empty table": (_write("events.csv", ""), "events.csv: empty; expected a header line: variant"),
    "short row": (
        lambda f: append(f, "requests.csv", "scsc,0,pod2"),
        "requests.csv: line 122: 3 fields, but the header has 14",
    ),
    "missing column": (
        lambda f: edit(f, "requests.csv", "sent_s", "sent"),
        "requests.csv: missing column(s) sent_s; expected: variant, repetition, trace_id",
    ),
    "column twice": (
        lambda f: edit(f, "policies.csv", "packets", "node"),
        "policies.csv: column(s) named twice in the header: node",
    ),
    "not a number": (
        lambda f: edit(f, "requests.csv", "0.4,2.0", "0.4,fast"),
        "requests.csv: line 3: column latency_ms: 'fast' is not a number (or empty)",
    ),
    "no time": (
        lambda f: edit(f, "telemetry.csv", "scsc,0,0.3,", "scsc,0,,"),
        "telemetry.csv: line 2: column time_s: '' is not a time in seconds",
    ),
    "not a boolean": (
        lambda f: edit(f, "requests.csv", "True,pod4", "yes,pod4"),
        "requests.csv: line 2: column ok: 'yes' is not true or false",
    ),
    "unknown action": (
        lambda f: edit(f, "events.csv", ",clear,", ",explode,"),
        "events.csv: line 3: column action: 'explode' is not an action (clear, impair",
    ),
    "bad cookie": (
        lambda f: edit(f, "policies.csv", "0xd5c0739201f6dfdc", "cookie-monster"),
        "policies.csv: line 2: column cookie: 'cookie-monster' is not an OpenFlow cookie",
    ),
    "bad name": (
        lambda f: edit(f, "telemetry.csv", "/B/4", "B/4"),
        "telemetry.csv: line 2: column target: 'B/4' is not a service or instance name",
    ),
    "not UTF-8": (
        lambda f: (f / "decisions.csv").write_bytes(b"variant,\xff\n"),
        "decisions.csv: not UTF-8 text (invalid start byte at byte 8)",
    ),
    "unknown variant": (
        lambda f: edit(f, "requests.csv", "routing-only,0", "routing,0"),
        "requests.csv: variant(s) 'routing' not in metadata.json's variants (scsc, routing-only)",
    ),
    "no metadata": (_remove("metadata.json"), "metadata.json: missing"),
    "metadata not JSON": (
        _write("metadata.json", "{complete: true"),
        "metadata.json: not valid JSON",
    ),
    "metadata without complete": (
        _metadata(lambda d: d.pop("complete")),
        "metadata.json: 'complete' must be true or false, got None",
    ),
    "metadata without variants": (
        _metadata(lambda d: d.pop("variants")),
        "metadata.json: 'variants' must be an object of the variants by name",
    ),
    "bad thresholds": (
        _metadata(lambda d: d["variants"]["scsc"]["scsc"].update(thresholds={"max_delay": 9})),
        "metadata.json: variants.scsc.scsc: thresholds: unknown key(s) ['max_delay']",
    ),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_refused_naming_the_file_and_the_problem(tmp_path, case):
    mutate, message = BAD_INPUTS[case]
    folder = copy(DELAY, tmp_path)
    mutate(folder)
    with pytest.raises(DmscError) as refused:
        report.load_run(folder)
    assert str(refused.value).startswith(str(folder / message.split(":")[0]))
    assert message in str(refused.value)


def test_a_missing_or_wrong_folder_is_refused(tmp_path):
    with pytest.raises(DmscError, match="nope: no such results folder"):
        report.load_run(tmp_path / "nope")
    (tmp_path / "file").write_text("")
    with pytest.raises(DmscError, match="file: not a folder"):
        report.build_summary(tmp_path / "file")


def test_the_cli_exits_2_and_writes_or_deletes_nothing_on_bad_input(tmp_path, capsys):
    good, bad = copy(INCOMPLETE, tmp_path), copy(DELAY, tmp_path)
    append(bad, "requests.csv", "scsc,0,pod2")
    (bad / "summary.csv").write_text("an older summary\n")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert main(["report", str(good), str(bad), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert f"dmsc report: error: {bad / 'requests.csv'}: line 122: 3 fields" in error
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_progress_estimates_the_rest_from_the_repetitions_done():
    from dmsc.experiments.runner import Progress

    now = [100.0]
    progress = Progress(total=4, clock=lambda: now[0])
    assert progress.line("converging") == "[....................] 0/4 0:00 converging"
    now[0] += 90.0
    progress.done = 1
    # 90 s per repetition so far, three to go
    assert (
        progress.line("timeline 5/30 s")
        == "[#####...............] 1/4 1:30, ~4:30 left timeline 5/30 s"
    )
    now[0] += 60.0  # the second repetition under way: the estimate counts down
    assert progress.line("timeline 25/30 s").startswith(
        "[#####...............] 1/4 2:30, ~3:30 left"
    )
    now[0] += 60.0
    progress.done = 2  # two done in 210 s: 105 s each, two to go
    assert progress.line("converging").startswith("[##########..........] 2/4 3:30, ~3:30 left")
    now[0] += 150.0
    progress.done = 4
    assert (
        progress.line("writing the report") == "[####################] 4/4 6:00 writing the report"
    )
