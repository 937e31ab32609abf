"""Checks that run inside the experiment VM: what the VM is for actually works there.

    python3 -m dmsc.vm.guest.selftest [--out FILE] [--only delay,loss,ovs,mininet]

- ``delay``: ``tc netem delay 50ms 10ms`` on one end of a veth pair between two network
  namespaces; 40 pings; the median, minimum and spread of the RTTs within stated tolerances.
- ``loss``: ``tc netem loss 20%``; 200 pings; the loss within a binomial tolerance.
- ``ovs``: the Open vSwitch kernel datapath: a bridge with ``datapath_type=system`` appears in
  ``ovs-dpctl show`` (needs ``dmsc vm run --with-ovs``).
- ``mininet``: ``mn --test pingall --link tc,delay=10ms``.

Writes a JSON report (``--out``) and exits 0 only if every check passed. The parsers and the
verdicts are pure functions, tested on the host; the namespaces are always removed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field

from dmsc.measurement.ping import parse_ping_counts

NS_A, NS_B = "dmsc-st-a", "dmsc-st-b"
IF_A, IF_B = "dmsc-st-va", "dmsc-st-vb"
ADDR_A, ADDR_B = "10.0.0.1", "10.0.0.2"
BRIDGE = "dmsc-st-br"

DELAY_MS, JITTER_MS, DELAY_PINGS = 50.0, 10.0, 40
#: Under TCG a ping across a veth pair costs up to a few ms more than the emulated delay.
TCG_OVERHEAD_MS = 4.0
#: Single samples can be late by much more when the emulated CPUs are descheduled.
SPIKE_MS = 25.0
LOSS, LOSS_PINGS, LOSS_SIGMAS = 0.20, 200, 4.0


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    measured: dict = field(default_factory=dict)
    commands: list[list[str]] = field(default_factory=list)


# --- pure: parsing and verdicts ----------------------------------------------------------


def parse_ping_rtts(output: str) -> list[float]:
    """The ``time=… ms`` of each reply in ping's output."""
    return [float(value) for value in re.findall(r"time=([\d.]+) ms", output)]


def delay_bounds(delay: float, jitter: float, count: int) -> dict[str, float]:
    """Accepted ranges for ``netem delay DELAY JITTER`` (uniform jitter) on one direction.

    The RTT is delay + U(-jitter, +jitter) + the path's own cost. The median of ``count``
    samples of a uniform distribution of width 2·jitter has a standard deviation of about
    2·jitter / (2·sqrt(count)) (1.6 ms for 10 ms and 40 pings): the median must lie within
    4 of them of the delay, plus the TCG overhead above. No sample can be faster than
    delay - jitter (1 ms slack); the spread between the 10th and 90th percentile is 80 % of
    2·jitter for a uniform jitter: at least half of that shows netem applied the jitter.
    """
    sd_median = 2 * jitter / (2 * math.sqrt(count))
    return {
        "median_min": delay - 4 * sd_median,
        "median_max": delay + 4 * sd_median + TCG_OVERHEAD_MS,
        "min_min": delay - jitter - 1.0,
        "spread_min": 0.4 * 2 * jitter,
        "max_max": delay + jitter + SPIKE_MS,
    }


def delay_verdict(rtts: Sequence[float], delay: float, jitter: float, sent: int) -> Check:
    bounds = delay_bounds(delay, jitter, sent)
    if len(rtts) < 0.95 * sent:
        return Check("delay", False, f"only {len(rtts)} of {sent} replies", {"rtts": list(rtts)})
    deciles = statistics.quantiles(rtts, n=10)
    measured = {
        "median": statistics.median(rtts), "min": min(rtts), "max": max(rtts),
        "spread_p10_p90": deciles[-1] - deciles[0], "samples": len(rtts), "rtts": list(rtts),
        "bounds": bounds,
    }  # fmt: skip
    problems = delay_problems(measured, bounds)
    summary = (
        f"median {measured['median']:.1f} ms, min {measured['min']:.1f}, max "
        f"{measured['max']:.1f}, p10-p90 {measured['spread_p10_p90']:.1f} over {len(rtts)}"
    )
    return Check("delay", not problems, "; ".join(problems) or summary, measured)


