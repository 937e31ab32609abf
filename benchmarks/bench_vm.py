"""What the experiment VM costs: the cached image build, the boot, and how much slower the
forwarder benchmark runs under TCG than on the host, both measured in the same run.

Run as root (the forwarder benchmark makes network namespaces; the build needs root)::

    sudo .venv/bin/python -m benchmarks.bench_vm [--full] [--boots N] [--json FILE]

1. ``dmsc vm build`` with the image already cached: resolving the inputs (an ``apt-get
   update`` on a private state) and checking the cached image.
2. ``--boots`` runs of ``dmsc vm run -- true``: boot to ready (the guest's ``ready`` marker,
   when the command starts) and to the end (the VM powered off).
3. ``benchmarks/bench_forwarder.py --quick`` (``--full``: its default 3 rounds) on the host,
   then the same command in the VM through ``dmsc vm run``; a table of both and the slowdown,
   host/VM for rates and VM/host for times.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from dmsc.errors import DmscError

REPO = Path(__file__).resolve().parents[1]
VM_TIMEOUT_S = 3600
#: bench_forwarder metrics: (key, label, format, True if higher is better)
METRICS = (
    ("tcp_gbps", "TCP, Gbit/s", "{:.3f}", True),
    ("udp_received_pps", "UDP 64 B received, pkt/s", "{:,.0f}", True),
    ("rtt_median_us", "RTT median, us", "{:,.0f}", False),
    ("added_rtt_median_us", "added RTT per hop, us", "{:,.0f}", False),
)


class BenchError(Exception):
    """A step failed: its command's output says why."""


@dataclass(frozen=True)
class Row:
    variant: str
    label: str
    host: float
    vm: float
    slowdown: float  # how many times worse in the VM
    fmt: str


# --- pure: the slowdown table --------------------------------------------------------------


def slowdown(host: float, vm: float, higher_is_better: bool) -> float:
    """How many times worse in the VM; NaN when a figure is not positive (an added RTT
    below the noise of its baseline)."""
    if host <= 0 or vm <= 0:
        return float("nan")
    return host / vm if higher_is_better else vm / host


def slowdown_rows(host: Mapping[str, Mapping], vm: Mapping[str, Mapping]) -> list[Row]:
    """One row per variant and metric present in both summaries of bench_forwarder."""
    rows = []
    for variant in (v for v in host if v in vm):
        for key, label, fmt, higher in METRICS:
            a, b = host[variant][key], vm[variant][key]
            rows.append(Row(variant, label, a, b, slowdown(a, b, higher), fmt))
    return rows


def format_rows(rows: Sequence[Row]) -> str:
    lines = [f"{'variant':15s}{'metric':28s}{'host':>14s}{'VM (TCG)':>14s}{'slowdown':>10s}"]
    for row in rows:
        lines.append(
            f"{row.variant:15s}{row.label:28s}{row.fmt.format(row.host):>14s}"
            f"{row.fmt.format(row.vm):>14s}"
            + (f"{row.slowdown:>9.1f}x" if math.isfinite(row.slowdown) else f"{'n/a':>10s}")
        )
    return "\n".join(lines)


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


# --- I/O: the steps --------------------------------------------------------------------------


def _run(argv: Sequence[str], what: str, timeout: float = VM_TIMEOUT_S) -> float:
    """Run a command from the checkout; its wall-clock seconds. Output is kept for errors."""
    began = time.monotonic()
    proc = subprocess.run(
        list(argv), cwd=REPO, capture_output=True, text=True, timeout=timeout + 120
    )
    if proc.returncode != 0:
        raise BenchError(f"{what} failed ({proc.returncode}):\n{proc.stdout[-2000:]}"
                         f"{proc.stderr[-2000:]}")  # fmt: skip
    return time.monotonic() - began


def cached_build_seconds() -> float:
    return _run([sys.executable, "-m", "dmsc.cli.vm", "build"], "dmsc vm build")


