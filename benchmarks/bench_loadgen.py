"""The load generator's own limit: the highest rate it paces within 1 % of its schedule.

On loopback, against a pod's request/response service (dmsc.nodes.services, run in a process
of its own so that the client is measured, not the two sharing one interpreter), for HTTP
(keep-alive) and UDP:

- the **open-loop** client (dmsc.nodes.workload.OpenLoop) at a ladder of constant rates: for
  each, the achieved rate (calls answered per second of schedule), the send lag (actual send
  minus intended time: median and p99) and the calls lost. A rate is *paced* when at least
  99 % of the scheduled calls were answered in time and the p99 lag is under 1 % of a second
  (10 ms). The limit is the highest paced rate of the ladder;
- the **closed-loop** baseline in the same run: one call at a time, as fast as replies come
  (the most a single closed-loop client does), and the limit as a ratio of it.

    PYTHONPATH=. python -m benchmarks.bench_loadgen [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from dmsc.nodes import workload
from dmsc.nodes.calls import HttpCaller, UdpCaller
from dmsc.nodes.services import Answerer, HopLog, HttpService, UdpService

RATES = (100, 200, 500, 1000, 2000, 3000, 5000)
QUICK_RATES = (100, 500, 1000)
TIMEOUT_S = 0.5
PACED_SHARE = 0.99  # of the scheduled calls answered within the timeout
PACED_LAG_S = 0.010  # p99 of the send lag


@dataclass(frozen=True)
class Step:
    protocol: str
    rate_hz: float
    scheduled: int
    answered: int
    achieved_hz: float
    lag_p50_ms: float
    lag_p99_ms: float
    latency_p50_ms: float
    latency_p99_ms: float
    most_in_flight: int
    paced: bool


def serve(ready, stop) -> None:  # in its own process
    answerer = Answerer("bench", {}, (), HopLog(""))
    http, udp = HttpService(answerer, port=0), UdpService(answerer, port=0)
    stops = [http.start(), udp.start()]
    ready.send((http.port, udp.port))
    stop.wait()
    for each in stops:
        each()


def callers(ports: dict[str, int]):
    return {
        "http": HttpCaller("::1", keep_alive=True, port=ports["http"]),
        "udp": UdpCaller("::1", port=ports["udp"]),
    }


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))]


def open_loop_step(protocol: str, target, rate: float, seconds: float) -> Step:
    start = time.time() + 0.1
    times = workload.intended_times("constant", rate, start, start + seconds)
    bound = workload.default_bound(rate, TIMEOUT_S)
    client = workload.OpenLoop(target.call, times, TIMEOUT_S, bound)
    records = client.run([])
    answered = [r for r in records if r["ok"]]
    lags = [r["sent"] - r["intended"] for r in records if r["sent"] is not None] or [0.0]
    latencies = [r["latency_ms"] for r in answered] or [float("nan")]
    scheduled = round(rate * seconds)
    return Step(
        protocol=protocol,
        rate_hz=rate,
        scheduled=scheduled,
        answered=len(answered),
        achieved_hz=round(len(answered) / seconds, 1),
        lag_p50_ms=round(1000 * statistics.median(lags), 3),
        lag_p99_ms=round(1000 * quantile(lags, 0.99), 3),
        latency_p50_ms=round(statistics.median(latencies), 3),
        latency_p99_ms=round(quantile(latencies, 0.99), 3),
        most_in_flight=client.counters.most_in_flight,
        paced=len(answered) >= PACED_SHARE * scheduled and quantile(lags, 0.99) < PACED_LAG_S,
    )


def closed_loop_rate(target, seconds: float) -> float:
    """Calls a second of one closed-loop client that never waits between calls."""
    start = time.time()
    client = workload.ClosedLoop(target.call, 1e-9, start, start + seconds, TIMEOUT_S)
    records = client.run([])
    return round(sum(r["ok"] for r in records) / seconds, 1)


def run(quick: bool) -> dict:
    seconds = 2.0 if quick else 5.0
    context = multiprocessing.get_context("fork")
    receiving, sending = context.Pipe(duplex=False)
    stop = context.Event()
    server = context.Process(target=serve, args=(sending, stop), daemon=True)
    server.start()
    try:
        http_port, udp_port = receiving.recv()
        targets = callers({"http": http_port, "udp": udp_port})
        result: dict = {"seconds_per_step": seconds, "protocols": {}}
        for protocol, target in targets.items():
            baseline = closed_loop_rate(target, seconds)
            steps = []
            for rate in QUICK_RATES if quick else RATES:
                step = open_loop_step(protocol, target, rate, seconds)
                steps.append(step)
                print(f"{protocol:4} open loop {rate:6g}/s: answered {step.answered}/"
                      f"{step.scheduled}, lag p50 {step.lag_p50_ms:.2f} ms p99 "
                      f"{step.lag_p99_ms:.2f} ms, latency p50 {step.latency_p50_ms:.2f} ms, "
                      f"{step.most_in_flight} in flight at most: "
                      f"{'paced' if step.paced else 'NOT paced'}")  # fmt: skip
                if not step.paced and not quick:
                    break  # the ladder's next rungs are higher still
            paced = [s.rate_hz for s in steps if s.paced]
            limit = max(paced, default=0.0)
            result["protocols"][protocol] = {
                "closed_loop_hz": baseline,
                "open_loop_limit_hz": limit,
                "limit_over_closed_loop": round(limit / baseline, 3) if baseline else None,
                "steps": [asdict(s) for s in steps],
            }
            print(f"{protocol:4} closed loop, one client flat out: {baseline:g} calls/s; "
                  f"open-loop limit {limit:g}/s = {limit / baseline:.2f}x that\n")  # fmt: skip
            target.close()
        return result
    finally:
        stop.set()
        server.join(5)
        if server.is_alive():
            server.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="three rates, 2 s each")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    result = run(args.quick)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