def delay_problems(measured: dict, bounds: dict) -> list[str]:
    problems = []
    if not bounds["median_min"] <= measured["median"] <= bounds["median_max"]:
        problems.append(
            f"median {measured['median']:.1f} ms not in "
            f"[{bounds['median_min']:.1f}, {bounds['median_max']:.1f}]"
        )
    if measured["min"] < bounds["min_min"]:
        problems.append(f"min {measured['min']:.1f} ms < {bounds['min_min']:.1f}")
    if measured["spread_p10_p90"] < bounds["spread_min"]:
        problems.append(
            f"p10-p90 spread {measured['spread_p10_p90']:.1f} ms < {bounds['spread_min']:.1f}"
        )
    if measured["max"] > bounds["max_max"]:
        problems.append(f"max {measured['max']:.1f} ms > {bounds['max_max']:.1f}")
    return problems


def binomial_bounds(count: int, probability: float, sigmas: float) -> tuple[float, float]:
    """Accepted range of the lost fraction: ``sigmas`` standard deviations of Binomial(n, p)."""
    sd = math.sqrt(probability * (1 - probability) / count)
    return max(0.0, probability - sigmas * sd), min(1.0, probability + sigmas * sd)


def loss_verdict(sent: int, received: int, probability: float, sigmas: float) -> Check:
    low, high = binomial_bounds(sent, probability, sigmas)
    lost = (sent - received) / sent if sent else 1.0
    ok = sent > 0 and low <= lost <= high
    detail = f"lost {sent - received} of {sent} ({lost:.1%}), accepted [{low:.1%}, {high:.1%}]"
    measured = {"sent": sent, "received": received, "lost_fraction": lost, "bounds": [low, high]}
    return Check("loss", ok, detail, measured)


def ovs_verdict(dpctl_output: str, bridge: str) -> Check:
    has_datapath = "system@ovs-system" in dpctl_output
    has_port = re.search(rf"port \d+: {re.escape(bridge)}\b", dpctl_output) is not None
    ok = has_datapath and has_port
    detail = "kernel datapath system@ovs-system with the bridge's port" if ok else (
        f"ovs-dpctl show lacks {'the datapath' if not has_datapath else 'the bridge port'}"
    )  # fmt: skip
    return Check("ovs", ok, detail, {"ovs_dpctl_show": dpctl_output})


def mininet_verdict(output: str, returncode: int) -> Check:
    match = re.search(r"Results: (\d+)% dropped \((\d+)/(\d+) received\)", output)
    ok = returncode == 0 and match is not None and match.group(1) == "0"
    detail = match.group(0) if match else f"no pingall result (exit status {returncode})"
    return Check("mininet", ok, detail, {"output_tail": output[-2000:]})


# --- I/O: namespaces, tc, ping -----------------------------------------------------------


class Shell:
    """Runs argument lists and records them (the report lists the exact commands)."""

    def __init__(self) -> None:
        self.commands: list[list[str]] = []

    def run(self, argv: Sequence[str], check: bool = True, timeout: float = 300) -> str:
        self.commands.append(list(argv))
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr}")
        return proc.stdout + proc.stderr

    def ns(self, namespace: str, argv: Sequence[str], check: bool = True) -> str:
        return self.run(["ip", "netns", "exec", namespace, *argv], check=check)


