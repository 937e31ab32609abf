"""The report of a results folder, rebuilt from its CSV tables alone (docs/experiments.md).

    run = load_run(folder)        # every table read and checked: DmscError naming file and line
    summary = build_summary(run)  # the rows of summary.csv
    ladder = build_percentiles(run)  # percentiles.csv: pooled, per phase and per hop
    paths = write_report(run)     # those two, latency.png/.pdf, reroute.png/.pdf, report.tex
    table = compare([a, b])       # medians and p95s per variant and event, labelled by folder

Each function that takes a folder also takes a loaded :class:`ResultsRun`. Nothing here
deletes a file: everything is read and computed before the first file is written.

How summary.csv is computed
---------------------------
One row per (variant, repetition, event) whose action degrades something: ``impair``,
``link_down``, ``node_crash``, ``scsc_stop``. An event that failed (``ok`` false) is left out,
of the rows and of the windows below; :attr:`ResultsRun.notes` says so. ``event_index`` is the
event's place among its repetition's rows of events.csv (sorted by ``at_s``, ties in file
order), every action counted; ``at_s`` is when it was due. Durations are measured from the time
the event was *applied*, ``t`` (``applied_s``; ``at_s`` when that is empty).

Only the clients' own calls count here (``parent_id`` empty; the hops their calls caused are in
percentiles.csv). Windows, by the time a call was *due* (``intended_s``: the open-loop
schedule's time, from which its latency is measured; results from the closed-loop client have
no such column and use ``sent_s``), each half-open ``[start, end)``:

- The event is *cleared* at ``c`` by the first later event that undoes it on the same target
  (a link's ends in either order): ``clear`` undoes ``impair``, ``link_up`` ``link_down``,
  ``node_restart`` ``node_crash``, ``scsc_start`` ``scsc_stop``. Other events do not end it.
- *before*: from the last event applied before ``t`` (or from the start) to ``t``.
- *during*: from ``t`` to ``c`` (to the end of the data when nothing clears the event).
- *after*: from ``c`` to the first other event applied at or after ``c`` (or the end of the
  data); no window, so NaN, when nothing clears the event.

The parts of the reroute are seconds after ``t``, each looked for inside *during*. They are
cumulative (``detect_s <= decide_s <= install_s`` normally), not lengths of successive stages.

- ``detect_s``: the first telemetry sample (``time_s``) that crosses a threshold while the
  previous sample of the same (sg, target) pair did not, or is that pair's first: a pair that
  was bad before the event (a far instance that never answers) is not this event's detection.
  Only targets under a service the repetition's workload calls count. The thresholds are the
  variant's, ``metadata.json`` ``variants.<name>.scsc.thresholds`` (the built-in defaults when
  the key is absent), applied by :func:`dmsc.controllers.thresholds.crossings` exactly as the
  SCSC applies them: delay >= max_delay_ms, jitter >= max_jitter_ms, loss >= max_loss,
  bandwidth <= min_bandwidth_bps, and always loss = 1. ``thresholds`` events are not followed.
- ``decide_s``: the first SCSC decision (decisions.csv) about a service the workload calls.
- ``install_s``: when the last of that decision's policies reached its forwarder: the latest
  add or modify in policy_changes.csv with the pair's cookie (``policy_cookie(source,
  service)``) at or after the decision and before the pair's next decision. Results without
  policy_changes.csv (older runs) use the same rule on ``installed_s`` in policies.csv, the
  tables at the end of the repetition: where a later decision replaced or removed the
  policies, they are gone and ``install_s`` is NaN.
- ``reroute_s``: per (client, service) stream of requests, the *before instance* is the one
  (``served_by``) that served most successful requests in *before* (a tie goes to the one that
  served last); the stream moved at the first successful request of *during* served by another.
  ``reroute_s`` is the earliest move of any stream: NaN when none moved, or none had a
  successful request before the event.

- ``false_alarms``: the telemetry samples (targets under the workload's services) that cross
  a threshold from t0 to the timeline's first event, when nothing is impaired yet.

``detect_s``, ``decide_s``, ``install_s`` and ``false_alarms`` are NaN in a variant without
an SCSC. detection.csv (:mod:`dmsc.experiments.detection`) counts them per variant and
impairment; cpu_shares.csv (:mod:`dmsc.experiments.cpu_shares`) is where the CPU went.

Per window, in this order: ``{before,during,after}_n``, the successful calls due in the
window, all streams together (0 for an empty or absent window); ``_p50_ms``, ``_p95_ms``,
``_p99_ms``, ``_p999_ms`` (p99.9): percentiles of their latency; ``_loss``: the fraction of
the calls due in the window that failed, those refused at the client's in-flight bound (never
sent) included. Percentiles and loss are NaN for an empty window.

Percentiles are exact and nearest rank: the q-th is the smallest latency with at least q % of
the samples at or below it, the sample of rank ``ceil(q * n / 100)``. That is what HdrHistogram
reports, without its buckets: every call is stored, so nothing needs bucketing, and a value in
the tables is a latency some call had. It is numpy's ``method="inverted_cdf"``, but with the
rank rounded before the ceiling (numpy gives 1000 as the p99.9 of 1..1000, from 999.0000000001).
A percentile with fewer than :data:`MIN_TAIL_SAMPLES` samples above it (``n * (1 - q) < 10``:
p95 needs 200 calls, p99 1,000, p99.9 10,000) is about the largest of a handful of calls:
:func:`latency_notes` names those of summary.csv, a line per variant and window, for the
report (``dmsc report`` prints them with the run's notes, report.tex lists them).

The noise floor (:mod:`dmsc.experiments.calibration`, from pings.csv): on every row
``floor_p50_ms``, ``floor_p99_ms``, ``floor_spread_ms``, ``floor_loss``, the repetition's
workload paths before its timeline (the worst path); on an ``impair`` row the impairment's
``expected_*`` and ``measured_*`` rise, spread and loss. NaN without pings.csv (a note says so).
calibration.csv (:func:`build_calibration`) has every measurement, and the notes name an
impairment measured unlike its setting and an effect not clearly above the floor.

percentiles.csv (:func:`build_percentiles`): a row per variant, degrading event, window and
hop (``client`` calling ``service`` at ``depth``, the number of dots in ``call_id``: 0 for the
clients' own calls, 1 for the calls their services made, ...), with every repetition's calls
due in that window pooled: ``n``, ``loss`` (as above), ``p50_ms``, ``p90_ms``, ``p95_ms``,
``p99_ms``, ``p999_ms``, ``max_ms`` and ``thin``, the percentiles among those resting on fewer
than MIN_TAIL_SAMPLES samples above them (``"p99 p99.9"``; '' when none). A hop is in the
window its own ``intended_s`` (its send) falls in.

requests.csv written before open-loop load has no trace_id, call_id, parent_id, intended_s or
service_ms (:data:`OPTIONAL_COLUMNS`): the ids read as '' (no hops), ``intended_s`` as
``sent_s`` and ``service_ms`` as ``latency_ms``, since that closed-loop client measured from
the actual send; :attr:`ResultsRun.notes` says so. The notes also name each variant whose
workload has a closed-loop client (``arrivals: closed`` in metadata.json) and count the calls
refused at the in-flight bound.

Over repetitions (:func:`aggregate`, report.tex, :func:`compare`): per (variant, event) and
column, the median and the 95th percentile (linear interpolation) of the values that are not
NaN, and ``n``, their number, out of ``repetitions``.

A run marked incomplete (``"complete": false``) is reported as far as its tables go: a missing
table reads as empty, and the notes, the figure titles and report.tex say the run is incomplete.
In a complete run a missing table is an error.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dmsc import results
from dmsc.controllers.decision import policy_cookie
from dmsc.controllers.thresholds import ThresholdTable, crossings
from dmsc.errors import ConfigError, DmscError
from dmsc.experiments import calibration
from dmsc.experiments.cpu_shares import cpu_figure, cpu_shares
from dmsc.experiments.detection import build_detection, detection_figure, sweeps
from dmsc.experiments.stats import percentiles
from dmsc.names import ServiceName

#: What undoes each degrading action; the keys are the actions summary.csv has rows for.
CLEARED_BY = {
    "impair": "clear",
    "link_down": "link_up",
    "node_crash": "node_restart",
    "scsc_stop": "scsc_start",
}
ACTIONS = frozenset({*CLEARED_BY, *CLEARED_BY.values(), "thresholds"})

#: The tables the report reads, their columns and how each is parsed (docs/experiments.md).
#: fib_changes.csv is not read: nothing in the report comes from it. policy_changes.csv is
#: newer than the others: results without it take install times from policies.csv.
TABLES: Mapping[str, Mapping[str, str]] = {
    "requests": {
        "variant": "text", "repetition": "int", "trace_id": "text", "call_id": "text",
        "parent_id": "text", "client": "text", "service": "name", "intended_s": "time",
        "sent_s": "number", "latency_ms": "number", "service_ms": "number", "ok": "bool",
        "served_by": "text", "error": "text",
    },
    "telemetry": {
        "variant": "text", "repetition": "int", "time_s": "time", "sg": "text",
        "target": "name", "delay_ms": "number", "jitter_ms": "number", "loss": "number",
        "bandwidth_bps": "number",
    },
    "decisions": {
        "variant": "text", "repetition": "int", "time_s": "time", "source": "text",
        "service": "name", "trigger": "text", "old_instance": "text", "old_path": "text",
        "new_instance": "text", "new_path": "text", "all_bad": "bool",
    },
    "policies": {
        "variant": "text", "repetition": "int", "node": "text", "cookie": "cookie",
        "ipv6_dst": "text", "ipv6_src": "text", "outputs": "text", "installed_s": "number",
        "packets": "number",
    },
    "policy_changes": {
        "variant": "text", "repetition": "int", "time_s": "time", "node": "text",
        "change": "change", "cookie": "cookie", "ipv6_dst": "text", "ipv6_src": "text",
        "outputs": "text",
    },
    "pings": {
        "variant": "text", "repetition": "int", "measurement": "measurement", "kind": "kind",
        "source": "text", "target": "text", "at_s": "number", "seq": "int", "sent_s": "number",
        "rtt_ms": "number",
    },
    "cpu": {
        "variant": "text", "repetition": "int", "node": "text", "role": "text",
        "cpu_s": "number", "wall_s": "number",
    },
    "events": {
        "variant": "text", "repetition": "int", "at_s": "time", "applied_s": "number",
        "action": "action", "target": "text", "commands": "text", "ok": "bool", "error": "text",
    },
}  # fmt: skip

#: Columns that results from before open-loop load lack, and what they read as there: '' or
#: a copy of another column, parsed as the missing one (so an old sent_s must be a time, as
#: it was). The closed-loop client sent each call when it meant to, so intended is sent and
#: the latency from either is the same; there were no hops.
OPTIONAL_COLUMNS: Mapping[str, Mapping[str, str]] = {
    "requests": {
        "trace_id": "", "call_id": "", "parent_id": "", "intended_s": "sent_s",
        "service_ms": "latency_ms",
    },
}  # fmt: skip
PREDATES_OPEN_LOOP = (
    "requests.csv predates open-loop load (no intended_s): a closed-loop client, latency from "
    "the actual send; calls a stall held up were never made (coordinated omission)"
)
OPTIONAL_TABLES = {
    "policy_changes": "install times from the final tables (policies.csv), NaN where replaced",
    "pings": "no noise floor or impairment accuracy (calibration.csv, the floor_* columns)",
    "cpu": "no CPU accounting (cpu_shares.csv, cpu.png)",
}
WINDOWS = ("before", "during", "after")
PARTS = ("detect_s", "decide_s", "install_s", "reroute_s")
#: the percentiles of summary.csv, and of the ladder of percentiles.csv
SUMMARY_PERCENTILES = {"p50_ms": 50, "p95_ms": 95, "p99_ms": 99, "p999_ms": 99.9}
LADDER = {"p50_ms": 50, "p90_ms": 90, "p95_ms": 95, "p99_ms": 99, "p999_ms": 99.9}
WINDOW_METRICS = ("n", *SUMMARY_PERCENTILES, "loss")
METRICS = (
    *PARTS,
    "false_alarms",
    *(f"{w}_{m}" for w in WINDOWS for m in WINDOW_METRICS),
    *calibration.SUMMARY_METRICS,
)
#: a percentile with fewer samples above it than this is the maximum of a handful, and moves
#: with each one of them: it is reported, and flagged
MIN_TAIL_SAMPLES = 10
PERCENTILE_KEY = ("variant", "event_index", "action", "target", "at_s", "window", "client",
                  "service", "depth")  # fmt: skip
PERCENTILE_COLUMNS = (*PERCENTILE_KEY, "n", "loss", *LADDER, "max_ms", "thin")
BOUND_ERROR = "in-flight bound"  # dmsc.nodes.workload.BOUND_ERROR
EVENT_KEY = ("event_index", "action", "target", "at_s")
SUMMARY_COLUMNS = ("variant", "repetition", *EVENT_KEY, *METRICS)
AGGREGATE_COLUMNS = ("variant", *EVENT_KEY, "metric", "repetitions", "n", "median", "p95")
INCOMPLETE = "incomplete run (metadata.json: complete is false)"
DECIMALS = 6  # the runner's own rounding of times: a microsecond


# ---------------------------------------------------------------- reading a results folder


@dataclass(frozen=True, eq=False)
class ResultsRun:
    """A results folder as read: its metadata, its tables (parsed) and what to tell about it."""

    folder: Path
    metadata: Mapping[str, Any]
    tables: Mapping[str, pd.DataFrame | None]  # None: an optional table the run lacks
    #: per variant, in metadata order: its thresholds, or None for a variant without an SCSC
    thresholds: Mapping[str, ThresholdTable | None]
    notes: tuple[str, ...]
    calibration: pd.DataFrame  # calibration.csv, computed once from pings.csv

    @property
    def complete(self) -> bool:
        return bool(self.metadata["complete"])

    @property
    def variants(self) -> tuple[str, ...]:
        return tuple(self.thresholds)

    def rows(self, table: str, variant: str, repetition: int | None = None) -> pd.DataFrame:
        frame = self.tables[table]
        chosen = frame["variant"] == variant
        if repetition is not None:
            chosen &= frame["repetition"] == repetition
        return frame[chosen]


def load_run(folder: Path | str) -> ResultsRun:
    """Read and check a results folder; a DmscError names the file and the problem."""
    folder = Path(folder)
    if not folder.is_dir():
        problem = "not a folder" if folder.exists() else "no such results folder"
        raise DmscError(f"{folder}: {problem}")
    metadata = read_metadata(folder / "metadata.json")
    notes = [] if metadata["complete"] else [INCOMPLETE]
    tables = {}
    for name in TABLES:
        path = folder / f"{name}.csv"
        if name in OPTIONAL_TABLES and not path.exists():
            notes.append(f"{name}.csv is missing: {OPTIONAL_TABLES[name]}")
            tables[name] = None
        elif not metadata["complete"] and not path.exists():
            notes.append(f"{name}.csv is missing: read as empty")
            tables[name] = _frame(name, {})
        else:
            tables[name] = read_table(path, name)
    thresholds = _variant_thresholds(metadata["variants"], folder / "metadata.json")
    _check_variants(folder, tables, thresholds)
    notes += _event_notes(tables["events"])
    notes += _workload_notes(metadata, tables["requests"])
    measured = calibration.calibration_table(tables["pings"], metadata)
    notes += calibration.notes(measured)
    return ResultsRun(folder, metadata, tables, thresholds, tuple(notes), measured)


def read_metadata(path: Path) -> dict[str, Any]:
    """metadata.json, checked for what the report needs: ``complete`` and ``variants``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DmscError(f"{path}: missing (every results folder has one)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DmscError(f"{path}: cannot be read: {error}") from None
    except json.JSONDecodeError as error:
        raise DmscError(f"{path}: not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise DmscError(f"{path}: expected a JSON object, got {type(data).__name__}")
    if not isinstance(data.get("complete"), bool):
        raise DmscError(f"{path}: 'complete' must be true or false, got {data.get('complete')!r}")
    variants = data.get("variants")
    if not isinstance(variants, dict) or not variants:
        raise DmscError(f"{path}: 'variants' must be an object of the variants by name")
    return data


def read_table(path: Path, name: str) -> pd.DataFrame:
    """One CSV table of the contract, every column parsed; extra columns are ignored."""
    columns = TABLES[name]
    header, lines, rows = _read_csv(path, columns)
    optional = OPTIONAL_COLUMNS.get(name, {})
    missing = [c for c in columns if c not in header and c not in optional]
    if missing:
        raise DmscError(
            f"{path}: missing column(s) {', '.join(missing)}; expected: {', '.join(columns)}"
        )
    place = {column: header.index(column) for column in columns if column in header}
    parsed = {
        column: _parse_column(path, column, kind, lines, [r[place[column]] for r in rows])
        for column, kind in columns.items()
        if column in place
    }
    filled = [column for column in optional if column not in place]
    for column in filled:  # an older table: '' or the column it stands for, read as this one
        source = optional[column]
        parsed[column] = (
            _parse_column(path, source, columns[column], lines, [r[place[source]] for r in rows])
            if source
            else [""] * len(rows)
        )
    frame = _frame(name, parsed)
    frame.attrs["filled"] = tuple(filled)  # what load_run notes
    return frame


def _frame(name: str, parsed: Mapping[str, list]) -> pd.DataFrame:
    """The parsed columns with their types also when empty (a missing or header-only table)."""
    types = {"time": float, "number": float, "int": "int64", "bool": bool, "cookie": object}
    frame = pd.DataFrame({column: parsed.get(column, []) for column in TABLES[name]})
    for column, kind in TABLES[name].items():
        frame[column] = frame[column].astype(types.get(kind, str))
    return frame


def _read_csv(path: Path, columns: Iterable[str]) -> tuple[list[str], list[int], list[list]]:
    """(header, line number of each row, rows); blank lines are skipped."""
    try:
        with path.open(newline="", encoding="utf-8") as stream:
            reader = csv.reader(stream, strict=True)
            numbered = [(reader.line_num, row) for row in reader if row]
    except FileNotFoundError:
        raise DmscError(f"{path}: missing; a results folder has {_table_files()}") from None
    except UnicodeDecodeError as error:
        raise DmscError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except (OSError, csv.Error) as error:
        raise DmscError(f"{path}: not a readable CSV table: {error}") from None
    if not numbered:
        raise DmscError(f"{path}: empty; expected a header line: {', '.join(columns)}")
    (_, header), body = numbered[0], numbered[1:]
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise DmscError(f"{path}: column(s) named twice in the header: {', '.join(repeated)}")
    for line, row in body:
        if len(row) != len(header):
            raise DmscError(
                f"{path}: line {line}: {len(row)} fields, but the header has {len(header)}"
            )
    return header, [line for line, _ in body], [row for _, row in body]


def _table_files() -> str:
    return ", ".join(f"{name}.csv" for name in TABLES)


def _parse_column(path: Path, column: str, kind: str, lines: list[int], raw: list[str]) -> list:
    parse, expected = PARSERS[kind]
    values = []
    for line, text in zip(lines, raw, strict=True):
        try:
            values.append(parse(text))
        except ValueError:
            raise DmscError(
                f"{path}: line {line}: column {column}: {text!r} is not {expected}"
            ) from None
    return values


def _number(text: str) -> float:
    return float(text) if text.strip() else math.nan


def _time(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def _bool(text: str) -> bool:
    values = {"true": True, "false": False, "1": True, "0": False}
    try:
        return values[text.strip().lower()]
    except KeyError:
        raise ValueError(text) from None


def _name(text: str) -> str:
    return str(ServiceName.parse(text))  # InvalidName is a ValueError


def _one_of(*allowed: str) -> Callable[[str], str]:
    """A parser that accepts exactly these words."""

    def parse(text: str) -> str:
        if text not in allowed:
            raise ValueError(text)
        return text

    return parse


PARSERS: Mapping[str, tuple[Callable[[str], Any], str]] = {
    "text": (str, "text"),
    "int": (int, "an integer"),
    "time": (_time, "a time in seconds"),
    "number": (_number, "a number (or empty)"),
    "bool": (_bool, "true or false"),
    "name": (_name, "a service or instance name such as /B/4"),
    "cookie": (lambda text: int(text, 0), "an OpenFlow cookie such as 0xd5c0739201f6dfdc"),
    "action": (_one_of(*ACTIONS), f"an action ({', '.join(sorted(ACTIONS))})"),
    "change": (_one_of("add", "modify", "delete"), "add, modify or delete"),
    "measurement": (_one_of("floor", "impairment"), "floor or impairment"),
    "kind": (_one_of("path", "link"), "path or link"),
}


def _variant_thresholds(variants: Mapping, path: Path) -> dict[str, ThresholdTable | None]:
    found: dict[str, ThresholdTable | None] = {}
    for name, variant in variants.items():
        if not isinstance(variant, Mapping):
            raise DmscError(f"{path}: variants.{name}: expected an object")
        scsc = variant.get("scsc")
        if scsc is None:
            found[name] = None
            continue
        if not isinstance(scsc, Mapping):
            raise DmscError(f"{path}: variants.{name}.scsc: expected an object or null")
        try:
            found[name] = ThresholdTable.from_mapping(scsc.get("thresholds") or {})
        except ConfigError as error:
            raise ConfigError(f"{path}: variants.{name}.scsc: {error}") from None
    return found


def _check_variants(
    folder: Path, tables: Mapping[str, pd.DataFrame | None], known: Mapping
) -> None:
    for name, frame in tables.items():
        if frame is None:
            continue
        unknown = sorted(set(frame["variant"]) - set(known))
        if unknown:
            raise DmscError(
                f"{folder / (name + '.csv')}: variant(s) {', '.join(map(repr, unknown))} not in "
                f"metadata.json's variants ({', '.join(known)})"
            )


def _event_notes(events: pd.DataFrame) -> list[str]:
    notes = []
    for event in events[~events["ok"]].itertuples():
        notes.append(
            f"{event.variant} repetition {event.repetition}: {event.action} {event.target} at "
            f"{event.at_s:g} s failed ({event.error or 'no error text'}): left out"
        )
    if (events["action"] == "thresholds").any():
        notes.append("thresholds events are not followed: detect_s uses the variant's thresholds")
    return notes


def _workload_notes(metadata: Mapping, requests: pd.DataFrame) -> list[str]:
    """Where latency does not count from the intended time, and the calls the bound refused."""
    notes = [PREDATES_OPEN_LOOP] if "intended_s" in requests.attrs.get("filled", ()) else []
    refused = requests[requests["error"] == BOUND_ERROR]["variant"].value_counts()
    for name, variant in metadata["variants"].items():
        loads = variant.get("workload") if isinstance(variant, Mapping) else None
        loads = loads if isinstance(loads, list) else []
        closed = [str(w.get("client")) for w in loads
                  if isinstance(w, Mapping) and w.get("arrivals") == "closed"]  # fmt: skip
        if closed:
            clients = "client" if len(closed) == 1 else "clients"
            notes.append(
                f"{name}: closed-loop {clients} ({', '.join(closed)}): latency from the actual "
                "send; calls a stall held up were never made (coordinated omission)"
            )
        count = int(refused.get(name, 0))
        if count:
            calls = "call" if count == 1 else "calls"
            notes.append(f"{name}: {count} {calls} refused at the in-flight bound (never sent, "
                         "counted as lost)")  # fmt: skip
    return notes


def _as_run(folder: Path | str | ResultsRun) -> ResultsRun:
    return folder if isinstance(folder, ResultsRun) else load_run(folder)


# ---------------------------------------------------------------- summary.csv


@dataclass(frozen=True)
class _Windows:
    before: tuple[float, float]
    during: tuple[float, float]
    after: tuple[float, float] | None


def build_summary(folder: Path | str | ResultsRun) -> pd.DataFrame:
    """summary.csv: one row per (variant, repetition, degrading event), as the module says."""
    run = _as_run(folder)
    measured = build_calibration(run)
    rows = []
    for variant in run.variants:
        for repetition in sorted(set(run.rows("events", variant)["repetition"])):
            rows += _repetition_rows(run, variant, repetition, measured)
    summary = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    summary[["repetition", "event_index"]] = summary[["repetition", "event_index"]].astype("int64")
    for column in ("at_s", *METRICS):
        summary[column] = summary[column].astype(float).round(DECIMALS)
    counts = [f"{w}_n" for w in WINDOWS]
    summary[counts] = summary[counts].fillna(0).astype("int64")
    return summary


def build_percentiles(folder: Path | str | ResultsRun) -> pd.DataFrame:
    """percentiles.csv: per (variant, degrading event, window) and per hop of the call graph
    (``client`` calling ``service`` at ``depth``: 0 for the clients' own calls), the latency
    ladder of every repetition's calls pooled, with ``n``, ``loss`` and the ``thin``
    percentiles (fewer than MIN_TAIL_SAMPLES samples above them)."""
    run = _as_run(folder)
    rows = []
    for variant in run.variants:
        calls = run.rows("requests", variant)
        calls = calls.assign(depth=calls["call_id"].str.count(r"\."))
        pooled: dict[tuple, list[pd.DataFrame]] = {}
        for repetition in sorted(set(run.rows("events", variant)["repetition"])):
            timeline = _timeline(run.rows("events", variant, repetition))
            mine = calls[calls["repetition"] == repetition]
            for position, event in enumerate(timeline.itertuples()):
                if event.action not in CLEARED_BY:
                    continue
                windows = _windows(timeline, position)
                key = tuple(getattr(event, k) for k in EVENT_KEY)
                for name in WINDOWS:
                    window = getattr(windows, name)
                    due = _in(mine, "intended_s", window) if window else mine.iloc[0:0]
                    pooled.setdefault((*key, name), []).append(due)
        for (*key, name), frames in pooled.items():
            due = pd.concat(frames)
            for (client, service, depth), hop in due.groupby(["client", "service", "depth"]):
                rows.append(
                    dict(zip(PERCENTILE_KEY, (variant, *key, name, client, service, depth),
                             strict=True)) | _ladder(hop)
                )  # fmt: skip
    frame = pd.DataFrame(rows, columns=list(PERCENTILE_COLUMNS))
    frame["n"] = frame["n"].astype("int64")
    frame["depth"] = frame["depth"].astype("int64")
    for column in ("at_s", "loss", *LADDER, "max_ms"):
        frame[column] = frame[column].astype(float).round(DECIMALS)
    return frame


def _ladder(calls: pd.DataFrame) -> dict[str, Any]:
    latencies = calls.loc[calls["ok"], "latency_ms"].dropna()
    return {
        "n": len(latencies),
        "loss": float((~calls["ok"]).mean()),
        **percentiles(latencies, LADDER),
        "max_ms": float(latencies.max()) if len(latencies) else math.nan,
        "thin": " ".join(percentile_label(LADDER[k]) for k in thin(len(latencies), LADDER)),
    }


def latency_notes(summary: pd.DataFrame) -> list[str]:
    """One line per (variant, window) naming the percentiles of summary.csv that rest on fewer
    than MIN_TAIL_SAMPLES samples above them in some repetition, with the range of ``n``."""
    notes = []
    for variant, rows in summary.groupby("variant", sort=False):
        for name in WINDOWS:
            counts = [int(n) for n in rows[f"{name}_n"] if n > 0]  # 0: no window, or no call
            flagged = thin(min(counts), SUMMARY_PERCENTILES) if counts else []  # fewest: most
            if flagged:
                labels = ", ".join(percentile_label(SUMMARY_PERCENTILES[k]) for k in flagged)
                low, high = min(counts), max(counts)
                span = f"{low}" if low == high else f"{low}-{high}"
                notes.append(
                    f"{variant}, {name}: {labels} rest on fewer than {MIN_TAIL_SAMPLES} calls "
                    f"above them (n = {span})"
                )
    return notes


def build_calibration(folder: Path | str | ResultsRun) -> pd.DataFrame:
    """calibration.csv: the noise floor and every impairment as measured (calibration.py)."""
    return _as_run(folder).calibration.copy()  # the caller may change it; the run keeps its own


def _repetition_rows(
    run: ResultsRun, variant: str, repetition: int, measured: pd.DataFrame
) -> list[dict]:
    timeline = _timeline(run.rows("events", variant, repetition))
    requests = front_end(run.rows("requests", variant, repetition))
    services = sorted(set(requests["service"]))
    quiet = (0.0, timeline["time"].min()) if len(timeline) else (0.0, math.inf)
    rows = []
    for position, event in enumerate(timeline.itertuples()):
        if event.action not in CLEARED_BY:
            continue
        windows = _windows(timeline, position)
        row = {"variant": variant, "repetition": repetition}
        row |= {key: getattr(event, key) for key in EVENT_KEY}
        row["reroute_s"] = _first_move(requests, windows) - event.time
        if run.thresholds[variant] is not None:
            row |= _control_parts(run, variant, repetition, services, windows)
            row["false_alarms"] = _false_alarms(run, variant, repetition, services, quiet)
        for name in WINDOWS:
            row |= _window_stats(requests, getattr(windows, name), name)
        row |= calibration.summary_columns(measured, variant, repetition, event)
        rows.append(row)
    return rows


def _timeline(events: pd.DataFrame) -> pd.DataFrame:
    """The events applied, in order, with their index among all and ``time`` (when applied)."""
    ordered = events.sort_values("at_s", kind="stable").reset_index(drop=True)
    ordered["event_index"] = ordered.index
    ordered["time"] = ordered["applied_s"].where(ordered["applied_s"].notna(), ordered["at_s"])
    return ordered[ordered["ok"]].reset_index(drop=True)


def _windows(timeline: pd.DataFrame, position: int) -> _Windows:
    times = list(timeline["time"])
    t = times[position]
    start = max((x for x in times if x < t), default=-math.inf)
    cleared = _clearing(timeline, position)
    if cleared is None:
        return _Windows((start, t), (t, math.inf), None)
    c = times[cleared]
    others = (x for k, x in enumerate(times) if k not in (position, cleared) and x >= c)
    return _Windows((start, t), (t, c), (c, min(others, default=math.inf)))


def _clearing(timeline: pd.DataFrame, position: int) -> int | None:
    event = timeline.iloc[position]
    for later in range(position + 1, len(timeline)):
        candidate = timeline.iloc[later]
        undoes = candidate["action"] == CLEARED_BY[event["action"]]
        if undoes and same_target(candidate["target"], event["target"]):
            return later
    return None


def same_target(a: str, b: str) -> bool:
    """``sr2-sg4`` is ``sg4-sr2``: a link's ends in either order (or separated by spaces)."""
    return a == b or sorted(re.split(r"[\s,-]+", a.strip())) == sorted(
        re.split(r"[\s,-]+", b.strip())
    )


def _in(frame: pd.DataFrame, column: str, window: tuple[float, float]) -> pd.DataFrame:
    return frame[(frame[column] >= window[0]) & (frame[column] < window[1])]


def _first_move(requests: pd.DataFrame, windows: _Windows) -> float:
    """When the first stream's traffic was first served by another instance (NaN: never)."""
    served = requests[requests["ok"]]
    moves = []
    for _, stream in served.groupby(["client", "service"], sort=True):
        before = _in(stream, "intended_s", windows.before)
        if before.empty:
            continue
        during = _in(stream, "intended_s", windows.during)
        moved = during[during["served_by"] != main_instance(before)]
        if not moved.empty:
            moves.append(moved["intended_s"].min())
    return min(moves, default=math.nan)


def main_instance(requests: pd.DataFrame) -> str:
    """The instance that served most of these (successful) requests; a tie: the latest one."""
    counts = requests["served_by"].value_counts()
    top = set(counts[counts == counts.max()].index)
    ordered = requests.sort_values("intended_s", kind="stable")
    return ordered.loc[ordered["served_by"].isin(top), "served_by"].iloc[-1]


def _control_parts(
    run: ResultsRun, variant: str, repetition: int, services: list[str], windows: _Windows
) -> dict[str, float]:
    t = windows.during[0]
    telemetry = _under(run.rows("telemetry", variant, repetition), "target", services)
    decisions = _under(run.rows("decisions", variant, repetition), "service", services)
    detected = _first_crossing(telemetry, run.thresholds[variant], windows.during)
    decision = _in(decisions, "time_s", windows.during).sort_values("time_s", kind="stable")
    if decision.empty:
        return {"detect_s": detected - t}
    first = decision.iloc[0]
    if run.tables["policy_changes"] is None:  # results from before the change log
        final = run.rows("policies", variant, repetition)
        installed = _installed(final, decisions, first)
    else:
        changes = run.rows("policy_changes", variant, repetition)
        installed = _installed(changes[changes["change"] != "delete"], decisions, first, "time_s")
    return {"detect_s": detected - t, "decide_s": first["time_s"] - t, "install_s": installed - t}


def _false_alarms(
    run: ResultsRun, variant: str, repetition: int, services: list[str], quiet: tuple
) -> int:
    """Telemetry samples that cross a threshold in ``quiet``, from t0 to the first event:
    with nothing impaired yet, the testbed's own noise taken for a degradation."""
    telemetry = _under(run.rows("telemetry", variant, repetition), "target", services)
    table = run.thresholds[variant]
    samples = _in(telemetry, "time_s", quiet).itertuples()
    return sum(bool(crossings(_Quality.of(s), table.for_service(s.target))) for s in samples)


def _under(frame: pd.DataFrame, column: str, services: list[str]) -> pd.DataFrame:
    """The rows whose name in ``column`` is one of ``services`` or below one."""
    below = [any(n == s or n.startswith(s + "/") for s in services) for n in frame[column]]
    return frame.loc[pd.Series(below, index=frame.index, dtype=bool)]  # [] would pick columns


@dataclass(frozen=True)
class _Quality:
    delay_ms: float | None
    jitter_ms: float | None
    loss: float | None
    bandwidth_bps: float | None

    @classmethod
    def of(cls, row) -> _Quality:
        values = (row.delay_ms, row.jitter_ms, row.loss, row.bandwidth_bps)
        return cls(*(None if math.isnan(v) else v for v in values))


def _first_crossing(
    telemetry: pd.DataFrame, table: ThresholdTable, window: tuple[float, float]
) -> float:
    """The first sample in ``window`` that crosses while its pair's previous sample did not."""
    samples = telemetry.sort_values("time_s", kind="stable")
    crossed = pd.Series(
        [
            bool(crossings(_Quality.of(s), table.for_service(s.target)))
            for s in samples.itertuples()
        ],
        index=samples.index,
        dtype=bool,
    )
    previous = crossed.groupby([samples["sg"], samples["target"]]).shift(fill_value=False)
    new = samples[crossed & ~previous.astype(bool)]
    return _in(new, "time_s", window)["time_s"].min()


def _installed(
    policies: pd.DataFrame,
    decisions: pd.DataFrame,
    decision: pd.Series,
    column: str = "installed_s",
) -> float:
    """The last install time (``column``) of the decision's policies: its pair's cookie,
    from the decision until the pair's next decision."""
    pair = (decisions["source"] == decision["source"]) & (
        decisions["service"] == decision["service"]
    )
    later = decisions.loc[pair & (decisions["time_s"] > decision["time_s"]), "time_s"]
    until = later.min() if not later.empty else math.inf
    cookie = policy_cookie(decision["source"], decision["service"])
    mine = policies[policies["cookie"] == cookie]
    return _in(mine, column, (decision["time_s"], until))[column].max()


def front_end(requests: pd.DataFrame) -> pd.DataFrame:
    """The clients' own calls (not the hops their calls caused)."""
    return requests[requests["parent_id"] == ""]


def thin(n: int, wanted: Mapping[str, float]) -> list[str]:
    """The percentiles of ``n`` samples resting on fewer than MIN_TAIL_SAMPLES samples above
    them (``n * (1 - q) < MIN_TAIL_SAMPLES``)."""
    # rounded first, as the ranks are: 10,000 * (1 - 0.999) is 9.99999999999943 otherwise
    return [key for key, q in wanted.items() if round(n * (100 - q) / 100, 9) < MIN_TAIL_SAMPLES]


def percentile_label(q: float) -> str:
    """``p50``, ``p99.9``: how the notes and ``thin`` name a percentile."""
    return f"p{q:g}"


def _window_stats(
    requests: pd.DataFrame, window: tuple[float, float] | None, name: str
) -> dict[str, float]:
    due = _in(requests, "intended_s", window) if window else requests.iloc[0:0]
    latencies = due.loc[due["ok"], "latency_ms"].dropna()
    stats = {"n": len(latencies), **percentiles(latencies, SUMMARY_PERCENTILES)}
    stats["loss"] = float((~due["ok"]).mean()) if len(due) else math.nan
    return {f"{name}_{key}": value for key, value in stats.items()}


# ---------------------------------------------------------------- over repetitions


def aggregate(summary: pd.DataFrame) -> pd.DataFrame:
    """Tidy: per (variant, event, metric) the number of repetitions, ``n`` (values not NaN),
    their median and 95th percentile."""
    rows = []
    for key, group in summary.groupby(["variant", *EVENT_KEY], sort=False):
        for metric in METRICS:
            values = group[metric].dropna()
            some = not values.empty
            rows.append(
                dict(zip(("variant", *EVENT_KEY), key, strict=True))
                | {
                    "metric": metric,
                    "repetitions": len(group),
                    "n": len(values),
                    "median": values.median() if some else math.nan,
                    "p95": values.quantile(0.95) if some else math.nan,
                }
            )
    frame = pd.DataFrame(rows, columns=list(AGGREGATE_COLUMNS))
    frame[["median", "p95"]] = frame[["median", "p95"]].astype(float).round(DECIMALS)
    return frame


def compare(folders: Iterable[Path | str | ResultsRun]) -> pd.DataFrame:
    """:func:`aggregate` of several results folders in one table, ``results`` naming each
    by its folder's name (by its whole path when two have the same name)."""
    runs = [_as_run(folder) for folder in folders]
    names = [run.folder.name for run in runs]
    frames = []
    for run, name in zip(runs, names, strict=True):
        label = name if names.count(name) == 1 else str(run.folder)
        frames.append(aggregate(build_summary(run)).assign(results=label))
    if not frames:
        return pd.DataFrame(columns=["results", *AGGREGATE_COLUMNS])
    table = pd.concat(frames, ignore_index=True)
    return table[["results", *AGGREGATE_COLUMNS]]


def format_table(aggregated: pd.DataFrame) -> str:
    """Text for a terminal: per event, a line per metric, a column per (results and) variant,
    each cell ``median (p95)``; the line ``moved`` counts the repetitions where traffic moved."""
    if aggregated.empty:
        return "no impairment or failure event"
    by = [column for column in ("results", "variant") if column in aggregated]
    cells = aggregated.assign(
        column=aggregated[by].astype(str).agg("/".join, axis=1),
        cell=[
            _cell(*values)
            for values in zip(
                aggregated["metric"], aggregated["median"], aggregated["p95"], strict=True
            )
        ],
        moved=aggregated["n"].astype(str) + "/" + aggregated["repetitions"].astype(str),
    )
    blocks = []
    for (index, action, target, at), group in cells.groupby(list(EVENT_KEY), sort=False):
        order = list(dict.fromkeys(group["column"]))
        table = group.pivot(index="metric", columns="column", values="cell").reindex(METRICS)
        reroutes = group[group["metric"] == "reroute_s"].set_index("column")["moved"]
        table.loc["moved"] = reroutes
        table = table[order].rename_axis(index=None, columns=None)
        title = f"event {index}: {action} {target} at {at:g} s".replace("  ", " ")
        blocks.append(f"{title}\n{table.fillna('').to_string()}")
    return "\n\n".join(blocks)


def _cell(metric: str, median: float, p95: float) -> str:
    if math.isnan(median):
        return "-"
    if metric.endswith("_n") or metric == "false_alarms":  # a count, in full
        return f"{median:.0f} ({p95:.0f})"
    return f"{median:.4g} ({p95:.4g})"


# ---------------------------------------------------------------- figures and LaTeX


def write_report(folder: Path | str | ResultsRun) -> list[Path]:
    """summary.csv, percentiles.csv, calibration.csv, detection.csv, cpu_shares.csv,
    latency.png/.pdf, reroute.png/.pdf, detection.png/.pdf (a sweep of delays), cpu.png/.pdf
    (with cpu.csv) and report.tex."""
    run = _as_run(folder)
    plt = _pyplot()
    summary = build_summary(run)
    ladder = build_percentiles(run)
    measured = build_calibration(run)
    detected = build_detection(summary, run.metadata)
    shares = cpu_shares(run.tables["cpu"], run.variants)
    tex = report_tex(run, aggregate(summary), latency_notes(summary))
    figures = {"latency": latency_figure(run), "reroute": reroute_figure(run, summary)}
    if sweeps(detected):
        figures["detection"] = detection_figure(detected, _title(run, "degradations detected"))
    if not shares.empty:
        figures["cpu"] = cpu_figure(shares, _title(run, "where the CPU went"))
    try:
        tables = {"summary": summary, "percentiles": ladder, "calibration": measured,
                  "detection": detected, "cpu_shares": shares}  # fmt: skip
        paths = results.write_tables(tables, run.folder)
        for name, figure in figures.items():
            paths += results.write_figure(figure, run.folder, name)
    finally:
        for figure in figures.values():
            plt.close(figure)
    tex_path = run.folder / "report.tex"
    tex_path.write_text(tex, encoding="utf-8")
    return [*paths, tex_path]


def _title(run: ResultsRun, what: str) -> str:
    title = f"{run.folder.resolve().name}: {what}"  # "." names no folder
    return title if run.complete else f"{title}\nINCOMPLETE RUN (metadata.json: complete false)"


def _pyplot():
    return results.pyplot()


def latency_figure(run: ResultsRun):
    """Latency of every request over time, one row per variant (its first repetition), the
    instance that served as colour, failures as red crosses, the events marked."""
    plt = _pyplot()
    variants = [v for v in run.variants if not front_end(run.rows("requests", v)).empty]
    figure, axes = plt.subplots(
        max(len(variants), 1), 1, figsize=(10, 1.0 + 2.6 * max(len(variants), 1)), sharex=True,
        squeeze=False,
    )  # fmt: skip
    instances = sorted(set(run.tables["requests"]["served_by"]) - {""})
    colours = {instance: f"C{i % 10}" for i, instance in enumerate(instances)}
    for axis, variant in zip(axes[:, 0], variants, strict=False):
        _plot_latency(axis, run, variant, colours)
    if not variants:
        axes[0, 0].text(
            0.5, 0.5, "no requests recorded", ha="center", transform=axes[0, 0].transAxes
        )
    axes[-1, 0].set_xlabel("when the call was due, since the workload started (s)")
    handles = {h.get_label(): h for a in axes[:, 0] for h in a.get_legend_handles_labels()[0]}
    if handles:
        # in the right margin tight_layout leaves, clear of the title and the event marks
        figure.legend(handles.values(), handles.keys(), loc="center right", fontsize=8)
    figure.suptitle(_title(run, "latency of every call from when it was due (first repetition)"))
    figure.tight_layout(rect=(0, 0, 0.86, 1))
    return figure


def _plot_latency(axis, run: ResultsRun, variant: str, colours: Mapping[str, str]) -> None:
    requests = front_end(run.rows("requests", variant))
    repetition = requests["repetition"].min()
    requests = requests[requests["repetition"] == repetition]
    served = requests[requests["ok"]]
    for instance, rows in served.groupby("served_by"):
        colour = colours.get(instance, "grey")
        axis.scatter(rows["intended_s"], rows["latency_ms"], s=6, color=colour, label=instance)
    failed = requests[~requests["ok"]]
    if not failed.empty:
        ceiling = max(served["latency_ms"].max(), 1.0) if not served.empty else 1.0
        axis.scatter(
            failed["intended_s"], [ceiling] * len(failed), marker="x", color="red", s=14,
            label="failed (at the top)",
        )  # fmt: skip
    if (served["latency_ms"] > 0).any():
        axis.set_yscale("log")
    axis.set_ylabel("latency (ms)")
    axis.set_title(f"{variant}, repetition {repetition}", loc="left", fontsize=9)
    events = _timeline(run.rows("events", variant, repetition))
    marks = pd.DataFrame(
        {"time": events["time"], "kind": events["action"] + " " + events["target"]}
    )
    results.mark_events([axis], marks)


def reroute_figure(run: ResultsRun, summary: pd.DataFrame):
    """Per degrading event, reroute_s of each repetition per variant, the median as a bar."""
    plt = _pyplot()
    events = list(summary.groupby(list(EVENT_KEY), sort=False))
    figure, axes = plt.subplots(
        1, max(len(events), 1), figsize=(max(6.5, 3.8 * len(events)), 4.5), sharey=True,
        squeeze=False,
    )  # fmt: skip
    for axis, ((_, action, target, at), rows) in zip(axes[0], events, strict=False):
        _plot_reroutes(axis, rows, [v for v in run.variants if v in set(rows["variant"])])
        axis.set_title(f"{action} {target} at {at:g} s", fontsize=9)
    if not events:
        axes[0, 0].text(
            0.5, 0.5, "no impairment or failure event", ha="center", transform=axes[0, 0].transAxes
        )
    axes[0, 0].set_ylabel("reroute time (s after the event)")
    figure.suptitle(_title(run, "reroute time: a point per repetition, bar: median"))
    figure.tight_layout()
    return figure


def _plot_reroutes(axis, rows: pd.DataFrame, variants: list[str]) -> None:
    for x, variant in enumerate(variants):
        values = rows.loc[rows["variant"] == variant, "reroute_s"]
        moved = values.dropna()
        spread = np.linspace(-0.15, 0.15, len(moved)) if len(moved) > 1 else np.zeros(len(moved))
        axis.scatter(x + spread, moved, s=16, color=f"C{x % 10}", zorder=3)
        if not moved.empty:
            axis.hlines(moved.median(), x - 0.3, x + 0.3, color="black", linewidth=1.5)
        axis.annotate(
            f"moved {len(moved)}/{len(values)}", (x, 0.01), xycoords=("data", "axes fraction"),
            ha="center", va="bottom", fontsize=7,
        )  # fmt: skip
    axis.set_xticks(range(len(variants)), variants, rotation=20)
    axis.set_xlim(-0.6, max(len(variants), 1) - 0.4)
    axis.set_ylim(bottom=0)


LABELS = {
    "detect_s": "detect (s)",
    "decide_s": "decide (s)",
    "install_s": "install (s)",
    "reroute_s": "reroute (s)",
    "false_alarms": "crossings before the first event",
    **{
        f"{w}_{m}": f"{label} {w}"
        for w in WINDOWS
        for m, label in (("n", "calls measured"), ("p50_ms", "p50 latency (ms)"),
                         ("p95_ms", "p95 latency (ms)"), ("p99_ms", "p99 latency (ms)"),
                         ("p999_ms", "p99.9 latency (ms)"), ("loss", "loss"))
    },
    **calibration.LABELS,
}  # fmt: skip


def latex_escape(text: str) -> str:
    """Text as LaTeX typesets it literally."""
    special = {
        "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    }  # fmt: skip
    return "".join(special.get(char, char) for char in str(text))


def _latex_number(metric: str, value: float) -> str:
    if math.isnan(value):
        return "--"
    if metric.endswith("_loss"):
        return f"{100 * value:.1f}\\%"
    if metric.endswith("_n") or metric == "false_alarms":
        return f"{value:.0f}"
    return f"{value:.1f}" if metric.endswith("_ms") else f"{value:.3f}"


def report_tex(run: ResultsRun, aggregated: pd.DataFrame, warnings: Iterable[str] = ()) -> str:
    """A LaTeX document: per variant a booktabs table, a column pair (median, p95 over
    repetitions) per degrading event, a line per column of summary.csv."""
    lines = [
        r"\documentclass{article}",
        r"\usepackage{booktabs}",
        r"\begin{document}",
        rf"\section*{{Results {latex_escape(run.folder.name)}}}",
    ]
    if not run.complete:
        lines.append(r"\textbf{Incomplete run} (metadata.json: complete is false): the tables "
                     r"hold what was collected before the run stopped.")  # fmt: skip
    notes = [*run.notes, *warnings]
    if notes:
        lines += [r"\begin{itemize}", *(rf"\item {latex_escape(n)}" for n in notes)]
        lines.append(r"\end{itemize}")
    for variant in run.variants:
        lines += _variant_table(run, variant, aggregated[aggregated["variant"] == variant])
    lines.append(r"\end{document}")
    return "\n".join(lines) + "\n"


def _variant_table(run: ResultsRun, variant: str, rows: pd.DataFrame) -> list[str]:
    name = latex_escape(variant)
    state = "" if run.complete else " (incomplete run)"
    if rows.empty:
        return [rf"\paragraph{{Variant {name}}} no impairment or failure event{state}."]
    events = list(rows.groupby(list(EVENT_KEY), sort=False))
    head = " & ".join(
        rf"\multicolumn{{2}}{{c}}{{{latex_escape(f'{a} {t}'.strip())} at {at:g}\,s}}"
        for (_, a, t, at), _ in events
    )
    rules = " ".join(rf"\cmidrule(lr){{{2 + 2 * i}-{3 + 2 * i}}}" for i in range(len(events)))
    lines = [
        r"\begin{table}[ht]",
        r"\centering",
        rf"\caption{{Variant {name}{state}: median and p95 over repetitions}}",
        rf"\begin{{tabular}}{{l{'rr' * len(events)}}}",
        r"\toprule",
        rf" & {head} \\",
        rules,
        " & " + " & ".join(["median & p95"] * len(events)) + r" \\",
        r"\midrule",
    ]
    for metric in METRICS:
        cells = []
        for _, group in events:
            row = group[group["metric"] == metric].iloc[0]
            cells += [_latex_number(metric, row["median"]), _latex_number(metric, row["p95"])]
        lines.append(f"{latex_escape(LABELS[metric])} & {' & '.join(cells)} \\\\")
    moved = [group.loc[group["metric"] == "reroute_s"].iloc[0] for _, group in events]
    cells = [rf"\multicolumn{{2}}{{c}}{{{r['n']} of {r['repetitions']}}}" for r in moved]
    lines += [rf"traffic moved & {' & '.join(cells)} \\", r"\bottomrule", r"\end{tabular}"]
    return [*lines, r"\end{table}"]
