"""Python forwarder vs kernel IPv6 forwarding on one veth chain: throughput, packet rate, latency.

Run as root (it makes network namespaces, all deleted at the end, also on failure)::

    PYTHONPATH=. python -m benchmarks.bench_forwarder [--quick] [--json FILE] [--rounds N]

The chain is client -- fwd -- server (plus a direct client -- server link for the latency
baseline); offloads are off everywhere. Each round measures every variant in turn, so a noisy
machine disturbs all of them alike; the table shows the median over rounds and python/kernel.

- TCP: ``iperf3 -t T``, Gbit/s received.
- UDP: ``iperf3 -u -l 64 -b RATE``: packets per second received (and offered).
- Latency: ``ping -6 -i 0.01``; "added RTT" = RTT through fwd - median RTT over the direct link.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dmsc.dataplane import netutil
from dmsc.errors import DmscError

IPERF_PORT = 5299
PYTHON = sys.executable
REPO = Path(__file__).resolve().parents[1]
#: name -> forwarder options; "kernel" is kernel forwarding. python-socket: the naive loop.
VARIANTS: dict[str, dict | None] = {
    "kernel": None,
    "python": {"io": "ring", "spin_us": 0},
    "python-socket": {"io": "socket", "spin_us": 0},
    "python-spin": {"io": "ring", "spin_us": 200},  # busy-polls 200 us after each packet
}


class BenchmarkError(Exception):
    """A measurement could not be taken (a tool failed, the forwarder did not start)."""


@dataclass(frozen=True)
class Config:
    rounds: int
    tcp_seconds: float
    udp_seconds: float
    udp_rate: str
    pings: int
    ping_interval: float
    variants: tuple[str, ...]
    steer: bool = False  # receive packet steering on fwd's interfaces, for every variant


def config_for(
    quick: bool, rounds: int | None, variants: tuple[str, ...], steer: bool = False
) -> Config:
    if quick:
        return Config(rounds or 1, 2.0, 2.0, "1G", 100, 0.01, variants, steer)
    return Config(rounds or 3, 5.0, 3.0, "1G", 500, 0.01, variants, steer)


@dataclass
class Sample:
    tcp_gbps: float
    udp_offered_pps: float
    udp_received_pps: float
    rtt_ms: list[float]


@dataclass
class Result:
    config: Config
    direct_rtt_ms: list[float] = field(default_factory=list)
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    forwarder_stats: dict[str, dict] = field(default_factory=dict)


def _check(result: subprocess.CompletedProcess[str], what: str) -> str:
    if result.returncode != 0:
        raise BenchmarkError(f"{what} failed ({result.returncode}): {result.stderr.strip()[-400:]}")
    return result.stdout


def _iperf(spaces: netutil.Namespaces, chain: netutil.Chain, extra: list[str]) -> dict:
    """iperf3's JSON report; a failed test (server busy, control lost) is tried twice more."""
    argv = ["iperf3", "-c", chain.server_address, "-p", str(IPERF_PORT), "-J", *extra]
    error = ""
    for _ in range(3):
        result = spaces.exec(chain.client, argv, check=False)
        try:
            report = json.loads(result.stdout)
        except json.JSONDecodeError:
            report = {"error": result.stderr.strip()[-300:] or "no JSON output"}
        if "error" not in report:
            return report
        error = report["error"]
        time.sleep(1.0)
    raise BenchmarkError(f"iperf3 {' '.join(extra)}: {error}")


def measure_tcp(spaces: netutil.Namespaces, chain: netutil.Chain, seconds: float) -> float:
    report = _iperf(spaces, chain, ["-t", str(seconds)])
    return report["end"]["sum_received"]["bits_per_second"] / 1e9