def boot_seconds(boots: int) -> dict[str, list[float]]:
    """Boot to ready and to power-off, from the runner's own timing of the guest's markers."""
    from dmsc.vm import runner
    from dmsc.vm.image import find_image, lookup_cache_dirs, project_root

    image, ready, total = find_image(lookup_cache_dirs()), [], []
    for _ in range(boots):
        with tempfile.TemporaryDirectory(prefix="dmsc-bench-vm-") as results:
            options = runner.VmOptions(results=Path(results))
            result = runner.run(image, ["true"], options, checkout=project_root(),
                                timeout=600, out=sys.stderr)  # fmt: skip
        if result.status != 0 or result.ready_seconds is None:
            raise BenchError(f"dmsc vm run -- true: status {result.status} {result.reason}")
        ready.append(result.ready_seconds)
        total.append(result.seconds)
    return {"ready_s": ready, "total_s": total}


def forwarder_argv(full: bool, json_path: str) -> list[str]:
    return ["-m", "benchmarks.bench_forwarder", *([] if full else ["--quick"]), "--json",
            json_path]  # fmt: skip


def forwarder_on_host(full: bool, workdir: Path) -> tuple[dict, float]:
    out = workdir / "host.json"
    seconds = _run([sys.executable, *forwarder_argv(full, str(out))], "bench_forwarder (host)")
    return json.loads(out.read_text()), seconds


def forwarder_in_vm(full: bool, workdir: Path) -> tuple[dict, float]:
    results = workdir / "vm"
    argv = [sys.executable, "-m", "dmsc.cli.vm", "run", "--results", str(results),
            "--timeout", str(VM_TIMEOUT_S), "--", "python3",
            *forwarder_argv(full, "/results/forwarder.json")]  # fmt: skip
    seconds = _run(argv, "bench_forwarder (dmsc vm run)")
    return json.loads((results / "forwarder.json").read_text()), seconds


def measure(args: argparse.Namespace, workdir: Path) -> dict:
    report: dict = {"quick": not args.full}
    if not args.skip_build:
        report["build_cached_s"] = cached_build_seconds()
        print(f"dmsc vm build (cached): {report['build_cached_s']:.1f} s", flush=True)
    report["boot"] = boot_seconds(args.boots)
    print(f"boot to ready: {', '.join(f'{s:.1f}' for s in report['boot']['ready_s'])} s; "
          f"to power-off: {', '.join(f'{s:.1f}' for s in report['boot']['total_s'])} s",
          flush=True)  # fmt: skip
    host, report["host_wall_s"] = forwarder_on_host(args.full, workdir)
    print(f"bench_forwarder on the host: {report['host_wall_s']:.0f} s", flush=True)
    vm, report["vm_wall_s"] = forwarder_in_vm(args.full, workdir)
    print(f"bench_forwarder in the VM: {report['vm_wall_s']:.0f} s", flush=True)
    report["host"], report["vm"] = host["summary"], vm["summary"]
    report["rows"] = [asdict(row) for row in slowdown_rows(host["summary"], vm["summary"])]
    return report


def format_report(report: Mapping) -> str:
    boot = report["boot"]
    lines = [
        "",
        f"image build, cached: {report['build_cached_s']:.1f} s"
        if "build_cached_s" in report else "image build, cached: skipped",
        f"boot to ready: median {median(boot['ready_s']):.1f} s over {len(boot['ready_s'])}; "
        f"dmsc vm run -- true: median {median(boot['total_s']):.1f} s",
        f"bench_forwarder {'--quick' if report['quick'] else '(3 rounds)'}: host "
        f"{report['host_wall_s']:.0f} s, VM {report['vm_wall_s']:.0f} s wall clock",
        "",
        format_rows([Row(**row) for row in report["rows"]]),
    ]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="bench_forwarder without --quick")
    parser.add_argument("--boots", type=int, default=3, help="boots to time (default 3)")
    parser.add_argument("--skip-build", action="store_true", help="do not time `dmsc vm build`")
    parser.add_argument("--json", type=Path, help="also write every figure as JSON")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_vm needs root (network namespaces, the image build)", file=sys.stderr)
        return 2
    if args.boots < 1:
        parser.error("--boots must be at least 1")
    try:
        with tempfile.TemporaryDirectory(prefix="dmsc-bench-vm-") as tmp:
            report = measure(args, Path(tmp))
    except (BenchError, DmscError, subprocess.TimeoutExpired) as error:
        print(f"bench_vm: {error}", file=sys.stderr)
        return 1
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
