"""The load generator's pacing and the pods' request/response service, on loopback.

The pacing test is the coordinated-omission one: a server that stalls for 2 s. The open-loop
client keeps to its schedule and charges the stall to every call that was due during it; the
closed-loop client waits it out and so never makes (or measures) those calls.
"""

from __future__ import annotations

import http.client
import io
import itertools
import json
import logging
import socket
import struct
import sys
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dmsc.nodes import workload
from dmsc.nodes.calls import (
    MAX_BYTES,
    HttpCaller,
    Outcome,
    Request,
    UdpCaller,
    padding,
    parent_of,
    parse_http_request,
    parse_udp_request,
    trace_of,
    valid_call_id,
)
from dmsc.nodes.config import CallsConfig
from dmsc.nodes.services import Answerer, HopLog, HttpService, UdpService

RATE_HZ = 20.0
RUN_S = 4.0
STALL = (0.5, 2.5)  # seconds after the start: requests arriving then are held until its end


class StallingAnswerer(Answerer):
    """Holds every request that arrives inside STALL (after ``start``) until STALL ends."""

    def __init__(self, start: float) -> None:
        super().__init__("pod9", {}, (), HopLog(""))
        self.start = start

    def answer(self, local: str, request: Request) -> tuple[bool, dict]:
        arrived = time.time() - self.start
        if STALL[0] <= arrived < STALL[1]:
            time.sleep(STALL[1] - arrived)
        return super().answer(local, request)


@pytest.fixture
def stalling_server():
    start = time.time() + 0.3
    answerer = StallingAnswerer(start)
    service = HttpService(answerer, port=0)
    stop = service.start()
    try:
        yield start, service.port
    finally:
        stop()


def run_client(kind: str, start: float, port: int) -> tuple[list[dict], object]:
    target = HttpCaller("::1", keep_alive=True, port=port)

    def call(call_id: str, timeout: float) -> Outcome:
        return target.call(call_id, timeout)

    end = start + RUN_S
    if kind == "closed":
        client = workload.ClosedLoop(call, 1 / RATE_HZ, start, end, timeout=5.0)
    else:
        times = workload.intended_times("constant", RATE_HZ, start, end)
        client = workload.OpenLoop(call, times, 5.0, workload.default_bound(RATE_HZ, 5.0))
    try:
        return client.run([]), client
    finally:
        target.close()


def late_calls(records: list[dict], start: float) -> list[dict]:
    """Calls due inside the stall."""
    return [r for r in records if STALL[0] <= r["intended"] - start < STALL[1] - 0.1]


def test_open_loop_keeps_its_schedule_through_a_stall_and_charges_it_to_every_call(
    stalling_server,
):
    start, port = stalling_server
    records, client = run_client("open", start, port)
    scheduled = int(RUN_S * RATE_HZ)
    assert len(records) == scheduled and all(r["ok"] for r in records)
    lags = sorted(r["sent"] - r["intended"] for r in records)
    assert lags[int(0.95 * len(lags))] < 0.05, "calls left on time, stall or not"
    due_in_stall = late_calls(records, start)
    assert len(due_in_stall) >= 0.9 * (STALL[1] - 0.1 - STALL[0]) * RATE_HZ
    for call in due_in_stall:  # latency from the intended time: until the stall ended
        waited = STALL[1] - (call["intended"] - start)
        assert call["latency_ms"] >= (waited - 0.05) * 1000
    assert client.counters.most_in_flight >= 30  # the stall's calls were all out at once
    assert client.counters.refused_at_bound == 0


def test_closed_loop_waits_out_the_stall_and_measures_it_once(stalling_server):
    start, port = stalling_server
    closed, _ = run_client("closed", start, port)
    assert all(r["sent"] == r["intended"] for r in closed)  # no schedule to be late for
    slow = [r for r in closed if r["latency_ms"] > 1000]
    assert len(slow) == 1, "one call saw the stall; the ones it held up were never made"
    # the calls the stall held up are missing: about 2 s of 20/s
    assert len(closed) <= RUN_S * RATE_HZ - 0.8 * (STALL[1] - STALL[0]) * RATE_HZ
    assert late_calls(closed, start) == [slow[0]]


