"""Boot the experiment VM: run one command in it, or give a shell on its console.

Two backends boot the same root file system and run the same guest init:

- ``uml``: User-Mode Linux (Debian's ``user-mode-linux``), a Linux kernel that runs as a host
  process. Guest programs run natively; each system call traps to the UML kernel. One CPU.
- ``qemu``: Debian's kernel under qemu, with software emulation (TCG) or KVM.

``auto`` picks UML when it is installed (``benchmarks/bench_vm.py``, one run: the path's own
RTT through three forwarders 0.8 ms at the median under UML, 6 ms under TCG), else qemu. It
never picks KVM by itself: on some machines ``/dev/kvm`` opens and creates VMs while the guest
hangs after the firmware.

The guest sees three host folders (9p under qemu, hostfs under UML): the project checkout
(read-only, at ``/dmsc``), the results folder (read-write, at ``/results``) and a job folder
(read-only, at ``/run/dmsc-job``) holding the command as NUL-separated arguments. Its init prints a
``ready`` marker, runs the command with its output on the serial console, prints an ``exit``
marker with the status and powers off (see ``dmsc/vm/guest/init.sh``).

The qemu, UML and kernel command lines are built by pure functions; :func:`supervise` runs
the VM under a deadline, streams the command's output, parses the markers and always reaps
the VM. Only the process group of the VM it started is ever killed (UML runs one host process
per guest address space).
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO, TextIO

from dmsc.lifecycle import sigterm_unwinds  # noqa: F401  (dmsc vm uses it from here)
from dmsc.vm import VmError
from dmsc.vm.image import Image

QEMU = "qemu-system-x86_64"
UML = "linux.uml"
#: Debian's user-mode-linux installs the UML kernel's modules (sch_netem, openvswitch, ipv6...)
#: here, one folder per kernel version; the guest mounts its own version's at /lib/modules.
UML_MODULES = Path("/usr/lib/uml/modules")
BACKENDS = ("auto", "uml", "qemu")
DEFAULT_MEMORY_MIB = 3072
DEFAULT_CPUS = 2
DEFAULT_TIMEOUT_S = 3600.0
#: Exit statuses of ``dmsc vm run`` when the command did not finish by itself (as timeout(1)).
TIMED_OUT = 124
VM_FAILED = 125
GUEST_CHECKOUT = "/dmsc"
GUEST_RESULTS = "/results"
GUEST_JOB = "/run/dmsc-job"
CONSOLE_LOG = "vm-console.log"
#: After the exit marker the guest powers off; qemu gets this long to end by itself.
POWEROFF_GRACE_S = 30.0


@dataclass(frozen=True)
class Share:
    """A host folder shared with the guest over 9p under ``tag``."""

    tag: str
    path: Path
    readonly: bool


@dataclass(frozen=True)
class VmSpec:
    """Everything the qemu command line is made from."""

    kernel: Path
    initramfs: Path
    rootfs: Path
    cmdline: str
    shares: tuple[Share, ...] = ()
    memory_mib: int = DEFAULT_MEMORY_MIB
    cpus: int = DEFAULT_CPUS
    accel: str = "tcg"
    interactive: bool = False
    qemu: str = QEMU


@dataclass(frozen=True)
class UmlSpec:
    """Everything the UML command line is made from."""

    rootfs: Path
    cow: Path  # the run's writes go here; the image stays as built (as qemu's snapshot=on)
    cmdline: str
    memory_mib: int = DEFAULT_MEMORY_MIB
    interactive: bool = False
    uml: str = UML


@dataclass(frozen=True)
class RunResult:
    """How a run ended: the command's status, or why there is none."""

    status: int
    timed_out: bool = False
    ready_seconds: float | None = None
    seconds: float = 0.0
    reason: str = ""


# --- pure builders -----------------------------------------------------------------------


def qemu_command(spec: VmSpec) -> list[str]:
    """The qemu argument list: TCG (or KVM), no network device, serial console on stdio."""
    if spec.accel not in ("tcg", "kvm"):
        raise VmError(f"unknown accelerator {spec.accel!r}: use tcg or kvm")
    console = ["-serial", "mon:stdio"] if spec.interactive else ["-serial", "stdio"]
    argv = [
        spec.qemu, "-accel", spec.accel, "-cpu", "max" if spec.accel == "tcg" else "host",
        "-smp", str(spec.cpus), "-m", f"{spec.memory_mib}M",
        "-nodefaults", "-nographic", "-no-reboot", *console,
        "-kernel", str(spec.kernel), "-initrd", str(spec.initramfs), "-append", spec.cmdline,
        "-drive", f"file={_qemu_escape(spec.rootfs)},format=raw,if=virtio,snapshot=on",
        "-device", "virtio-rng-pci",
    ]  # fmt: skip
    for share in spec.shares:
        argv += ["-virtfs", virtfs_option(share)]
    return argv


