"""``dmsc vm``: build the experiment VM image, run a command or an experiment in it, or a shell."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dmsc.errors import DmscError
from dmsc.vm import VmError, runner
from dmsc.vm import image as vm_image


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "vm",
        help="the experiment VM (netem, Open vSwitch): build, run, shell",
        description="The experiment VM: a Debian bookworm root file system booted with "
        "User-Mode Linux (a kernel as a host process) or with Debian's kernel under qemu; both "
        "have sch_netem and openvswitch. Build it once (as root), then run commands or "
        "experiments in it.",
    )
    commands = parser.add_subparsers(dest="vm_command", required=True, metavar="VM_COMMAND")
    _add_build(commands)
    _add_run(commands)
    _add_shell(commands)
    _add_info(commands)


def _add_build(commands) -> None:
    parser = commands.add_parser(
        "build",
        help="build the image (as root), or reuse the cached one",
        description="Build the image unless the cache has one for the same inputs (package "
        "list, guest files, kernel package version, the project's dependencies).",
    )
    parser.add_argument("--cache", type=Path, help="cache folder (default: $DMSC_VM_CACHE, "
                        "/var/cache/dmsc-vm for root, ~/.cache/dmsc/vm)")  # fmt: skip
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")
    parser.add_argument("--mirror", default=vm_image.DEFAULT_MIRROR, help="Debian mirror "
                        "(e.g. a snapshot.debian.org archive URL)")  # fmt: skip
    parser.add_argument("--security-mirror", default=vm_image.DEFAULT_SECURITY_MIRROR)
    parser.set_defaults(func=run_build)


def _add_vm_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache", type=Path, help="image cache folder to use")
    parser.add_argument(
        "--results",
        type=Path,
        default=Path("results"),
        help="host folder mounted at /results in the VM (default: ./results)",
    )
    parser.add_argument(
        "--with-ovs",
        action="store_true",
        help="start Open vSwitch in the VM and wait until it is ready",
    )
    parser.add_argument(
        "--memory",
        type=int,
        default=runner.DEFAULT_MEMORY_MIB,
        metavar="MIB",
        help="guest memory (default: %(default)s MiB)",
    )
    parser.add_argument(
        "--backend",
        choices=runner.BACKENDS,
        default="auto",
        help="uml: User-Mode Linux, a kernel as a host process (one CPU); qemu: Debian's kernel "
        "under qemu (--accel); auto (default): uml if installed, else qemu",
    )
    parser.add_argument(
        "--cpus", type=int, default=runner.DEFAULT_CPUS, help="qemu only (UML has one CPU)"
    )
    parser.add_argument(
        "--accel",
        choices=("tcg", "kvm"),
        default="tcg",
        help="qemu only. tcg: software emulation (default); kvm: if /dev/kvm works",
    )


def _add_run(commands) -> None:
    parser = commands.add_parser(
        "run",
        help="run a command (or EXPERIMENT.yaml) in the VM and return its exit status",
        description="Boot the VM, run COMMAND as root in /dmsc (the checkout, read-only), "
        "stream its output and power off. A single EXPERIMENT.yaml runs `dmsc run` on it. "
        "Exit status: the command's; 124 if it timed out; 125 if the VM failed.",
    )
    _add_vm_options(parser)
    parser.add_argument(
        "--timeout",
        type=float,
        default=runner.DEFAULT_TIMEOUT_S,
        metavar="S",
        help="stop the VM after S seconds (default: %(default)g)",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND...")
    parser.set_defaults(func=run_run)


def _add_shell(commands) -> None:
    parser = commands.add_parser(
        "shell",
        help="an interactive shell in the VM (serial console; Mininet's CLI works there)",
        description="Boot the VM with a root shell on its console. `exit` powers it off; "
        "Ctrl-A X stops qemu.",
    )
    _add_vm_options(parser)
    parser.set_defaults(func=run_shell)


def _add_info(commands) -> None:
    parser = commands.add_parser("info", help="show the current image's manifest summary")
    parser.add_argument("--cache", type=Path, help="image cache folder to use")
    parser.add_argument("--json", action="store_true", help="print the whole manifest")
    parser.set_defaults(func=run_info)


def run_build(args: argparse.Namespace) -> int:
    cache = args.cache or vm_image.default_cache_dir()
    with runner.sigterm_unwinds():
        vm_image.build(
            cache, force=args.force, mirror=args.mirror, security_mirror=args.security_mirror
        )
    return 0


def _find(args: argparse.Namespace) -> vm_image.Image:
    dirs = [args.cache] if args.cache else vm_image.lookup_cache_dirs()
    return vm_image.find_image(dirs)


def _options(args: argparse.Namespace) -> runner.VmOptions:
    if args.memory < 256 or args.cpus < 1:
        raise VmError("--memory must be at least 256 MiB and --cpus at least 1")
    return runner.VmOptions(
        results=args.results, with_ovs=args.with_ovs, memory_mib=args.memory, cpus=args.cpus,
        backend=args.backend, accel=args.accel,
    )  # fmt: skip


def run_run(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise VmError("nothing to run: dmsc vm run [OPTIONS] -- COMMAND... (or EXPERIMENT.yaml)")
    if args.timeout <= 0:
        raise VmError("--timeout must be positive")
    with runner.sigterm_unwinds():
        result = runner.run(
            _find(args), command, _options(args), checkout=vm_image.project_root(),
            timeout=args.timeout,
        )  # fmt: skip
    if result.reason:
        log = args.results / runner.CONSOLE_LOG
        tail = log.read_text(errors="replace").splitlines()[-15:]
        print("\n".join(["--- last lines of the VM console ---", *tail]), file=sys.stderr)
        print(f"dmsc vm run: {result.reason}", file=sys.stderr)
        print(f"dmsc vm run: console log: {log}", file=sys.stderr)
    return result.status


def run_shell(args: argparse.Namespace) -> int:
    with runner.sigterm_unwinds():
        return runner.shell(_find(args), _options(args), checkout=vm_image.project_root())


def run_info(args: argparse.Namespace) -> int:
    image = _find(args)
    manifest = image.manifest
    if args.json:
        print(json.dumps(manifest, indent=2))
        return 0
    kernel = manifest["kernel"]
    print(f"image      {image.directory}")
    print(f"built      {manifest['built_at']} in {manifest['build_seconds']} s")
    print(f"suite      {manifest['inputs']['suite']} from {manifest['inputs']['mirror']}")
    print(f"kernel     {kernel['package']} {kernel['version']}")
    print(f"packages   {len(manifest['debian_packages'])} Debian, "
          f"{len(manifest['python_packages'])} Python")  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m dmsc.cli.vm ARGS`` is ``dmsc vm ARGS`` (for scripts and tests)."""
    parser = argparse.ArgumentParser(prog="dmsc")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["vm", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args) or 0)
    except DmscError as error:
        print(f"dmsc vm: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dmsc vm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