def test_a_call_due_while_the_bound_is_out_is_a_loss_and_counted(stalling_server):
    start, port = stalling_server
    target = HttpCaller("::1", port=port)
    times = workload.intended_times("constant", RATE_HZ, start, start + 1.5)
    client = workload.OpenLoop(lambda c, t: target.call(c, t), times, 5.0, bound=3)
    records = client.run([])
    target.close()
    refused = [r for r in records if r["error"] == workload.BOUND_ERROR]
    assert refused and client.counters.refused_at_bound == len(refused)
    assert all(not r["ok"] and r["sent"] is None for r in refused)
    assert client.counters.most_in_flight == 3
    assert len(records) == 30


def test_a_call_that_ends_after_its_timeout_from_the_intended_time_is_a_loss():
    clock = iter([10.0, 10.4]).__next__  # sent at its intended time, ended 0.4 s later
    client = workload.OpenLoop(lambda c, t: Outcome(True, "pod1"), iter(()), 0.3, 1, clock=clock)
    records: list[dict] = []
    client._take_slot()
    client._one("t0", 10.0, records)
    assert records[0]["ok"] is False and records[0]["error"] == "Timeout"
    assert records[0]["latency_ms"] == pytest.approx(400)


def test_the_open_loop_schedules_are_what_they_claim():
    constant = list(workload.intended_times("constant", 20, 100.0, 110.0))
    assert len(constant) == 200 and constant[1] - constant[0] == pytest.approx(0.05)
    poisson = list(workload.intended_times("poisson", 100, 0.0, 100.0, seed=3))
    assert poisson == list(workload.intended_times("poisson", 100, 0.0, 100.0, seed=3))
    assert poisson != list(workload.intended_times("poisson", 100, 0.0, 100.0, seed=4))
    assert abs(len(poisson) - 10_000) < 4 * 100  # four standard deviations of a Poisson count
    gaps = [b - a for a, b in itertools.pairwise(poisson)]
    assert sum(g > 0.02 for g in gaps) / len(gaps) == pytest.approx(0.135, abs=0.02)  # e^-2


def test_the_command_line_refuses_bad_numbers_by_name(capsys):
    for bad in (["--rate", "0"], ["--rate", "nan"], ["--request-bytes", "-1"]):
        with pytest.raises(SystemExit):
            workload.parser().parse_args(["/B", "--out", "x", *bad])
        assert bad[0] in capsys.readouterr().err


def run_program(argv: list[str]) -> int:
    """workload.main against a local HTTP service (the caller's port patched to its own)."""
    service = HttpService(Answerer("pod7", {}, (), HopLog("")), port=0)
    stop = service.start()
    original = HttpCaller.__init__

    def on_port(self, address, keep_alive=True, port=80):
        original(self, address, keep_alive, service.port)

    HttpCaller.__init__ = on_port
    try:
        return workload.main(["127.0.0.1", *argv])
    finally:
        HttpCaller.__init__ = original
        stop()