def uml_command(spec: UmlSpec) -> list[str]:
    """The UML argument list: the image's root file system behind a copy-on-write file, the
    guest's serial line (ttyS0, where the init writes) on stdout, stdin too when interactive.
    UML's own console (tty0) is not used."""
    serial = "ssl0=fd:0,fd:1" if spec.interactive else "ssl0=null,fd:1"
    return [
        spec.uml, f"mem={spec.memory_mib}M",
        f"ubd0={_hostfs_path(spec.cow)},{_hostfs_path(spec.rootfs)}", "root=/dev/ubda", "rw",
        "con=null", serial, "init=/sbin/dmsc-init", *spec.cmdline.split(),
    ]  # fmt: skip


def virtfs_option(share: Share) -> str:
    option = f"local,path={_qemu_escape(share.path)},mount_tag={share.tag},security_model=none"
    return option + (",readonly=on" if share.readonly else "")


def _qemu_escape(path: Path) -> str:
    """qemu option values double their commas."""
    return str(path).replace(",", ",,")


def kernel_cmdline(
    *,
    nonce: str,
    mode: str,
    with_ovs: bool,
    term: str = "vt100",
    size: tuple[int, int] | None = None,
) -> str:
    """The kernel command line, carrying the guest init's parameters (``dmsc.*``)."""
    if mode not in ("run", "shell"):
        raise VmError(f"unknown guest mode {mode!r}")
    words = [
        "console=ttyS0", "quiet", "loglevel=3", "panic=1", "mitigations=off",
        "random.trust_cpu=on", f"dmsc.mode={mode}", f"dmsc.nonce={nonce}",
        f"dmsc.ovs={int(with_ovs)}", f"dmsc.term={term if term.isprintable() else 'vt100'}",
    ]  # fmt: skip
    if size:
        words += [f"dmsc.cols={size[0]}", f"dmsc.rows={size[1]}"]
    return " ".join(word for word in words if " " not in word)


def uml_cmdline_words(shares: Sequence[Share], modules: Path) -> list[str]:
    """What the guest init needs under UML: ``dmsc.backend=uml``, the modules folder and each
    share as ``dmsc.share=TAG:ro|rw:PATH`` (mounted with hostfs)."""
    words = ["dmsc.backend=uml", f"dmsc.modules={_hostfs_path(modules)}"]
    for share in shares:
        mode = "ro" if share.readonly else "rw"
        words.append(f"dmsc.share={share.tag}:{mode}:{_hostfs_path(share.path)}")
    return words


def _hostfs_path(path: Path) -> str:
    """A host path as the UML command line and mount(8) can carry it: absolute, one word, no
    comma."""
    text = str(path)
    if not path.is_absolute() or any(c.isspace() or c == "," or not c.isprintable() for c in text):
        raise VmError(
            f"{text!r}: the UML backend shares only absolute paths without spaces or commas "
            "(use another folder, or --backend qemu)"
        )
    return text


def parse_marker(line: str, nonce: str) -> tuple[str, int | None] | None:
    """``("ready", None)`` or ``("exit", status)`` for the guest's marker lines, else None.

    A marker may follow other text on its line (the firmware does not end its last line).
    """
    match = re.search(rf"DMSC-VM-{re.escape(nonce)} (ready|exit (\d+))\s*$", line)
    if match is None:
        return None
    if match.group(1) == "ready":
        return ("ready", None)
    return ("exit", int(match.group(2)))


def experiment_in_guest(path: Path, checkout: Path) -> str | None:
    """The guest path of an experiment file inside the checkout, or None if it is outside."""
    try:
        relative = path.resolve().relative_to(checkout.resolve())
    except ValueError:
        return None
    return f"{GUEST_CHECKOUT}/{relative.as_posix()}"


def is_experiment(argv: Sequence[str]) -> bool:
    return len(argv) == 1 and argv[0].endswith((".yaml", ".yml"))


