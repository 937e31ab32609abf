"""What the experiment VM costs, per backend (User-Mode Linux, qemu), side by side in one run:
the cached image build, the boot, the forwarder benchmark against the host, the VM's own delay
and jitter through three Python forwarders and netem's accuracy there, and (``--main-job``)
the main job's duration.

Run as root (the forwarder benchmark makes network namespaces; the build needs root)::

    sudo .venv/bin/python -m benchmarks.bench_vm [--backends uml,qemu] [--full] [--boots N]
                                                 [--main-job] [--json FILE]

1. ``dmsc vm build`` with the image already cached: resolving the inputs (an ``apt-get
   update`` on a private state) and checking the cached image.
2. Per backend, ``--boots`` runs of ``dmsc vm run -- true``: boot to ready (the guest's
   ``ready`` marker, when the command starts) and to the end (the VM powered off).
3. ``benchmarks/bench_forwarder.py --quick`` (``--full``: its default 3 rounds) on the host,
   then the same command in each backend; a table of all and the slowdown against the host,
   host/VM for rates and VM/host for times.
4. Per backend, ``dmsc.vm.guest.forwarded_netem`` (the VM test of netem through the
   forwarders of sg1 - sr1 - sg2): the path's round trip with no impairment (the VM's noise
   floor), and netem's delay, jitter and loss as configured against as measured there.
5. ``--main-job``: per backend, ``./testbed main --quick``'s experiment in the VM, timed.
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


def format_rows(rows: Sequence[Row], backend: str = "VM") -> str:
    lines = [f"{'variant':15s}{'metric':28s}{'host':>14s}{backend:>14s}{'slowdown':>10s}"]
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


def boot_seconds(boots: int, backend: str) -> dict[str, list[float]]:
    """Boot to ready and to power-off, from the runner's own timing of the guest's markers."""
    from dmsc.vm import runner
    from dmsc.vm.image import find_image, lookup_cache_dirs, project_root

    image, ready, total = find_image(lookup_cache_dirs()), [], []
    for _ in range(boots):
        with tempfile.TemporaryDirectory(prefix="dmsc-bench-vm-") as results:
            options = runner.VmOptions(results=Path(results), backend=backend)
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


def in_vm(backend: str, results: Path, command: Sequence[str], what: str) -> float:
    """``dmsc vm run --backend BACKEND -- COMMAND``; its wall-clock seconds."""
    argv = [sys.executable, "-m", "dmsc.cli.vm", "run", "--backend", backend, "--results",
            str(results), "--timeout", str(VM_TIMEOUT_S), "--", *command]  # fmt: skip
    return _run(argv, f"{what} (dmsc vm run --backend {backend})")


def forwarder_in_vm(full: bool, workdir: Path, backend: str) -> tuple[dict, float]:
    results = workdir / f"forwarder-{backend}"
    command = ["python3", *forwarder_argv(full, "/results/forwarder.json")]
    seconds = in_vm(backend, results, command, "bench_forwarder")
    return json.loads((results / "forwarder.json").read_text()), seconds


def forwarded_netem_in_vm(workdir: Path, backend: str) -> tuple[dict, float]:
    results = workdir / f"netem-{backend}"
    command = ["python3", "-m", "dmsc.vm.guest.forwarded_netem", "--out",
               "/results/forwarded-netem.json"]  # fmt: skip
    seconds = in_vm(backend, results, command, "forwarded_netem")
    return json.loads((results / "forwarded-netem.json").read_text()), seconds


def main_job_in_vm(workdir: Path, backend: str) -> float:
    results = workdir / f"main-{backend}"
    command = ["python3", "-m", "dmsc", "run", "experiments/delay-reroute.yaml", "--quick",
               "--results", "/results", "--quiet"]  # fmt: skip
    return in_vm(backend, results, command, "the main job")


def netem_accuracy(report: Mapping) -> dict:
    """From a forwarded_netem report: the path's own RTT (no impairment) and netem's delay,
    jitter and loss as configured against as measured through the forwarders."""
    import pandas as pd

    from dmsc.experiments.stats import percentiles  # nearest rank, as every report's
    from dmsc.vm.guest.forwarded_netem import median_rise

    samples = {name: [rtt for rnd in phase["rounds"] for rtt in rnd]
               for name, phase in report["samples"].items()}  # fmt: skip
    quantiles = {name: percentiles(pd.Series(rtts, dtype=float), {q: q for q in (10, 50, 90, 99)})
                 for name, rtts in samples.items()}  # fmt: skip
    spread = {name: q[90] - q[10] for name, q in quantiles.items()}  # p10-p90
    parameters = report["parameters"]
    loss = next(check for check in report["checks"] if check["name"] == "loss")["measured"]
    return {
        "base_rtt_ms": {q: quantiles["base"][q] for q in (50, 90, 99)},
        "base_spread_ms": spread["base"],
        "delay_ms": parameters["delay_ms"],
        "delay_rise_ms": median_rise(samples["base"], samples["delay"]),
        "jitter_ms": parameters["jitter_ms"],
        # the jitter phase's p10-p90 against the delay phase's: uniform +-J widens it by ~1.6 J
        "jitter_spread_ms": spread["jitter"] - spread["delay"],
        "loss": parameters["loss"],
        "loss_measured": 1 - loss["received"] / loss["sent"] if loss.get("sent") else float("nan"),
        "ok": all(check["ok"] for check in report["checks"]),
        "started_s": report["seconds"].get("started"),
    }


def measure_backend(args: argparse.Namespace, workdir: Path, backend: str) -> dict:
    result: dict = {"boot": boot_seconds(args.boots, backend)}
    boot = result["boot"]
    print(f"[{backend}] boot to ready: {', '.join(f'{s:.1f}' for s in boot['ready_s'])} s; "
          f"to power-off: {', '.join(f'{s:.1f}' for s in boot['total_s'])} s",
          flush=True)  # fmt: skip
    vm, result["forwarder_wall_s"] = forwarder_in_vm(args.full, workdir, backend)
    result["summary"] = vm["summary"]
    print(f"[{backend}] bench_forwarder: {result['forwarder_wall_s']:.0f} s", flush=True)
    netem, result["netem_wall_s"] = forwarded_netem_in_vm(workdir, backend)
    result["netem"] = netem_accuracy(netem)
    print(f"[{backend}] forwarded_netem: {result['netem_wall_s']:.0f} s", flush=True)
    if args.main_job:
        result["main_job_s"] = main_job_in_vm(workdir, backend)
        print(f"[{backend}] main job (--quick): {result['main_job_s']:.0f} s", flush=True)
    return result


def measure(args: argparse.Namespace, workdir: Path) -> dict:
    report: dict = {"quick": not args.full, "backends": {}}
    if not args.skip_build:
        report["build_cached_s"] = cached_build_seconds()
        print(f"dmsc vm build (cached): {report['build_cached_s']:.1f} s", flush=True)
    host, report["host_wall_s"] = forwarder_on_host(args.full, workdir)
    report["host"] = host["summary"]
    print(f"bench_forwarder on the host: {report['host_wall_s']:.0f} s", flush=True)
    for backend in args.backends:
        result = report["backends"][backend] = measure_backend(args, workdir, backend)
        result["rows"] = [asdict(row) for row in slowdown_rows(host["summary"], result["summary"])]
    return report


def format_report(report: Mapping) -> str:
    backends = report["backends"]
    lines = [
        "",
        f"image build, cached: {report['build_cached_s']:.1f} s"
        if "build_cached_s" in report else "image build, cached: skipped",
        f"bench_forwarder {'--quick' if report['quick'] else '(3 rounds)'}, host: "
        f"{report['host_wall_s']:.0f} s wall clock",
    ]  # fmt: skip
    for name, result in backends.items():
        boot = result["boot"]
        lines += [
            "",
            f"== {name} ==",
            f"boot to ready: median {median(boot['ready_s']):.1f} s over "
            f"{len(boot['ready_s'])}; dmsc vm run -- true: median {median(boot['total_s']):.1f} s",
            f"bench_forwarder: {result['forwarder_wall_s']:.0f} s wall clock"
            + (f"; main job (--quick): {result['main_job_s']:.0f} s" if "main_job_s" in result
               else ""),
            format_rows([Row(**row) for row in result["rows"]], name),
        ]  # fmt: skip
    lines += ["", format_netem({name: result["netem"] for name, result in backends.items()})]
    return "\n".join(lines)


def format_netem(accuracy: Mapping[str, Mapping]) -> str:
    """The noise floor and netem's accuracy through sg1 - sr1 - sg2, a column per backend."""
    names = list(accuracy)
    rows = [
        ("network started, s", lambda a: f"{a['started_s']:.1f}"),
        ("RTT, no impairment, p50 ms", lambda a: f"{a['base_rtt_ms'][50]:.2f}"),
        ("RTT, no impairment, p90 ms", lambda a: f"{a['base_rtt_ms'][90]:.2f}"),
        ("RTT, no impairment, p99 ms", lambda a: f"{a['base_rtt_ms'][99]:.2f}"),
        ("RTT spread p10-p90, ms", lambda a: f"{a['base_spread_ms']:.2f}"),
        ("delay: configured, ms", lambda a: f"{a['delay_ms']:g}"),
        ("delay: median rise, ms", lambda a: f"{a['delay_rise_ms']:.2f}"),
        ("jitter: configured +-ms", lambda a: f"{a['jitter_ms']:g}"),
        ("jitter: p10-p90 widening, ms", lambda a: f"{a['jitter_spread_ms']:.2f}"),
        ("loss: configured", lambda a: f"{a['loss']:.1%}"),
        ("loss: measured", lambda a: f"{a['loss_measured']:.1%}"),
        ("every check passed", lambda a: "yes" if a["ok"] else "NO"),
    ]
    lines = ["noise floor and netem accuracy (forwarded_netem, sg1 - sr1 - sg2, both ways)",
             f"{'':32s}" + "".join(f"{name:>12s}" for name in names)]  # fmt: skip
    for label, cell in rows:
        lines.append(f"{label:32s}" + "".join(f"{cell(accuracy[name]):>12s}" for name in names))
    return "\n".join(lines)


def backend_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in ("uml", "qemu")]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"backends are uml and qemu, got {text!r}")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="bench_forwarder without --quick")
    parser.add_argument("--boots", type=int, default=3, help="boots to time (default 3)")
    parser.add_argument("--skip-build", action="store_true", help="do not time `dmsc vm build`")
    parser.add_argument("--json", type=Path, help="also write every figure as JSON")
    parser.add_argument(
        "--backends",
        default="uml,qemu",
        type=backend_list,
        help="comma-separated, measured in this order (default: uml,qemu)",
    )
    parser.add_argument(
        "--main-job",
        action="store_true",
        help="also time the main job (--quick) per backend (~5-20 min each)",
    )
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