def test_the_program_writes_its_records_and_its_bound(tmp_path):
    out = tmp_path / "requests.json"
    assert run_program(["--rate", "50", "--duration", "0.5", "--out", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written["bound"] == workload.default_bound(50, 1.0)
    assert len(written["records"]) == 25
    assert {r["served_by"] for r in written["records"]} == {"pod7"}
    assert [r["call_id"] for r in written["records"]] == [f"t{k}" for k in range(25)]
    assert 0 <= written["cpu_s"] < 30


def test_started_on_stdin_it_says_ready_and_keeps_every_call_of_its_schedule(
    tmp_path, monkeypatch, capsys
):
    start = time.time() + 0.3  # after the program is set up: no slot passes unmade
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{start!r}\n"))
    out = tmp_path / "requests.json"
    argv = ["--rate", "50", "--duration", "0.5", "--start-on-stdin", "--out", str(out)]
    assert run_program(argv) == 0
    assert capsys.readouterr().out.startswith("ready\n")
    records = json.loads(out.read_text())["records"]
    assert len(records) == 25 and min(r["intended"] for r in records) == pytest.approx(start)


@pytest.mark.parametrize("line", ["", "soon\n", "nan\n"])
def test_a_start_time_that_is_not_one_ends_the_program_with_what_it_read(
    tmp_path, monkeypatch, line
):
    monkeypatch.setattr(sys, "stdin", io.StringIO(line))
    with pytest.raises(SystemExit, match="start time"):
        run_program(["--start-on-stdin", "--out", str(tmp_path / "r.json")])


# ---------------------------------------------------------------- the service side


def test_the_udp_service_answers_from_the_address_asked_with_the_size_asked(tmp_path):
    answerer = Answerer("pod3", {"::1": "/C/3"}, (), HopLog(""))
    service = UdpService(answerer, port=0)
    stop = service.start()
    try:
        outcome = UdpCaller("::1", port=service.port).call("t1", 2.0, 300, 500)
        assert outcome == Outcome(True, "pod3")
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2)
            sock.connect(("::1", service.port))
            sock.send(json.dumps({"call": "t2", "bytes": 700}).encode())
            reply = sock.recv(4096)
            assert len(reply) == 700 and json.loads(reply)["address"] == "::1"
            sock.send(b"\xff not json")  # dropped, and the service carries on
            sock.send(json.dumps({"call": "t3"}).encode())
            assert json.loads(sock.recv(4096))["pod"] == "pod3"
        assert service.dropped == 1
    finally:
        stop()


def test_the_http_service_refuses_bad_sizes_with_400_and_keeps_serving():
    answerer = Answerer("pod3", {}, (), HopLog(""))
    service = HttpService(answerer, port=0)
    stop = service.start()
    try:
        connection = http.client.HTTPConnection("::1", service.port, timeout=2)
        connection.request("GET", f"/?bytes={MAX_BYTES + 1}")
        reply = connection.getresponse()
        assert reply.status == 400 and b"bytes" in reply.read()
        connection.close()
        good = HttpCaller("::1", port=service.port)
        assert good.call("t1", 2.0, request_bytes=2000, response_bytes=3000).ok
        assert good.call("t2", 2.0).ok  # the same connection, kept alive
        assert len(good._connections) == 1
        good.close()
    finally:
        stop()


def test_a_caller_that_hangs_up_costs_one_log_line_and_no_traceback(capfd, caplog):
    caplog.set_level(logging.DEBUG, logger="dmsc.nodes.services")
    service = HttpService(Answerer("pod3", {}, (), HopLog("")), port=0)
    stop = service.start()
    try:
        rude = socket.create_connection(("::1", service.port))
        rude.sendall(f"GET /?bytes={MAX_BYTES} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        rude.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        rude.close()  # a reset, as a caller that timed out or was rerouted leaves
        deadline = time.monotonic() + 5.0
        while not any("ended by the caller" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "the service never saw the caller hang up"
            time.sleep(0.02)
        assert HttpCaller("::1", port=service.port).call("t1", 2.0).ok  # still serving
    finally:
        stop()
    assert "Traceback" not in capfd.readouterr().err


def test_a_service_with_calls_logs_each_as_a_hop_of_the_trace(tmp_path, monkeypatch):
    made = []

    def fake_call(self, call_id, timeout, request_bytes=0, response_bytes=0):
        made.append((self.address, call_id))
        return Outcome(not self.address.endswith("::bad"), "pod4", "")

    monkeypatch.setattr(HttpCaller, "call", fake_call)
    monkeypatch.setattr("dmsc.nodes.services.name_address", lambda name: f"fd00::{name[1]}")
    hops = HopLog(str(tmp_path / "hops.jsonl"))
    plan = CallsConfig("/A", ("/B", "/C"), parallel=False, timeout_ms=500)
    answerer = Answerer("pod1", {"fd00::a1": "/A/1", "fd00::c": "/C"}, (plan,), hops)
    ok, reply = answerer.answer("fd00::a1", Request("r0-7", 0))  # /A/1 is under /A
    assert ok and reply["called"] == ["pod4", "pod4"]
    assert made == [("fd00::B", "r0-7.0"), ("fd00::C", "r0-7.1")]
    assert answerer.answer("fd00::c", Request("r0-8", 0)) == (
        True,
        {"pod": "pod1", "address": "fd00::c"},
    )  # /C has no calls
    hops.close()
    logged = [json.loads(line) for line in (tmp_path / "hops.jsonl").read_text().splitlines()]
    assert [h["call_id"] for h in logged] == ["r0-7.0", "r0-7.1"]
    assert {h["client"] for h in logged} == {"pod1"} and logged[0]["service"] == "/B"
    assert trace_of(logged[1]["call_id"]) == "r0-7" and parent_of(logged[1]["call_id"]) == "r0-7"


def test_a_failed_call_fails_the_answer_and_untraced_requests_log_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(HttpCaller, "call", lambda *a, **k: Outcome(False, "", "Timeout"))
    monkeypatch.setattr("dmsc.nodes.services.name_address", lambda name: "fd00::1")
    hops = HopLog(str(tmp_path / "hops.jsonl"))
    plan = CallsConfig("/A", ("/B", "/C"), parallel=True)
    answerer = Answerer("pod1", {"fd00::a": "/A"}, (plan,), hops)
    ok, reply = answerer.answer("fd00::a", Request("", 0))
    assert not ok and reply["error"] == "/B: Timeout; /C: Timeout"
    hops.close()
    assert (tmp_path / "hops.jsonl").read_text() == ""


def test_call_ids_sizes_and_padding():
    assert valid_call_id("r1-c0-17.0.3") == "r1-c0-17.0.3"
    for bad in ("", "a" * 49, "x\ny", "../etc", "t.1." + ".1" * 20, None):
        assert valid_call_id(bad) == ""
    assert parse_http_request("/?bytes=10", "t1", "5") == Request("t1", 10)
    for path, length in (("/?bytes=-1", "0"), ("/?bytes=1e3", "0"), ("/", str(MAX_BYTES + 1))):
        with pytest.raises(ValueError, match=r"bytes|Content-Length"):
            parse_http_request(path, None, length)
    for size in (0, 60, 1000):
        padded = json.dumps(padding({"pod": "pod1", "address": "fd00::1"}, size)).encode()
        assert len(padded) == max(size, len(padded)) and (size < 60 or len(padded) == size)


def test_json_nested_too_deep_is_a_value_error_not_a_crash():
    with pytest.raises(ValueError, match="nested too deep"):
        parse_udp_request(b"[" * 1100)


@given(st.binary(max_size=1500))
def test_any_datagram_is_a_request_or_a_value_error(data):
    try:
        request = parse_udp_request(data)
    except ValueError:
        return
    assert request.call_id == "" or valid_call_id(request.call_id)
    assert 0 <= request.response_bytes <= 1200


def test_closed_loop_and_open_loop_agree_on_a_server_that_never_stalls():
    """The baseline for the stall tests: without a stall both make every scheduled call."""
    answerer = Answerer("pod5", {}, (), HopLog(""))
    service = HttpService(answerer, port=0)
    stop = service.start()
    try:
        start = time.time() + 0.2
        opened, _ = run_client("open", start, service.port)
        closed, _ = run_client("closed", time.time() + 0.2, service.port)
    finally:
        stop()
    assert len(opened) == len(closed) == int(RUN_S * RATE_HZ)
    assert threading.active_count() < 50  # the pool's threads ended with the run