@contextlib.contextmanager
def veth_pair(shell: Shell) -> Iterator[None]:
    """Two namespaces joined by a veth pair, addressed, warmed up (ARP); always removed."""
    try:
        for namespace in (NS_A, NS_B):
            shell.run(["ip", "netns", "add", namespace])
        shell.run(["ip", "link", "add", IF_A, "netns", NS_A, "type", "veth",
                   "peer", "name", IF_B, "netns", NS_B])  # fmt: skip
        for namespace, interface, address in ((NS_A, IF_A, ADDR_A), (NS_B, IF_B, ADDR_B)):
            shell.ns(namespace, ["ip", "addr", "add", f"{address}/24", "dev", interface])
            shell.ns(namespace, ["ip", "link", "set", interface, "up"])
        shell.ns(NS_A, ["ping", "-n", "-c", "2", "-W", "5", ADDR_B])
        yield
    finally:
        for namespace in (NS_A, NS_B):
            shell.run(["ip", "netns", "delete", namespace], check=False)


def check_delay(shell: Shell) -> Check:
    with veth_pair(shell):
        shell.ns(NS_A, ["tc", "qdisc", "add", "dev", IF_A, "root", "netem",
                        "delay", f"{DELAY_MS:g}ms", f"{JITTER_MS:g}ms"])  # fmt: skip
        output = shell.ns(NS_A, ["ping", "-n", "-c", str(DELAY_PINGS), "-i", "0.1", "-W", "2",
                                 ADDR_B], check=False)  # fmt: skip
    return delay_verdict(parse_ping_rtts(output), DELAY_MS, JITTER_MS, DELAY_PINGS)


def check_loss(shell: Shell) -> Check:
    with veth_pair(shell):
        shell.ns(NS_A, ["tc", "qdisc", "add", "dev", IF_A, "root", "netem",
                        "loss", f"{LOSS:.0%}"])  # fmt: skip
        output = shell.ns(NS_A, ["ping", "-n", "-q", "-c", str(LOSS_PINGS), "-i", "0.01",
                                 "-W", "2", ADDR_B], check=False)  # fmt: skip
    sent, received = parse_ping_counts(output)
    return loss_verdict(sent, received, LOSS, LOSS_SIGMAS)


def check_ovs(shell: Shell) -> Check:
    try:
        shell.run(["ovs-vsctl", "--timeout=10", "add-br", BRIDGE, "--", "set", "bridge",
                   BRIDGE, "datapath_type=system"])  # fmt: skip
        return ovs_verdict(shell.run(["ovs-dpctl", "show"]), BRIDGE)
    finally:
        shell.run(["ovs-vsctl", "--timeout=10", "--if-exists", "del-br", BRIDGE], check=False)


def check_mininet(shell: Shell) -> Check:
    argv = ["mn", "--test", "pingall", "--link", "tc,delay=10ms"]
    shell.commands.append(argv)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    shell.run(["mn", "-c"], check=False)
    return mininet_verdict(proc.stdout + proc.stderr, proc.returncode)


CHECKS: dict[str, Callable[[Shell], Check]] = {
    "delay": check_delay,
    "loss": check_loss,
    "ovs": check_ovs,
    "mininet": check_mininet,
}


def run_checks(names: Sequence[str]) -> list[Check]:
    results = []
    for name in names:
        shell = Shell()
        began = time.monotonic()
        try:
            result = CHECKS[name](shell)
        except Exception as error:  # a failed command is a failed check, reported as such
            result = Check(name, False, f"{type(error).__name__}: {error}")
        result.commands = shell.commands
        result.measured["seconds"] = round(time.monotonic() - began, 2)
        results.append(result)
        print(f"{'PASS' if result.ok else 'FAIL'} {name}: {result.detail}", flush=True)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m dmsc.vm.guest.selftest")
    parser.add_argument("--out", help="write the JSON report here")
    parser.add_argument("--only", default=",".join(CHECKS), help="comma-separated checks")
    args = parser.parse_args(argv)
    names = [name for name in args.only.split(",") if name]
    unknown = [name for name in names if name not in CHECKS]
    if unknown:
        parser.error(f"unknown checks: {', '.join(unknown)} (known: {', '.join(CHECKS)})")
    results = run_checks(names)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as out:
            json.dump([asdict(result) for result in results], out, indent=2)
    return 0 if all(result.ok for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
