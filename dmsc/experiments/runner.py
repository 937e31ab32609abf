"""``dmsc run EXPERIMENT.yaml``: every variant, every repetition, into one results folder.

Per repetition: build the emulated network (with the variant's SCSC and timers), wait until
every FIB matches an independent SPF and the SCSC has settled (polling, never a fixed sleep),
start the workload, apply the timeline at its times, collect, tear down — always, also on Ctrl-C
or when a node program dies. Rows are appended to the CSV tables after each repetition and
``metadata.json`` says ``"complete": false`` until the end, so a run that dies leaves what it
had collected readable and marked. The report (summary, figures, LaTeX) is built from the CSV
at the end, exactly as ``dmsc report`` rebuilds it.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import json
import logging
import random
import re
import selectors
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from dmsc.errors import DmscError
from dmsc.experiments.impair import Command, clear_commands, ends_for, impair_commands
from dmsc.measurement import cpu
from dmsc.measurement.ping import requests as ping_requests
from dmsc.names import name_address
from dmsc.nodes.calls import parent_of, trace_of
from dmsc.nodes.emulation import SCSC_HOST, EmulatedNetwork
from dmsc.nodes.mncli import with_threshold_changes
from dmsc.results import new_results_dir, run_metadata, write_metadata

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[2]
TABLES = {
    "requests": (
        "variant",
        "repetition",
        "trace_id",
        "call_id",
        "parent_id",
        "client",
        "service",
        "intended_s",
        "sent_s",
        "latency_ms",
        "service_ms",
        "ok",
        "served_by",
        "error",
    ),
    "telemetry": (
        "variant",
        "repetition",
        "time_s",
        "sg",
        "target",
        "delay_ms",
        "jitter_ms",
        "loss",
        "bandwidth_bps",
    ),
    "decisions": (
        "variant",
        "repetition",
        "time_s",
        "source",
        "service",
        "trigger",
        "old_instance",
        "old_path",
        "new_instance",
        "new_path",
        "all_bad",
    ),
    "fib_changes": ("variant", "repetition", "time_s", "node", "detail"),
    "pings": (
        "variant",
        "repetition",
        "measurement",
        "kind",
        "source",
        "target",
        "at_s",
        "seq",
        "sent_s",
        "rtt_ms",
    ),
    "policy_changes": (
        "variant",
        "repetition",
        "time_s",
        "node",
        "change",
        "cookie",
        "ipv6_dst",
        "ipv6_src",
        "outputs",
    ),
    "policies": (
        "variant",
        "repetition",
        "node",
        "cookie",
        "ipv6_dst",
        "ipv6_src",
        "outputs",
        "installed_s",
        "packets",
    ),
    "cpu": ("variant", "repetition", "node", "role", "cpu_s", "wall_s"),
    "events": (
        "variant",
        "repetition",
        "at_s",
        "started_s",
        "applied_s",
        "done_s",
        "action",
        "target",
        "commands",
        "ok",
        "error",
    ),
}
SETTLE_TIMEOUT_S = 60.0
#: a calibration ping's last request leaves this long before the next event on its link, so
#: that its reply (up to PING_WAIT_S late) is not held by what that event changes
PING_MARGIN_S = 0.5
PING_WAIT_S = 2
CLIENT_READY_TIMEOUT_S = 60.0
CLIENT_START_MARGIN_S = 0.05  # for the start time to reach every client before it passes
MIN_PINGS = 5  # fewer, after an impairment, tell nothing: not started
RESET_RETRY_S = 10.0  # a table read back during a reset is taken over again: reset once more


@dataclass
class Altered:
    """What the timeline changed and has not undone yet: a kept network's reset undoes it."""

    impaired: set[tuple[str, str]] = field(default_factory=set)
    links_down: set[tuple[str, str]] = field(default_factory=set)
    thresholds: dict | None = None  # the SCSC's before the first thresholds event