def job_argv_bytes(argv: Sequence[str]) -> bytes:
    """The job file: arguments separated by NUL (the guest reads it with ``mapfile -d ''``)."""
    if not argv:
        raise VmError("no command to run in the VM")
    if any("\0" in arg for arg in argv):
        raise VmError("a command argument contains a NUL byte")
    return b"".join(arg.encode() + b"\0" for arg in argv)


# --- supervising qemu --------------------------------------------------------------------


def supervise(
    argv: Sequence[str],
    *,
    nonce: str,
    timeout: float | None,
    out: TextIO,
    log: TextIO,
    grace: float = POWEROFF_GRACE_S,
    clock: Callable[[], float] = time.monotonic,
) -> RunResult:
    """Run qemu; stream the command's output to ``out`` and all console lines to ``log``.

    Returns the command's exit status from the guest's ``exit`` marker; kills qemu (by its pid)
    at the deadline (status 124) and reports a VM that stopped without a status (125).
    """
    start = clock()
    deadline = None if timeout is None else start + timeout
    log.write(f"$ {shlex.join(argv)}\n")
    with _started(argv) as (proc, lines):
        watch = _Watch(nonce, out, log, start, clock)
        while watch.status is None:
            item = _next_line(lines, deadline, clock)
            if item is _TIMEOUT:
                return _timed_out(watch, timeout, clock() - start)
            if item is None:
                return _stopped(watch, proc, clock() - start)
            watch.feed(item)
        _await_poweroff(proc, grace)
        seconds = clock() - start
        if watch.ready_at is None:  # the init gave up before the command (e.g. no OVS)
            reason = f"the VM's setup failed before the command started (status {watch.status})"
            log.write(f"[dmsc vm] {reason}\n")
            return RunResult(watch.status, False, None, seconds, reason)
        log.write(f"[dmsc vm] ready after {watch.ready_at:.1f} s, done after {seconds:.1f} s\n")
        return RunResult(watch.status, False, watch.ready_at, seconds)


_TIMEOUT = object()


class _Watch:
    """Follows the console: boot output to the log only, the command's output to ``out``."""

    def __init__(self, nonce: str, out: TextIO, log: TextIO, start: float, clock) -> None:
        self.nonce, self.out, self.log = nonce, out, log
        self.start, self.clock = start, clock
        self.ready_at: float | None = None
        self.status: int | None = None
        self.held = False

    def feed(self, raw: bytes) -> None:
        line = raw.decode(errors="replace").replace("\r", "")
        self.log.write(line)
        marker = parse_marker(line, self.nonce)
        if marker and marker[0] == "ready":
            self.ready_at = self.clock() - self.start
        elif marker:
            self.status = marker[1]  # the blank line the init prints before it is dropped
        elif self.ready_at is not None:
            self._show(line)

    def _show(self, line: str) -> None:
        """Write a line of the command's output; hold back a blank line until the next one."""
        held, self.held = self.held, line == "\n"
        if held:
            self.out.write("\n")
        if not self.held:
            self.out.write(line)
            self.out.flush()


@contextlib.contextmanager
def _started(argv: Sequence[str]) -> Iterator[tuple[subprocess.Popen, queue.Queue]]:
    """Start qemu with a thread reading its output; always kill and reap it at the end."""
    proc = subprocess.Popen(
        _dying_with_parent(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True)
    reader.start()
    try:
        yield proc, lines
    finally:
        _reap(proc)
        reader.join(timeout=5)


def _dying_with_parent(argv: Sequence[str]) -> list[str]:
    """The command under util-linux's ``setpriv --pdeathsig KILL``: the kernel kills it if we
    die without reaping it, so even ``kill -9`` of ``dmsc vm run`` leaves no qemu behind. (Not
    a ``preexec_fn``: in a process with threads, as under gRPC or pytest, it can deadlock or
    abort the child between fork and exec.)"""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--", *argv] if setpriv else list(argv)


def _read_lines(stream: BinaryIO, lines: queue.Queue) -> None:
    try:
        for raw in iter(stream.readline, b""):
            lines.put(raw)
    finally:
        lines.put(None)


def _next_line(lines: queue.Queue, deadline: float | None, clock) -> bytes | object | None:
    remaining = None if deadline is None else deadline - clock()
    if remaining is not None and remaining <= 0:
        return _TIMEOUT
    try:
        return lines.get(timeout=remaining)
    except queue.Empty:
        return _TIMEOUT


def _reap(proc: subprocess.Popen, *, group: bool = True) -> None:
    """Kill the VM if it still runs and wait for it. ``group``: it leads a process group of its
    own (started in a new session), killed whole so that UML's helper processes go with it."""
    if group:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    if proc.stdout:
        proc.stdout.close()


def _await_poweroff(proc: subprocess.Popen, grace: float) -> None:
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)


