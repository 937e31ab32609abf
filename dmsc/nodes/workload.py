"""The load generator, run inside a client pod: calls to a service on a schedule.

    python -m dmsc.nodes.workload /B --rate 20 --duration 40 --out requests.json
    python -m dmsc.nodes.workload /B --arrivals poisson --seed 7 --protocol udp ...
    python -m dmsc.nodes.workload /B --arrivals closed ...        # the old client, labelled

**Open loop** (``constant`` or seeded ``poisson`` arrivals, the default): each call is issued
at its *intended* time, whatever the replies do, with as many in flight as the schedule needs
up to ``--max-in-flight`` (a call due while that many are out is not sent, and is recorded as
lost with the error ``in-flight bound``). Latency is measured from the intended time, as wrk2
does, so a stall delays every call that a real client would have made meanwhile instead of
hiding them (coordinated omission); the time from the actual send is recorded too
(``service_ms``). A call that has not ended ``--timeout`` seconds after its intended time is
a loss.

**Closed loop** (``--arrivals closed``): one call at a time, the next one an interval after
the previous one was due or, if that has passed, at the next interval after it ended. Its
latency starts at the actual send. Kept to show what coordinated omission does to a result.

Each record: ``call_id`` (the trace; services it calls log the hops below it, see
:mod:`dmsc.nodes.calls`), ``intended``, ``sent`` (epoch seconds; null when not sent),
``latency_ms``, ``service_ms``, ``ok``, ``served_by``, ``error``. What was recorded is written
also when the run is cut short (SIGTERM).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from dmsc.names import name_address
from dmsc.nodes.calls import PROTOCOLS, Outcome, caller

ARRIVALS = ("constant", "poisson", "closed")
CONNECTIONS = ("keep-alive", "new")
BOUND_ERROR = "in-flight bound"

Call = Callable[[str, float], Outcome]  # (call id, seconds it may take) -> how it ended


def intended_times(
    arrivals: str, rate_hz: float, start: float, end: float, seed: int = 0
) -> Iterator[float]:
    """The open-loop schedule in [start, end): every 1/rate seconds, or Poisson arrivals
    (exponential gaps of mean 1/rate) drawn from ``seed``, the same for the same seed."""
    if arrivals == "constant":
        for k in range(math.ceil((end - start) * rate_hz)):
            yield start + k / rate_hz
    elif arrivals == "poisson":
        draw, at = random.Random(seed), start
        while (at := at + draw.expovariate(rate_hz)) < end:
            yield at
    else:
        raise ValueError(f"no open-loop schedule for arrivals {arrivals!r}")


def default_bound(rate_hz: float, timeout_s: float) -> int:
    """In flight when every call takes the whole timeout, and one more."""
    return math.ceil(rate_hz * timeout_s) + 1


@dataclass
class Counters:
    in_flight: int = 0
    most_in_flight: int = 0
    refused_at_bound: int = 0


def record(
    call_id: str, intended: float, sent: float | None, done: float, outcome: Outcome, timeout: float
) -> dict:
    late = done - intended > timeout
    return {
        "call_id": call_id,
        "intended": intended,
        "sent": sent,
        "latency_ms": (done - intended) * 1000,
        "service_ms": (done - sent) * 1000 if sent is not None else None,
        "ok": outcome.ok and not late,
        "served_by": outcome.served_by,
        "error": "Timeout" if late and outcome.ok else outcome.error,
    }


class OpenLoop:
    """Issues ``call`` at each of ``times`` from a pool of ``bound`` threads (a blocking
    client per thread keeps the replies from holding up the schedule)."""

    def __init__(
        self,
        call: Call,
        times: Iterator[float],
        timeout: float,
        bound: int,
        trace: str = "t",
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if bound < 1:
            raise ValueError(f"max in flight must be at least 1, got {bound}")
        self.call, self.times, self.timeout, self.bound = call, times, timeout, bound
        self.trace, self.clock, self.sleep = trace, clock, sleep
        self.counters = Counters()
        self._lock = threading.Lock()

    def run(self, records: list[dict]) -> list[dict]:
        """Until the schedule ends and every call has ended; appended to ``records`` as they
        end, so a caller that is interrupted keeps what was measured."""
        with ThreadPoolExecutor(self.bound, thread_name_prefix="call") as pool:
            for k, intended in enumerate(self.times):
                self.sleep(max(0.0, intended - self.clock()))
                call_id = f"{self.trace}{k}"
                if not self._take_slot():
                    now = self.clock()
                    records.append(
                        record(
                            call_id,
                            intended,
                            None,
                            now,
                            Outcome(False, "", BOUND_ERROR),
                            self.timeout,
                        )
                    )
                    continue
                pool.submit(self._one, call_id, intended, records)
        return records

    def _take_slot(self) -> bool:
        with self._lock:
            if self.counters.in_flight >= self.bound:
                self.counters.refused_at_bound += 1
                return False
            self.counters.in_flight += 1
            self.counters.most_in_flight = max(
                self.counters.most_in_flight, self.counters.in_flight
            )
            return True

    def _one(self, call_id: str, intended: float, records: list[dict]) -> None:
        try:
            sent = self.clock()
            left = self.timeout - (sent - intended)
            if left <= 0:  # its thread came too late: the deadline passed before it was sent
                records.append(
                    record(
                        call_id, intended, None, sent, Outcome(False, "", "Timeout"), self.timeout
                    )
                )
                return
            outcome = self.call(call_id, left)
            records.append(record(call_id, intended, sent, self.clock(), outcome, self.timeout))
        finally:
            with self._lock:
                self.counters.in_flight -= 1


class ClosedLoop:
    """One call at a time (the classic client, and its coordinated omission)."""

    def __init__(
        self,
        call: Call,
        interval: float,
        start: float,
        end: float,
        timeout: float,
        trace: str = "t",
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.call, self.interval, self.start, self.end = call, interval, start, end
        self.timeout, self.trace, self.clock, self.sleep = timeout, trace, clock, sleep
        self.counters = Counters()

    def run(self, records: list[dict]) -> list[dict]:
        slot, k = 0, 0  # slots counted, not summed: no drift from adding up intervals
        while (next_at := self.start + slot * self.interval) < self.end:
            self.sleep(max(0.0, next_at - self.clock()))
            sent = self.clock()
            self.counters.most_in_flight = 1
            outcome = self.call(f"{self.trace}{k}", self.timeout)
            done = self.clock()
            records.append(record(f"{self.trace}{k}", sent, sent, done, outcome, self.timeout))
            k += 1
            # the next slot, or the first one after a slow call: no burst to catch up
            slot = max(slot + 1, math.ceil((done - self.start) / self.interval))
        return records


def make_client(args: argparse.Namespace, call: Call, origin: float, now: float):
    """The client the arguments ask for, its schedule from ``origin`` (the run's start) over
    ``--duration``; the slots that passed before ``now`` (while the program started) are not
    made up for with a burst."""
    end = origin + args.duration
    if args.arrivals == "closed":
        return ClosedLoop(call, 1 / args.rate, max(origin, now), end, args.timeout, args.trace)
    bound = args.max_in_flight or default_bound(args.rate, args.timeout)
    schedule = intended_times(args.arrivals, args.rate, origin, end, args.seed)
    return OpenLoop(call, (t for t in schedule if t >= now), args.timeout, bound, args.trace)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dmsc.nodes.workload",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("target", help="service name (/B) or IPv6 address")
    parser.add_argument("--rate", type=_positive, default=10.0, help="calls a second")
    parser.add_argument("--arrivals", choices=ARRIVALS, default="constant")
    parser.add_argument("--duration", type=_positive, default=30.0, help="seconds")
    parser.add_argument("--timeout", type=_positive, default=1.0, help="seconds, from intended")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="http")
    parser.add_argument("--connection", choices=CONNECTIONS, default="keep-alive")
    parser.add_argument("--request-bytes", type=_size, default=0)
    parser.add_argument("--response-bytes", type=_size, default=0)
    parser.add_argument(
        "--max-in-flight", type=int, default=0, help="open loop: default rate x timeout + 1"
    )
    parser.add_argument("--seed", type=int, default=0, help="of the Poisson arrivals")
    parser.add_argument(
        "--start-at",
        type=float,
        default=0.0,
        help="epoch seconds the schedule starts at (default: now)",
    )
    parser.add_argument(
        "--start-on-stdin",
        action="store_true",
        help="once set up, print 'ready' and start at the epoch seconds then read from stdin "
        "(the runner starts every client first, so that none loses calls to its start-up)",
    )
    parser.add_argument("--trace", default="t", help="call ids are TRACE0, TRACE1, ...")
    parser.add_argument("--out", type=Path, required=True)
    return parser


def _positive(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number above 0")
    return value


def _size(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a size in bytes")
    return int(text)


def read_start_time() -> float:
    """Say ``ready`` on stdout, then read the start time (epoch seconds) from stdin."""
    print("ready", flush=True)
    line = sys.stdin.readline()
    try:
        start = float(line)
    except ValueError:
        raise SystemExit(f"workload: expected a start time on stdin, got {line[:40]!r}") from None
    if not math.isfinite(start):
        raise SystemExit(f"workload: the start time read from stdin is {start}")
    return start


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    address = str(name_address(args.target)) if args.target.startswith("/") else args.target
    target = caller(args.protocol, address, keep_alive=args.connection == "keep-alive")

    def call(call_id: str, timeout: float) -> Outcome:
        return target.call(call_id, timeout, args.request_bytes, args.response_bytes)

    records: list[dict] = []
    start = read_start_time() if args.start_on_stdin else args.start_at
    now = time.time()
    client = make_client(args, call, start or now, now)
    cpu_at_start = time.process_time()
    # SIGTERM (the runner stopping early) ends the run; what was measured is still written
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        client.run(records)
    finally:
        done = sorted(list(records), key=lambda r: r["intended"])
        stats = {
            "most_in_flight": client.counters.most_in_flight,
            "refused_at_bound": client.counters.refused_at_bound,
            "bound": getattr(client, "bound", 1),
            # its CPU from the start of its schedule: the runner's cpu.csv counts the clients
            "cpu_s": round(time.process_time() - cpu_at_start, 3),
        }
        args.out.write_text(json.dumps({"records": done, **stats}))
        target.close()
    failed = sum(not r["ok"] for r in done)
    print(
        f"{len(done)} calls, {failed} failed, at most {stats['most_in_flight']} in flight "
        f"(bound {stats['bound']}, {stats['refused_at_bound']} refused at it)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