class Tables:
    """The CSV tables of a results folder, appended row by row and flushed per repetition."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        for name, columns in TABLES.items():
            with open(folder / f"{name}.csv", "w", newline="") as stream:
                csv.writer(stream).writerow(columns)

    def append(self, name: str, rows: list[dict]) -> None:
        columns = TABLES[name]
        with open(self.folder / f"{name}.csv", "a", newline="") as stream:
            writer = csv.DictWriter(stream, columns, extrasaction="raise")
            writer.writerows({c: _cell(row.get(c)) for c in columns} for row in rows)


def _cell(value):
    if isinstance(value, list | tuple):
        return " ".join(map(str, value))
    return "" if value is None else value


@dataclass
class Progress:
    """One line on stderr, rewritten: where the run is (repetitions and timeline), how long it
    has taken and, once a repetition is done, about how long the rest will take."""

    total: int
    done: int = 0
    enabled: bool = True
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    started: float | None = field(default=None, repr=False)
    last: str = field(default="", repr=False)
    counted: int = field(default=0, repr=False)  # the repetitions done at done_at
    done_at: float = field(default=0.0, repr=False)

    def show(self, text: str) -> None:
        if not self.enabled:
            return
        line = "\r" + self.line(text)
        if line == self.last:
            return
        sys.stderr.write(line.ljust(len(self.last)))
        sys.stderr.flush()
        self.last = line

    def line(self, text: str) -> str:
        now = self.clock()
        if self.started is None:
            self.started = now
        width = 20
        filled = width * self.done // max(1, self.total)
        bar = f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}"
        return f"{bar} {_minutes(now - self.started)}{self.estimate(now)} {text}"

    def estimate(self, now: float) -> str:
        """The time left: the mean time of the repetitions done, for each still to do, less
        what the one under way has already taken (none before the first is done)."""
        if self.done == 0 or self.started is None or self.done >= self.total:
            return ""
        if self.counted != self.done:  # a repetition ended since the last line
            self.counted, self.done_at = self.done, now
        per_repetition = (self.done_at - self.started) / self.done
        under_way = now - self.done_at
        left = max(0.0, per_repetition * (self.total - self.done) - under_way)
        return f", ~{_minutes(left)} left"

    def finish(self) -> None:
        if self.enabled and self.last:
            sys.stderr.write("\n")


def _minutes(seconds: float) -> str:
    whole = max(0, int(seconds))
    return f"{whole // 60}:{whole % 60:02d}"


class ExperimentRunner:
    def __init__(
        self,
        experiment,
        results_root: Path = Path("results"),
        *,
        progress: bool = True,
        ready_timeout_s: float = 20.0,
    ) -> None:
        self.experiment = experiment
        self.results_root = results_root
        self.ready_timeout_s = ready_timeout_s
        self.random = random.Random(experiment.seed)
        total = len(experiment.variants) * experiment.repetitions
        self.progress = Progress(total, enabled=progress)
        self.commands_run: list[dict] = []
        self.first_effect: float | None = None
        self.altered = Altered()
        self.pinging: list[Ping] = []  # this repetition's calibration pings
        self.link_targets: dict[tuple[str, str], str] = {}  # link -> its second end's address

    # ------------------------------------------------------------------ the whole run

    def run(self) -> Path:
        experiment = self.experiment
        folder = new_results_dir(self.results_root, experiment.name)
        tables = Tables(folder)
        (folder / "experiment.yaml").write_text(experiment.source_text)
        meta = self._metadata()
        write_metadata(meta, folder)

        def recorded(record: dict) -> None:
            meta["repetitions"].append(record)
            meta["tc_commands"] = self.commands_run
            write_metadata(meta, folder)
            self.progress.done += 1

        try:
            for variant in experiment.variants:
                if experiment.reuse_network:
                    self._variant_on_one_network(variant, tables, recorded)
                    continue
                for repetition in range(experiment.repetitions):
                    with self._network(variant) as network:
                        recorded(self._repetition(network, variant, repetition, tables))
            meta["complete"] = True
        except BaseException as error:
            meta["error"] = f"{type(error).__name__}: {error}"
            raise
        finally:
            meta["finished"] = time.time()
            meta["tc_commands"] = self.commands_run
            write_metadata(meta, folder)
            self.progress.finish()
            self._report(folder)
        return folder

    def _metadata(self) -> dict:
        experiment = self.experiment
        config = {"experiment": str(experiment.path), "sha256": experiment.source_sha256}
        meta = run_metadata(config, REPO)
        meta.update(
            {
                "name": experiment.name,
                "description": experiment.description,
                "seed": experiment.seed,
                "reuse_network": experiment.reuse_network,
                "calibration": asdict(experiment.calibration),
                "complete": False,
                "started": time.time(),
                "variants": {v.name: _variant_metadata(v) for v in experiment.variants},
                "repetitions": [],
                "tc_commands": [],
            }
        )
        return meta

    def _report(self, folder: Path) -> None:
        try:
            from dmsc.experiments.report import write_report

            write_report(folder)
        except Exception as error:  # the CSV stay; `dmsc report` can retry
            log.warning("report of %s not built: %s", folder, error)

    # ------------------------------------------------------------------ one repetition

    def _network(self, variant) -> EmulatedNetwork:
        return EmulatedNetwork(
            variant.topology,
            timers=variant.timers,
            scsc=probing_for_workload(variant),
            ready_timeout_s=self.ready_timeout_s,
            calls=variant.calls,
        )

    def _variant_on_one_network(self, variant, tables: Tables, recorded) -> None:
        """``reuse_network``: every repetition on one network, reset in between."""
        with self._network(variant) as network:
            since = 0.0
            for repetition in range(self.experiment.repetitions):
                reset = {"reset_s": None, "reset_retried": []}
                if repetition:
                    started = time.monotonic()
                    label = f"{variant.name} #{repetition + 1}"
                    reset["reset_retried"] = self._reset(network, variant, label)
                    reset["reset_s"] = round(time.monotonic() - started, 3)
                record = self._repetition(
                    network, variant, repetition, tables, since, fresh=repetition == 0
                )
                recorded({**record, **reset})
                since = record["wall_end"]

    def _repetition(
        self,
        network,
        variant,
        repetition: int,
        tables: Tables,
        since: float = 0.0,
        fresh: bool = True,
    ) -> dict:
        """One repetition on a started network; SCSC log lines older than ``since`` belong to
        the repetitions before (a reused network). On a ``fresh`` network the SCSC's view is
        cleaned as a reset cleans it: its first windows hold probes sent while the network
        was still converging, lost for that reason alone, and must not decide a repetition."""
        label = f"{variant.name} #{repetition + 1}"
        record = {"variant": variant.name, "repetition": repetition, "wall_start": time.time()}
        self.altered = Altered()
        self.progress.show(f"{label}: converging")
        record["converged_after_s"] = network.wait_converged(timeout=60)
        if variant.scsc is not None:
            self._wait_scsc_settled(network)
            if fresh:
                record["start_view_retried"] = self._fresh_scsc_view(network, variant)
                since = max(since, time.time())  # what the warm-up decided is not this run's
        # in the run folder: `dmsc clean` finds what mentions it, should this process die
        outputs = self._start_workload(network, variant, network.run_dir, repetition)
        try:
            # the clients' start-up (seconds of the VM's one CPU) ends before the floor is
            # measured, and the SGs' jitter estimates have forgotten it by t0
            _wait_ready(outputs)
            self._measure_floor(network, variant, label)
            t0 = _start_clients(outputs)
            record["t0"] = t0
            cpu_before = cpu_snapshot(network)
            events = self._timeline(network, variant, t0, label)
            self._wait_workload(outputs, t0 + self.experiment.duration_s, label)
            cpu_after = cpu_snapshot(network)
        except BaseException:
            self._stop_pings()
            raise
        finally:
            _stop_workload(outputs)  # also when interrupted: nothing outlives the run
        pings, record["calibration_problems"] = self._collect_pings()
        rows, record["workload"] = self._collect(network, variant, repetition, t0, outputs, since)
        base = {"variant": variant.name, "repetition": repetition}
        rows["pings"] = _ping_rows(pings, base, t0)
        rows["cpu"] = cpu_rows(base, cpu_before, cpu_after, record["workload"])
        rows["events"] = [{**e, "variant": variant.name, "repetition": repetition} for e in events]
        for name, table_rows in rows.items():
            tables.append(name, table_rows)
        record["wall_end"] = time.time()
        return record

    # ------------------------------------------------------------------ between repetitions

    def _reset(self, network, variant, label: str) -> list[str]:
        """Bring a kept network back to where a fresh one starts: undo what the timeline left
        changed, wait for convergence and for the SGs' probe windows to hold only probes sent
        since, then have the SCSC remove its policies and forget its choices and telemetry.
        Checked, not assumed: every node without a policy, the SCSC without a choice. Returns
        why the SCSC's reset had to be repeated, if it had (e.g. it took a pair over again)."""
        self.progress.show(f"{label}: resetting the network")
        self._restore(network, variant)
        network.wait_converged(timeout=60)
        if variant.scsc is None:
            return []
        return self._fresh_scsc_view(network, variant)

    def _fresh_scsc_view(self, network, variant) -> list[str]:
        """Wait until the SGs' probe windows hold only probes sent from now on, then have the
        SCSC remove its policies and forget its choices and telemetry; checked, and repeated
        if the SCSC took a pair over again (returns why it had to be)."""
        time.sleep(_window_span_s(variant.scsc))  # a measurement window, not a synchronisation
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        retried = []
        while True:
            network.ask(SCSC_HOST, "reset")
            asked = time.monotonic()
            while time.monotonic() - asked < RESET_RETRY_S:
                if not (leftover := self._left_over(network, variant)):
                    return retried
                time.sleep(0.2)
            if time.monotonic() > deadline:
                raise DmscError(f"the reset left policies in place: {leftover}")
            log.warning("%s: SCSC reset again: %s", variant.name, leftover)
            retried.append(leftover)

    def _restore(self, network, variant) -> None:
        altered = self.altered
        for link in sorted(altered.impaired):
            self._clear(network, variant, link)
        for link in sorted(altered.links_down):
            network.set_link(*link, True)
        for node in sorted(network.nodes_down):
            network.restart_node(node, wait=True)
        if altered.thresholds is not None:
            network.ask(SCSC_HOST, "set_thresholds", thresholds=altered.thresholds)
        self.altered = Altered()

    def _left_over(self, network, variant) -> str:
        """What still stands between the network and a fresh one's state ('' when nothing)."""
        status = network.ask(SCSC_HOST, "status")
        if status["settling"]:
            return "the SCSC is settling"
        if choices := network.ask(SCSC_HOST, "choices"):
            return f"the SCSC keeps {len(choices)} choices"
        for node in (*variant.topology.gateways, *variant.topology.routers):
            if policies := network.ask(node, "policies"):
                return f"{node} holds {len(policies)} policies"
        return ""

    def _wait_scsc_settled(self, network: EmulatedNetwork) -> None:
        """The SCSC decides only once the topology has been still (topology_settle_s)."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while network.ask(SCSC_HOST, "status").get("settling"):
            if time.monotonic() > deadline:
                raise DmscError(f"the SCSC was still settling after {SETTLE_TIMEOUT_S:.0f} s")
            time.sleep(0.2)

    # ------------------------------------------------------------------ workload

    def _start_workload(self, network, variant, tmp: Path, repetition: int):
        """Every client started, each to say ``ready`` and wait for its start time."""
        outputs = []
        number = self.experiment.variants.index(variant)
        for index, load in enumerate(variant.workload):
            out = tmp / f"requests-{repetition}-{index}.json"
            command = [
                sys.executable, "-m", "dmsc.nodes.workload", load.service,
                "--rate", repr(load.rate_hz),
                "--arrivals", load.arrivals,
                "--duration", repr(self.experiment.duration_s),
                "--timeout", repr(load.timeout_s),
                "--protocol", load.protocol,
                "--connection", load.connection,
                "--request-bytes", str(load.request_bytes),
                "--response-bytes", str(load.response_bytes),
                "--max-in-flight", str(load.bound),
                # the same arrivals in every variant: variants are compared call for call
                "--seed", str(arrival_seed(self.experiment.seed, repetition, index)),
                "--start-on-stdin",
                # unique in the run, so that the hops below a call are found by its id
                "--trace", f"v{number}r{repetition}c{index}-",
                "--out", str(out),
            ]  # fmt: skip
            process = network.hosts[load.client].popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            outputs.append((load, out, process))
        return outputs

    def _wait_workload(self, outputs, end: float, label: str) -> None:
        for _, _, process in outputs:
            while process.poll() is None:
                self.progress.show(
                    f"{label}: t={time.time() - (end - self.experiment.duration_s):.0f}"
                    f"/{self.experiment.duration_s:g} s, workload"
                )
                time.sleep(0.2)
                if time.time() > end + 30:
                    process.terminate()  # it writes what it has (SIGTERM handler)
                    process.wait(10)

    # ------------------------------------------------------------------ timeline

    def _timeline(self, network, variant, t0: float, label: str) -> list[dict]:
        applied = []
        for event in variant.timeline:
            while (wait := t0 + event.at_s - time.time()) > 0:
                self.progress.show(
                    f"{label}: t={time.time() - t0:.0f}/"
                    f"{self.experiment.duration_s:g} s, next {event.action} "
                    f"at {event.at_s:g} s"
                )
                time.sleep(min(wait, 0.2))
            applied.append(self._apply(network, variant, event, t0))
        return applied

    def _apply(self, network, variant, event, t0: float) -> dict:
        row = {
            "at_s": event.at_s,
            "action": event.action,
            "target": _target(event),
            "commands": "",
            "ok": True,
            "error": "",
        }
        self.first_effect = None
        started = time.time()
        try:
            commands = self._perform(network, variant, event)
            row["commands"] = "; ".join(" ".join(c) for c in commands)
        except (DmscError, subprocess.SubprocessError, OSError) as error:
            row.update(ok=False, error=str(error))
            log.warning("event %s at %g s failed: %s", event.action, event.at_s, error)
        done = time.time()
        if event.action == "impair" and row["ok"]:
            self._ping_impaired(network, variant, event, t0)
        # in effect from when its first part took effect (tc on one end; a kill or a link
        # change acts at once, so its start), complete at done_s
        row["started_s"] = round(started - t0, 6)
        row["applied_s"] = round((self.first_effect or started) - t0, 6)
        row["done_s"] = round(done - t0, 6)
        return row

    def _perform(self, network, variant, event) -> list[Command]:
        action = event.action
        altered = self.altered
        if action == "impair":
            altered.impaired.add(event.link)  # before: a part may take effect, then fail
            build = functools.partial(impair_commands, impairment=event.impairment)
            return self._tc(network, event.link, event.impairment.direction, build)
        if action == "clear":
            commands = self._clear(network, variant, event.link)
            altered.impaired.discard(event.link)
            return commands
        if action in ("link_down", "link_up"):
            if action == "link_down":
                altered.links_down.add(event.link)
            else:
                altered.links_down.discard(event.link)
            network.set_link(*event.link, action == "link_up")
            state = "up" if action == "link_up" else "down"
            return [
                [f"{node}:", "ip", "link", "set", network.interface_toward(node, other), state]
                for node, other in (event.link, event.link[::-1])
            ]
        elif action == "node_crash":
            network.kill_node(event.node)
        elif action == "node_restart":
            network.restart_node(event.node, wait=False)
        elif action == "scsc_stop":
            network.kill_node(SCSC_HOST)
        elif action == "scsc_start":
            network.restart_node(SCSC_HOST, wait=False)
        elif action == "thresholds":
            current = network.ask(SCSC_HOST, "thresholds")
            if altered.thresholds is None:
                altered.thresholds = current
            changes = [f"{k}={'off' if v is None else v}" for k, v in event.thresholds.items()]
            table = with_threshold_changes(current, event.service or "default", changes)
            network.ask(SCSC_HOST, "set_thresholds", thresholds=table)
        else:
            raise DmscError(f"unknown action {action!r}")
        return []

    def _clear(self, network, variant, link) -> list[Command]:
        """Both ends back to the topology's own shaping; a missing qdisc is no error."""
        bandwidth = _bandwidth(variant.topology, link)
        clear = functools.partial(clear_commands, bandwidth_mbps=bandwidth)
        return self._tc(network, link, "both", clear, check=False)

    def _tc(self, network, link, direction: str, build: Callable[[str], list[Command]],
            check: bool = True) -> list[Command]:  # fmt: skip
        """Run the commands of every end at once (one process per end, each end's commands in
        order): under the VM's emulation a process start takes long, and both directions
        should change together. Returns them; ``self.first_effect`` is when the first end
        finished (from then on the impairment is in effect somewhere)."""
        ends = ends_for(link, direction, network.interface_toward)
        scripts = {end: build(end.interface) for end in ends}
        running = {
            end: subprocess.Popen(
                ["mnexec", "-a", str(network.hosts[end.node].pid), "sh", "-c",
                 " && ".join(shlex.join(command) for command in commands)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            )
            for end, commands in scripts.items()
        }  # fmt: skip
        failures = []
        for end, process in running.items():
            _, stderr = process.communicate(timeout=30)
            self.first_effect = self.first_effect or time.time()
            for command in scripts[end]:
                self.commands_run.append(
                    {"node": end.node, "command": command, "returncode": process.returncode}
                )
            if process.returncode != 0:
                failures.append(f"{end.node}: {stderr.strip()}")
        if check and failures:
            raise DmscError("; ".join(failures))
        return [[f"{end.node}:", *command] for end, commands in scripts.items()
                for command in commands]  # fmt: skip

    # ------------------------------------------------------------------ calibration

    def _measure_floor(self, network, variant, label: str) -> None:
        """Before the timeline, for ``floor_s``: echoes on every workload path and across every
        link the timeline impairs, all at once (dmsc.experiments.calibration)."""
        calibration = self.experiment.calibration
        self.pinging = []
        impaired = list(dict.fromkeys(e.link for e in variant.timeline if e.action == "impair"))
        self.link_targets = {}
        if calibration.impairment_s or calibration.floor_s:
            self.link_targets = {link: self._link_target(network, link) for link in impaired}
        if not calibration.floor_s:
            return
        self.progress.show(f"{label}: measuring the noise floor")
        count = max(1, round(calibration.floor_s / calibration.interval_s))
        paths = dict.fromkeys((load.client, load.service) for load in variant.workload)
        for client, service in paths:
            address = str(name_address(service))
            self._ping(network, ("floor", "path", client, service, None), client, address, count)
        for link, target in self.link_targets.items():
            self._ping(network, ("floor", "link", *link, None), link[0], target, count)
        deadline = time.monotonic() + calibration.floor_s + PING_WAIT_S + 10
        try:
            for ping in self.pinging:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    ping.process.wait(max(0.1, deadline - time.monotonic()))
        except BaseException:
            self._stop_pings()
            raise

    def _ping_impaired(self, network, variant, event, t0: float) -> None:
        """Echoes across a link just impaired, until ``impairment_s`` or until shortly before
        the next event on that link (or the run's end), whichever comes first."""
        calibration = self.experiment.calibration
        target = self.link_targets.get(event.link)
        if not calibration.impairment_s or target is None or event.impairment.rate_mbit:
            return  # a rate: the pings would queue behind the workload and add to its queue
        later = [e.at_s for e in variant.timeline if e.at_s > event.at_s
                 and e.link is not None and set(e.link) == set(event.link)]  # fmt: skip
        until = min([*later, self.experiment.duration_s]) - PING_MARGIN_S
        span = min(calibration.impairment_s, t0 + until - time.time())
        count = int(span / calibration.interval_s)
        if count < MIN_PINGS:
            log.info("impair %s at %g s: no room for calibration pings", event.target, event.at_s)
            return
        key = ("impairment", "link", *event.link, event.at_s)
        self._ping(network, key, event.link[0], target, count)

    def _link_target(self, network, link: tuple[str, str]) -> str:
        """The second end's link-local address on ``link``, scoped to the first end's port:
        an echo to it crosses that one link, kernel to kernel (forwarders leave link-local
        traffic to the kernel)."""
        a, b = link
        shown = subprocess.run(
            ["mnexec", "-a", str(network.hosts[b].pid), "ip", "-6", "-o", "addr", "show",
             "dev", network.interface_toward(b, a), "scope", "link"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        found = re.search(r"inet6 (fe80::[0-9a-f:]+)/", shown.stdout)
        if not found:
            raise DmscError(f"{b} has no link-local address toward {a}: {shown.stderr.strip()}")
        return f"{found.group(1)}%{network.interface_toward(a, b)}"

    def _ping(self, network, key: tuple, node: str, target: str, count: int) -> None:
        interval = self.experiment.calibration.interval_s
        command = ["ping", "-6", "-n", "-D", "-c", str(count), "-i", f"{interval:g}",
                   "-W", str(PING_WAIT_S), target]  # fmt: skip
        process = subprocess.Popen(
            ["mnexec", "-a", str(network.hosts[node].pid), *command],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.pinging.append(Ping(key, process, time.time(), count * interval))

    def _collect_pings(self) -> tuple[list[tuple[tuple, list]], list[str]]:
        """Each ping's requests, once it ended (by itself, or stopped: it prints what it has),
        and what went wrong, for metadata.json."""
        interval = self.experiment.calibration.interval_s
        collected, problems = [], []
        for ping in self.pinging:
            try:
                out, err = ping.process.communicate(timeout=ping.span_s + PING_WAIT_S + 10)
            except subprocess.TimeoutExpired:
                ping.process.send_signal(signal.SIGINT)  # ping's own way to print its summary
                out, err = ping.process.communicate(timeout=10)
            sent = ping_requests(out, interval, ping.started)
            if not sent:
                problems.append(f"{' '.join(map(str, ping.key[:4]))}: {err.strip() or 'no echo'}")
            collected.append((ping.key, sent))
        self.pinging = []
        for problem in problems:
            log.warning("calibration ping: %s", problem)
        return collected, problems

    def _stop_pings(self) -> None:
        """Interrupted: every ping still running ends now (nothing outlives the run)."""
        for ping in self.pinging:
            if ping.process.poll() is None:
                ping.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                ping.process.communicate(timeout=5)
        self.pinging = []

    # ------------------------------------------------------------------ collecting

    def _collect(
        self, network, variant, repetition: int, t0: float, outputs, since
    ) -> tuple[dict, list[dict]]:
        """The repetition's rows per table, and each client's in-flight bound and how near it
        came to it."""
        base = {"variant": variant.name, "repetition": repetition}
        rows: dict[str, list[dict]] = {name: [] for name in TABLES if name != "events"}
        traces: set[str] = set()
        stats = []
        for load, out, process in outputs:
            written = _written_requests(load, out, process)
            stats.append(
                {"client": load.client, "service": load.service}
                | {k: written[k] for k in ("bound", "most_in_flight", "refused_at_bound")}
                | {"cpu_s": written.get("cpu_s")}
            )
            for request in written["records"]:
                traces.add(request["call_id"])
                rows["requests"].append(_request_row(base, load.client, load.service, request, t0))
        rows["requests"] += _hop_rows(network, base, traces, t0)
        if variant.scsc is not None:
            for table, convert in (("telemetry", _telemetry_row), ("decisions", _decision_row)):
                path = network.run_dir / f"scsc-{table}.jsonl"
                rows[table] = _scsc_rows(path, base, t0, since, convert)
        for node in (*variant.topology.gateways, *variant.topology.routers):
            if node in network.nodes_down:
                continue
            with contextlib.suppress(DmscError):
                for event in network.ask(node, "events", limit=10_000):
                    if event.get("kind") == "fib" and event["time"] >= max(t0 - 1, since):
                        rows["fib_changes"].append(
                            {
                                **base,
                                "time_s": round(event["time"] - t0, 6),
                                "node": node,
                                "detail": event["detail"],
                            }
                        )
                if variant.scsc is not None:
                    rows["policy_changes"] += _policy_change_rows(network, node, base, t0, since)
                    asked = time.time()
                    for policy in network.ask(node, "policies"):
                        rows["policies"].append(
                            {
                                **base,
                                "node": node,
                                **{
                                    k: policy[k]
                                    for k in (
                                        "cookie",
                                        "ipv6_dst",
                                        "ipv6_src",
                                        "outputs",
                                        "packets",
                                    )
                                },
                                "installed_s": round(asked - policy["age_s"] - t0, 6),
                            }
                        )
        return rows, stats


@dataclass
class Ping:
    key: tuple  # (measurement, kind, source, target, at_s): pings.csv's columns
    process: subprocess.Popen
    started: float
    span_s: float


@dataclass(frozen=True)
class CpuSnapshot:
    wall: float
    machine: cpu.MachineTimes
    programs: dict[str, tuple[str, float | None]]  # host: (role, CPU seconds so far)


def cpu_snapshot(network) -> CpuSnapshot:
    """Every node program's CPU time so far, and the machine's (docs/experiments.md)."""
    spent = cpu.read_processes(p.process.pid for p in network.programs.values())
    programs = {
        host: (_cpu_role(network, host, program.role), spent[program.process.pid])
        for host, program in network.programs.items()
    }
    return CpuSnapshot(time.time(), cpu.read_machine(), programs)


def _cpu_role(network, host: str, role: str) -> str:
    """An SG and an SR run the same router program: cpu.csv tells them apart."""
    if role != "router":
        return role
    return "sg" if host in network.spec.gateways else "sr"


def cpu_rows(base: dict, before: CpuSnapshot, after: CpuSnapshot, clients: list[dict]) -> list:
    """cpu.csv's rows for a span: a row per node program and per workload client (its own
    count, from the start of its schedule), ``other`` for the rest of the machine's busy time
    (the kernel forwarding between namespaces, the runner, pings, tc) and ``idle``. The rows
    add up to the machine's CPU time in the span (wall_s times the CPUs). A program that
    (re)started within the span is left out of the sum and counts in ``other``."""
    wall = round(after.wall - before.wall, 3)
    rows, counted = [], 0.0
    for host, (role, spent_after) in sorted(after.programs.items()):
        _, spent_before = before.programs.get(host, (role, None))
        if spent_after is None or spent_before is None or spent_after < spent_before:
            continue
        rows.append({**base, "node": host, "role": role, "cpu_s": spent_after - spent_before})
        counted += spent_after - spent_before
    for client in clients:
        if client.get("cpu_s") is not None:
            rows.append({**base, "node": client["client"], "role": "client",
                         "cpu_s": client["cpu_s"]})  # fmt: skip
            counted += client["cpu_s"]
    busy = after.machine.busy_s - before.machine.busy_s
    idle = after.machine.idle_s - before.machine.idle_s
    rows.append({**base, "node": "", "role": "other", "cpu_s": max(0.0, busy - counted)})
    rows.append({**base, "node": "", "role": "idle", "cpu_s": idle})
    return [{**row, "cpu_s": round(row["cpu_s"], 3), "wall_s": wall} for row in rows]


def _ping_rows(pings, base: dict, t0: float) -> list[dict]:
    keys = ("measurement", "kind", "source", "target", "at_s")
    return [
        {**base, **dict(zip(keys, key, strict=True)), "seq": request.seq,
         "sent_s": round(request.sent_at - t0, 6),
         "rtt_ms": "" if request.rtt_ms is None else request.rtt_ms}
        for key, sent in pings
        for request in sent
    ]  # fmt: skip


def arrival_seed(seed: int, repetition: int, index: int) -> int:
    """The seed of one client's Poisson arrivals: the experiment's seed, the repetition and
    the client, never the variant."""
    return random.Random(f"{seed}/{repetition}/{index}").getrandbits(32)


def _written_requests(load, out: Path, process) -> dict:
    if not out.exists():
        error = process.stderr.read().decode(errors="replace")[-500:] if process.stderr else ""
        raise DmscError(f"the workload of {load.client} wrote nothing: {error}")
    try:
        return json.loads(out.read_text())
    except json.JSONDecodeError as error:
        raise DmscError(f"the workload of {load.client} wrote a bad {out.name}: {error}") from None


def _request_row(base: dict, client: str, service: str, call: dict, t0: float) -> dict:
    """A row of requests.csv: a client's call (``parent_id`` '') or a hop below one."""

    def since_t0(at):
        return "" if at is None else round(at - t0, 6)

    def milliseconds(value):
        return "" if value is None else round(value, 3)

    return {
        **base,
        "trace_id": trace_of(call["call_id"]),
        "call_id": call["call_id"],
        "parent_id": parent_of(call["call_id"]),
        "client": client,
        "service": service,
        "intended_s": since_t0(call["intended"]),
        "sent_s": since_t0(call["sent"]),
        "latency_ms": milliseconds(call["latency_ms"]),
        "service_ms": milliseconds(call["service_ms"]),
        "ok": call["ok"],
        "served_by": call["served_by"],
        "error": call["error"],
    }


def _hop_rows(network, base: dict, traces: set[str], t0: float) -> list[dict]:
    """The calls the pods' services made below this repetition's calls (their hop logs)."""
    rows = []
    for path in sorted(network.run_dir.glob("hops-*.jsonl")):
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            try:
                hop = json.loads(line)
                if trace_of(hop["call_id"]) in traces:
                    rows.append(_request_row(base, hop["client"], hop["service"], hop, t0))
            except (ValueError, KeyError, TypeError) as error:  # a pod died mid-line
                log.warning("%s:%d: not a hop, left out: %s", path.name, number, error)
    return sorted(rows, key=lambda row: (row["intended_s"], row["call_id"]))


def probing_for_workload(variant):
    """The variant's SCSC options with, unless the file says otherwise, each client's SG
    probing the services its pods call (the draft's "services its pods use"), and nothing
    else: probes cost CPU, which the VM's software emulation does not have to spare."""
    options = variant.scsc
    if options is None or options.probe_services is not None:
        return options
    gateway_of = {pod.name: pod.gateway for pod in variant.topology.pods}
    services: dict[str, list[str]] = {}
    for load in variant.workload:
        wanted = services.setdefault(gateway_of[load.client], [])
        if load.service not in wanted:
            wanted.append(load.service)
    return replace(options, probe_services={sg: tuple(s) for sg, s in services.items()})


def _window_span_s(options) -> float:
    """How long until every SG's telemetry holds only probes sent from now on: a full window
    of probes, the last one's timeout, and the next telemetry report."""
    window = options.probe_window * options.probe_interval_ms + options.probe_timeout_ms
    return (window + options.telemetry_interval_ms) / 1000


def _wait_ready(outputs, timeout: float = CLIENT_READY_TIMEOUT_S) -> None:
    """Until every client said ``ready``: Python started, its modules imported, which takes
    seconds on the VM's one CPU. A client started on its own clock would lose the calls due
    meanwhile (the first 0.6-2 s under UML)."""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as waiting:
        for load, _, process in outputs:
            waiting.register(process.stdout, selectors.EVENT_READ, (load, process))
        while waiting.get_map():
            left = deadline - time.monotonic()
            ready = waiting.select(left) if left > 0 else []
            if not ready:
                names = ", ".join(key.data[0].client for key in waiting.get_map().values())
                raise DmscError(f"the workload of {names} not ready after {timeout:g} s")
            for key, _ in ready:
                load, process = key.data
                if process.stdout.readline().strip() != b"ready":
                    process.wait(5)
                    error = process.stderr.read().decode(errors="replace")[-500:]
                    raise DmscError(f"the workload of {load.client} did not start: {error}")
                waiting.unregister(key.fileobj)


def _start_clients(outputs) -> float:
    """t0, told to every client (ready, see :func:`_wait_ready`): their schedules start then."""
    t0 = time.time() + CLIENT_START_MARGIN_S
    for _, _, process in outputs:
        process.stdin.write(f"{t0!r}\n".encode())
        process.stdin.close()
    return t0


def _stop_workload(outputs) -> None:
    for _, _, process in outputs:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for stream in (process.stdin, process.stdout):  # stderr: read by _written_requests
            with contextlib.suppress(OSError):
                stream.close()


def _policy_change_rows(network, node: str, base: dict, t0: float, since: float) -> list[dict]:
    """The node's policy-change log from ``since`` on (Unix time): every add, modify and
    delete, with when the forwarder took it."""
    columns = ("change", "cookie", "ipv6_dst", "ipv6_src", "outputs")
    return [
        {**base, "time_s": round(change["time"] - t0, 6), "node": node,
         **{column: change[column] for column in columns}}
        for change in network.ask(node, "policy_changes")
        if change["time"] >= since
    ]  # fmt: skip


def _scsc_rows(path: Path, base: dict, t0: float, since: float, convert) -> list[dict]:
    """The rows of an SCSC log written from ``since`` on (Unix time)."""
    if not path.exists():
        return []
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        try:
            logged = json.loads(line)
            if logged["time"] >= since:
                rows.append({**base, **convert(logged, t0)})
        except (ValueError, KeyError, TypeError) as error:  # a line cut by a crash: say so
            log.warning("%s line %d skipped: %s", path.name, number, error)
    return rows


def _telemetry_row(sample: dict, t0: float) -> dict:
    return {"time_s": round(sample["time"] - t0, 6), **_copied(sample, "telemetry")}


def _decision_row(record: dict, t0: float) -> dict:
    return {"time_s": round(record["time"] - t0, 6), **_copied(record, "decisions")}


def _copied(logged: dict, table: str) -> dict:
    """The SCSC log's fields that the table has under the same name."""
    own = ("variant", "repetition", "time_s")
    return {column: logged.get(column) for column in TABLES[table] if column not in own}


def _target(event) -> str:
    if event.link:
        return "-".join(event.link)
    return event.node or event.service or ""


def _bandwidth(topology, link) -> float | None:
    for spec in topology.links:
        if {spec.a, spec.b} == set(link):
            return spec.bandwidth_mbps
    return None


def _variant_metadata(variant) -> dict:
    scsc = None if variant.scsc is None else asdict(variant.scsc)
    return {
        "topology": variant.topology_source,
        "scsc": scsc,
        "timers": asdict(variant.timers),
        "workload": [asdict(w) | {"bound": w.bound} for w in variant.workload],
        "calls": [asdict(plan) for plan in variant.calls],
        "timeline": [_event_metadata(e) for e in variant.timeline],
    }


def _event_metadata(event) -> dict:
    try:
        return asdict(event)
    except TypeError:
        return {"at_s": event.at_s, "action": event.action}