def _timed_out(watch: _Watch, timeout: float | None, seconds: float) -> RunResult:
    where = "while booting" if watch.ready_at is None else "while the command ran"
    reason = f"timed out after {timeout:g} s {where}; the VM was stopped"
    watch.log.write(f"[dmsc vm] {reason}\n")
    return RunResult(TIMED_OUT, True, watch.ready_at, seconds, reason)


def _stopped(watch: _Watch, proc: subprocess.Popen, seconds: float) -> RunResult:
    code = proc.wait()
    where = "before it was ready" if watch.ready_at is None else "before the command ended"
    reason = f"the VM stopped {where} (exit status {code})"
    watch.log.write(f"[dmsc vm] {reason}\n")
    return RunResult(VM_FAILED, False, watch.ready_at, seconds, reason)


# --- run and shell -----------------------------------------------------------------------


@dataclass(frozen=True)
class VmOptions:
    """Choices of ``dmsc vm run`` and ``dmsc vm shell``."""

    results: Path
    with_ovs: bool = False
    memory_mib: int = DEFAULT_MEMORY_MIB
    cpus: int = DEFAULT_CPUS
    backend: str = "auto"
    accel: str = "tcg"
    qemu: str = QEMU
    uml: str = UML


def resolve_backend(options: VmOptions) -> VmOptions:
    """``options`` with ``auto`` replaced by the backend to use (UML if installed, else qemu),
    each checked to be installed."""
    if options.backend not in BACKENDS:
        raise VmError(f"unknown VM backend {options.backend!r}: use one of {', '.join(BACKENDS)}")
    backend = options.backend
    if backend == "auto":
        backend = "uml" if shutil.which(options.uml) else "qemu"
    options = replace(options, backend=backend)
    if backend == "uml":
        check_uml(options)
    else:
        check_qemu(options)
    return options


def describe_backend(options: VmOptions) -> str:
    """A few words naming the backend of resolved ``options``, for messages."""
    if options.backend == "uml":
        return f"uml {uml_version(options.uml)}"
    return f"qemu {options.accel}"


def run(
    image: Image,
    command: Sequence[str],
    options: VmOptions,
    *,
    checkout: Path,
    timeout: float | None = DEFAULT_TIMEOUT_S,
    out: TextIO = sys.stdout,
) -> RunResult:
    """Boot the VM, run ``command`` in ``/dmsc`` as root, power off; the console log is kept
    in the results folder as ``vm-console.log``."""
    options = resolve_backend(options)
    options.results.mkdir(parents=True, exist_ok=True)
    nonce = secrets.token_hex(8)
    with _scratch() as (job, scratch):
        guest_argv = with_host_commit(_guest_argv(command, checkout, job), checkout)
        (job / "argv").write_bytes(job_argv_bytes(guest_argv))
        argv = _vm_argv(image, options, checkout, job, scratch, nonce, "run")
        with open(options.results / CONSOLE_LOG, "w", encoding="utf-8") as log:
            return supervise(argv, nonce=nonce, timeout=timeout, out=out, log=log)


def shell(image: Image, options: VmOptions, *, checkout: Path) -> int:
    """An interactive session on the VM's serial console; returns the VM's exit status."""
    options = resolve_backend(options)
    options.results.mkdir(parents=True, exist_ok=True)
    with _scratch() as (job, scratch):
        argv = _vm_argv(image, options, checkout, job, scratch, secrets.token_hex(8), "shell")
        leave = "`exit`" + (" (or Ctrl-A X)" if options.backend == "qemu" else "")
        print(f"Starting the experiment VM ({describe_backend(options)}); leave with {leave}.",
              file=sys.stderr)  # fmt: skip
        with _terminal_restored():
            proc = subprocess.Popen(argv)  # in our session: it needs the terminal
            try:
                return proc.wait()
            finally:
                _reap(proc, group=False)


@contextlib.contextmanager
def _scratch() -> Iterator[tuple[Path, Path]]:
    """Two temporary folders: the job share (the guest reads it) and a private one (UML's
    copy-on-write file), removed afterwards."""
    with (
        tempfile.TemporaryDirectory(prefix="dmsc-vm-job-") as job,
        tempfile.TemporaryDirectory(prefix="dmsc-vm-scratch-") as scratch,
    ):
        yield Path(job), Path(scratch)