def measure_udp(
    spaces: netutil.Namespaces, chain: netutil.Chain, seconds: float, rate: str
) -> tuple[float, float]:
    report = _iperf(spaces, chain, ["-u", "-l", "64", "-b", rate, "-t", str(seconds)])
    total = report["end"]["sum"]
    received = total["packets"] - max(total["lost_packets"], 0)
    return total["packets"] / total["seconds"], received / total["seconds"]


_TIME = re.compile(r"time=([0-9.]+) ms")


def measure_rtt(
    spaces: netutil.Namespaces, client: str, target: str, count: int, interval: float
) -> list[float]:
    argv = ["ping", "-6", "-n", "-c", str(count), "-i", str(interval), target]
    result = spaces.exec(client, argv, check=False)
    samples = [float(value) for value in _TIME.findall(result.stdout)]
    if not samples:  # exit status 1 only says some replies were lost
        raise BenchmarkError(f"ping {target}: no reply ({result.stderr.strip()[-300:]})")
    return samples


@contextlib.contextmanager
def running_forwarder(
    chain: netutil.Chain, options: dict, workdir: Path, steer: bool
) -> Iterator[subprocess.Popen]:
    """A Python forwarder in the chain's fwd namespace, stopped (SIGTERM, then kill) at exit."""
    config = workdir / "forwarder.json"
    config.write_text(json.dumps({**chain.forwarder_config(**options), "steer": steer}))
    stats = workdir / "stats.json"
    argv = netutil.netns_exec(
        chain.fwd,
        [PYTHON, "-m", "dmsc.dataplane.forwarder", "--config", str(config), "--stats", str(stats)],
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        if "ready" not in line:
            raise BenchmarkError(f"forwarder did not start: {process.stderr.read()[-800:]}")
        yield process
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def measure_variant(spaces: netutil.Namespaces, chain: netutil.Chain, config: Config) -> Sample:
    tcp = measure_tcp(spaces, chain, config.tcp_seconds)
    offered, received = measure_udp(spaces, chain, config.udp_seconds, config.udp_rate)
    rtt = measure_rtt(
        spaces, chain.client, chain.server_address, config.pings, config.ping_interval
    )
    return Sample(tcp, offered, received, rtt)


def run_round(
    spaces: netutil.Namespaces, chain: netutil.Chain, config: Config, result: Result, workdir: Path
) -> None:
    result.direct_rtt_ms += measure_rtt(
        spaces, chain.client, chain.direct_server, config.pings, config.ping_interval
    )
    for name in config.variants:
        options = VARIANTS[name]
        if options is None:
            chain.kernel_forwarding(spaces, True)
            try:
                sample = measure_variant(spaces, chain, config)
            finally:
                chain.kernel_forwarding(spaces, False)
        else:
            with running_forwarder(chain, options, workdir, config.steer):
                sample = measure_variant(spaces, chain, config)
            stats = workdir / "stats.json"
            if stats.exists():
                result.forwarder_stats[name] = json.loads(stats.read_text())
        result.samples.setdefault(name, []).append(sample)


def run(config: Config) -> Result:
    result = Result(config)
    with (
        netutil.Namespaces(f"dpbench{os.getpid()}") as spaces,
        tempfile.TemporaryDirectory(prefix="dmsc-bench-fwd-") as tmp,
    ):
        chain = netutil.build_chain(spaces)
        mask = netutil.cpu_mask() if config.steer else "0"
        for interface in ("f0", "f1"):
            spaces.exec(chain.fwd, netutil.rps_command(interface, mask))
        server = subprocess.Popen(
            netutil.netns_exec(chain.server, ["iperf3", "-s", "-p", str(IPERF_PORT)]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(0.3)  # iperf3 -s has no readiness signal; the client retries anyway
            measure_rtt(spaces, chain.client, chain.fwd_addresses[0], 2, 0.2)  # ND warm-up
            measure_rtt(spaces, chain.server, chain.fwd_addresses[1], 2, 0.2)
            for _ in range(config.rounds):
                run_round(spaces, chain, config, result, Path(tmp))
        finally:
            server.terminate()
            server.wait(10)
    return result


# --- report --------------------------------------------------------------------------------


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def summary(result: Result) -> dict[str, dict[str, float]]:
    """Per variant: medians over rounds; RTT added over the direct link, in microseconds."""
    direct = statistics.median(result.direct_rtt_ms)
    rows: dict[str, dict[str, float]] = {}
    for name, samples in result.samples.items():
        rtts = [value for sample in samples for value in sample.rtt_ms]
        rows[name] = {
            "tcp_gbps": statistics.median(s.tcp_gbps for s in samples),
            "udp_offered_pps": statistics.median(s.udp_offered_pps for s in samples),
            "udp_received_pps": statistics.median(s.udp_received_pps for s in samples),
            "rtt_median_us": statistics.median(rtts) * 1000,
            "added_rtt_median_us": (statistics.median(rtts) - direct) * 1000,
            "added_rtt_p99_us": (_percentile(rtts, 0.99) - direct) * 1000,
        }
    return rows


METRICS = (
    ("tcp_gbps", "TCP throughput, Gbit/s", "{:.3f}"),
    ("udp_offered_pps", "UDP 64 B offered, pkt/s", "{:,.0f}"),
    ("udp_received_pps", "UDP 64 B received, pkt/s", "{:,.0f}"),
    ("rtt_median_us", "RTT median, us", "{:.0f}"),
    ("added_rtt_median_us", "added RTT per hop, median, us", "{:.0f}"),
    ("added_rtt_p99_us", "added RTT per hop, p99, us", "{:.0f}"),
)


def format_report(result: Result) -> str:
    rows = summary(result)
    names = list(rows)
    direct = statistics.median(result.direct_rtt_ms) * 1000
    lines = [
        f"rounds {result.config.rounds}; TCP {result.config.tcp_seconds:g} s, UDP "
        f"{result.config.udp_seconds:g} s at {result.config.udp_rate}, {result.config.pings} pings "
        f"every {result.config.ping_interval * 1000:g} ms; direct-link RTT median {direct:.0f} us; "
        f"receive steering on fwd {'on' if result.config.steer else 'off'}",
        f"{'metric':32s}"
        + "".join(f"{name:>15s}" for name in names)
        + "".join(f"{name + '/kernel':>22s}" for name in names if name != "kernel"),
    ]
    for key, label, fmt in METRICS:
        line = f"{label:32s}" + "".join(f"{fmt.format(rows[n][key]):>15s}" for n in names)
        if "kernel" in rows and key in ("tcp_gbps", "udp_received_pps"):
            base = rows["kernel"][key]
            line += "".join(
                f"{rows[n][key] / base if base else float('nan'):>22.2f}"
                for n in names
                if n != "kernel"
            )
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round, 2 s tests, 100 pings")
    parser.add_argument("--json", type=Path, help="also write every sample as JSON")
    parser.add_argument("--rounds", type=int, help="rounds (default 3; 1 with --quick)")
    parser.add_argument(
        "--variants",
        default="kernel,python,python-socket",
        help="comma-separated, from: " + ",".join(VARIANTS),
    )
    parser.add_argument(
        "--steer", action="store_true", help="receive packet steering on fwd's interfaces"
    )
    args = parser.parse_args(argv)
    variants = tuple(args.variants.split(","))
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        print(f"unknown variant(s) {unknown}; have {list(VARIANTS)}", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("bench_forwarder needs root (network namespaces)", file=sys.stderr)
        return 2
    config = config_for(args.quick, args.rounds, variants, args.steer)
    try:
        result = run(config)
    except (BenchmarkError, DmscError) as error:
        print(f"bench_forwarder: {error}", file=sys.stderr)
        return 1
    print(format_report(result))
    if args.json:
        payload = {"config": asdict(config), "summary": summary(result), **asdict(result)}
        args.json.write_text(json.dumps(payload, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