def _guest_argv(command: Sequence[str], checkout: Path, job: Path) -> list[str]:
    """The command as the guest runs it; an experiment file becomes ``dmsc run FILE``."""
    if not is_experiment(command):
        return list(command)
    path = Path(command[0])
    if not path.is_file():
        raise VmError(f"{path}: no such experiment file")
    inside = experiment_in_guest(path, checkout)
    if inside is None:  # outside the checkout: hand it over in the job folder
        shutil.copyfile(path, job / path.name)
        inside = f"{GUEST_JOB}/{path.name}"
    return ["dmsc", "run", inside]


def with_host_commit(argv: Sequence[str], checkout: Path) -> list[str]:
    """``argv`` run with the checkout's commit in the environment (results.HOST_COMMIT_ENV),
    so that a results folder written in the guest names the code that wrote it."""
    from dmsc.results import HOST_COMMIT_ENV, git_commit  # pandas: only when a job starts

    commit = git_commit(checkout)
    return ["env", f"{HOST_COMMIT_ENV}={commit}", *argv] if commit else list(argv)


def _vm_argv(
    image: Image, options: VmOptions, checkout: Path, job: Path, scratch: Path, nonce: str,
    mode: str,
) -> list[str]:  # fmt: skip
    """The command line booting the VM of resolved ``options``."""
    interactive = mode == "shell"
    size = shutil.get_terminal_size() if interactive else None
    cmdline = kernel_cmdline(
        nonce=nonce, mode=mode, with_ovs=options.with_ovs,
        term=os.environ.get("TERM", "vt100"), size=(size.columns, size.lines) if size else None,
    )  # fmt: skip
    shares = (
        Share("dmsc", checkout.resolve(), readonly=True),
        Share("results", options.results.resolve(), readonly=False),
        Share("job", job, readonly=True),
    )
    if options.backend == "uml":
        words = uml_cmdline_words(shares, UML_MODULES)
        return uml_command(UmlSpec(
            rootfs=image.rootfs, cow=scratch / "rootfs.cow", cmdline=" ".join([cmdline, *words]),
            memory_mib=options.memory_mib, interactive=interactive, uml=options.uml,
        ))  # fmt: skip
    return qemu_command(VmSpec(
        kernel=image.kernel, initramfs=image.initramfs, rootfs=image.rootfs, cmdline=cmdline,
        shares=shares, memory_mib=options.memory_mib, cpus=options.cpus, accel=options.accel,
        interactive=interactive, qemu=options.qemu,
    ))  # fmt: skip


def uml_version(uml: str = UML) -> str:
    """The UML kernel's release (``linux.uml --version``), which names its modules folder."""
    try:
        result = subprocess.run([uml, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as error:
        raise VmError(f"{uml} --version failed: {error}") from error
    version = result.stdout.strip()
    if result.returncode != 0 or not re.fullmatch(r"[\w.+-]+", version):
        raise VmError(f"{uml} --version gave no kernel release: {result.stdout!r}")
    return version


def check_uml(options: VmOptions) -> None:
    if shutil.which(options.uml) is None:
        raise VmError(
            f"{options.uml} not found (Debian package user-mode-linux); run ./testbed setup "
            "(as root), or use --backend qemu"
        )
    modules = UML_MODULES / uml_version(options.uml)
    if not (modules / "modules.dep").is_file():
        raise VmError(
            f"{modules}: no modules for {options.uml} (sch_netem, openvswitch and ipv6 are "
            "modules there); reinstall user-mode-linux"
        )


def check_qemu(options: VmOptions) -> None:
    if shutil.which(options.qemu) is None:
        raise VmError(
            f"{options.qemu} not found (Debian package qemu-system-x86); run ./testbed setup "
            "(as root)"
        )
    if options.accel == "kvm" and not os.access("/dev/kvm", os.R_OK | os.W_OK):
        raise VmError("--accel kvm needs a usable /dev/kvm; use --accel tcg")


@contextlib.contextmanager
def _terminal_restored() -> Iterator[None]:
    """qemu puts the terminal in raw mode; put it back even if qemu had to be killed."""
    try:
        import termios

        saved = termios.tcgetattr(sys.stdin.fileno())
    except (ImportError, OSError, ValueError):
        yield
        return
    try:
        yield
    finally:
        termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, saved)
