"""Build the experiment VM image, reproducibly, and keep it in a cache keyed by its inputs.

An image is a directory with four files: ``vmlinux`` (Debian's kernel, uncompressed: it boots
twice as fast under TCG), ``initramfs.cpio`` (busybox and the modules needed to mount the root
disk), ``rootfs.ext4`` (debootstrap's bookworm with Mininet, Open vSwitch, iproute2, a Python
venv with the project's dependencies, and the kernel's networking modules) and
``manifest.json`` (inputs, their hash, every Debian and Python package version installed).

The pure parts (inputs and their hash, the manifest, command lines, module selection, the
initramfs archive, the kernel extraction) are plain functions; :func:`build` is the thin
shell that runs the commands, logging each one exactly. An image is trusted only once it has
been renamed into ``images/<hash>`` with a manifest whose hash and file sizes match: a build
that failed or was interrupted leaves at most a ``.tmp-*`` directory, removed by the next one.
"""

from __future__ import annotations

import ast
import contextlib
import datetime
import fcntl
import hashlib
import json
import lzma
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
import uuid
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TextIO

from dmsc.vm import VmError, VmImageMissing

#: Bump when the recipe changes in a way the other inputs do not show.
FORMAT_VERSION = 2
SUITE = "bookworm"
ARCH = "amd64"
GUEST_PYTHON = "3.11"  # bookworm's python3: the wheels downloaded on the host are for it
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
KERNEL_META_PACKAGE = "linux-image-amd64"
GUEST_PACKAGES = (
    "busybox-static",
    "ethtool",
    "iperf3",
    "iproute2",
    "iputils-ping",
    "kmod",
    "mininet",
    "openvswitch-switch",
    "openvswitch-testcontroller",
    "procps",
    "python3",
    "python3-venv",
    "traceroute",
)
#: Guest files baked into the image (in ``dmsc/vm/guest/``) and where they go.
BAKED_GUEST_FILES = {
    "init.sh": "sbin/dmsc-init",
    "dmsc.sh": "usr/local/bin/dmsc",
    "motd": "etc/motd",
    "fstab": "etc/fstab",
}
INITRAMFS_INIT = "initramfs-init.sh"
#: Kernel modules copied into the root file system (with everything they depend on).
MODULE_SUBTREES = (
    "kernel/net/",
    "kernel/lib/",
    "kernel/crypto/",
    "kernel/arch/x86/crypto/",
    "kernel/fs/9p/",
    "kernel/fs/netfs/",
    "kernel/fs/fscache/",
    "kernel/fs/ext4/",
    "kernel/fs/overlayfs/",
    "kernel/drivers/virtio/",
    "kernel/drivers/block/virtio_blk.ko",
    "kernel/drivers/char/hw_random/",
    "kernel/drivers/net/veth.ko",
    "kernel/drivers/net/dummy.ko",
    "kernel/drivers/net/ifb.ko",
    "kernel/drivers/net/macvlan.ko",
    "kernel/drivers/net/vxlan/",
    "kernel/drivers/net/geneve.ko",
    "kernel/drivers/net/tun.ko",
    "kernel/drivers/net/bonding/",
)
#: Modules the initramfs loads, in this order, to mount the root disk.
INITRAMFS_MODULES = ("crc32c_generic", "crc32c-intel", "virtio_pci", "virtio_blk", "ext4")
#: Removed from the root file system to keep the image small (paths relative to it).
STRIP_PATHS = (
    "var/cache/apt",
    "var/lib/apt/lists",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/doc",
)
#: Directories of that name in the venv's site-packages are removed: the packages' own test
#: suites (pandas alone ships 45 MB of them) are never imported at run time.
STRIP_VENV_DIRS = ("tests",)
VENV = "opt/dmsc/venv"
OVS_DB = "/var/lib/openvswitch/conf.db"  # /etc/openvswitch/conf.db links to it
OVS_SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
IMAGE_FILES = ("vmlinux", "initramfs.cpio", "rootfs.ext4")
MANIFEST = "manifest.json"
FREE_SPACE_MIB = 512
GUEST_DIR = Path(__file__).with_name("guest")
CHROOT_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}
HOST_TOOLS = {
    "debootstrap": "debootstrap",
    "chroot": "coreutils",
    "mke2fs": "e2fsprogs",
    "dpkg-deb": "dpkg",
    "apt-get": "apt",
    "apt-cache": "apt",
}


class VmBuildError(VmError):
    """A step of the image build failed."""


# --- inputs, hash, manifest (pure) -------------------------------------------------------


@dataclass(frozen=True)
class BuildInputs:
    """Everything an image is made from; its hash names the image in the cache."""

    kernel_package: str
    kernel_version: str
    guest_files: tuple[tuple[str, str], ...]  # (name, sha256 of its content)
    python_requirements: tuple[str, ...]
    mirror: str = DEFAULT_MIRROR
    security_mirror: str = DEFAULT_SECURITY_MIRROR
    suite: str = SUITE
    arch: str = ARCH
    guest_python: str = GUEST_PYTHON
    packages: tuple[str, ...] = GUEST_PACKAGES
    module_subtrees: tuple[str, ...] = MODULE_SUBTREES
    initramfs_modules: tuple[str, ...] = INITRAMFS_MODULES
    strip_paths: tuple[str, ...] = STRIP_PATHS
    strip_venv_dirs: tuple[str, ...] = STRIP_VENV_DIRS
    format_version: int = FORMAT_VERSION

    def as_dict(self) -> dict:
        data = asdict(self)
        data["guest_files"] = dict(self.guest_files)
        data["packages"] = sorted(self.packages)
        data["python_requirements"] = sorted(self.python_requirements)
        return data

    @property
    def kernel_release(self) -> str:
        """``linux-image-6.1.0-56-amd64`` → ``6.1.0-56-amd64`` (the /lib/modules name)."""
        return self.kernel_package.removeprefix("linux-image-")


def input_hash(inputs: BuildInputs) -> str:
    """SHA-256 of the canonical JSON of the inputs: equal inputs, equal hash, on any host."""
    text = json.dumps(inputs.as_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def image_key(inputs: BuildInputs) -> str:
    """The image's directory name in the cache."""
    return input_hash(inputs)[:16]


def guest_file_hashes(directory: Path = GUEST_DIR) -> tuple[tuple[str, str], ...]:
    names = [*BAKED_GUEST_FILES, INITRAMFS_INIT]
    return tuple(
        (name, hashlib.sha256((directory / name).read_bytes()).hexdigest())
        for name in sorted(names)
    )


def make_manifest(
    inputs: BuildInputs,
    *,
    debian_packages: Mapping[str, str],
    python_packages: Mapping[str, str],
    apt_release_dates: Mapping[str, str],
    files: Mapping[str, int],
    built_at: str,
    build_seconds: float,
) -> dict:
    return {
        "input_hash": input_hash(inputs),
        "key": image_key(inputs),
        "inputs": inputs.as_dict(),
        "kernel": {
            "package": inputs.kernel_package,
            "version": inputs.kernel_version,
            "release": inputs.kernel_release,
        },
        "apt_release_dates": dict(sorted(apt_release_dates.items())),
        "debian_packages": dict(sorted(debian_packages.items())),
        "python_packages": dict(sorted(python_packages.items())),
        "files": dict(sorted(files.items())),
        "built_at": built_at,
        "build_seconds": round(build_seconds, 1),
    }


# --- the project's Python dependencies (pure) --------------------------------------------


def requirements_from_setup(source: str, extras: Sequence[str] = ("test",)) -> tuple[str, ...]:
    """``install_requires`` and the named extras of a setup.py, read without running it."""
    keywords = _setup_keywords(source)
    requirements = list(_literal(keywords, "install_requires", []))
    extras_require = _literal(keywords, "extras_require", {})
    for extra in extras:
        requirements.extend(extras_require.get(extra, []))
    return tuple(requirements)


def _setup_keywords(source: str) -> dict[str, ast.expr]:
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup":
            return {kw.arg: kw.value for kw in node.keywords if kw.arg}
    raise VmBuildError("setup.py has no setup(...) call to read the dependencies from")


def _literal(keywords: Mapping[str, ast.expr], name: str, default):
    if name not in keywords:
        return default
    try:
        return ast.literal_eval(keywords[name])
    except ValueError:
        raise VmBuildError(f"setup.py: {name} must be a literal to be read") from None


def requirements_from_pyproject(text: str, extras: Sequence[str] = ("test",)) -> tuple[str, ...]:
    project = tomllib.loads(text).get("project", {})
    requirements = list(project.get("dependencies", []))
    optional = project.get("optional-dependencies", {})
    for extra in extras:
        requirements.extend(optional.get(extra, []))
    return tuple(requirements)


def project_requirements(root: Path) -> tuple[str, ...]:
    """The checkout's runtime and test dependencies: pyproject's [project] or setup.py."""
    pyproject = root / "pyproject.toml"
    if pyproject.exists() and "dependencies" in tomllib.loads(pyproject.read_text()).get(
        "project", {}
    ):
        return requirements_from_pyproject(pyproject.read_text())
    setup = root / "setup.py"
    if setup.exists():
        return requirements_from_setup(setup.read_text())
    raise VmBuildError(f"{root}: neither pyproject.toml [project] nor setup.py lists dependencies")


def project_root() -> Path:
    """The checkout this ``dmsc`` package comes from (shared with the guest)."""
    import dmsc

    root = Path(dmsc.__file__).resolve().parent.parent
    if not (root / "dmsc").is_dir() or not (
        (root / "setup.py").exists() or (root / "pyproject.toml").exists()
    ):
        raise VmError(f"{root} is not a project checkout (no setup.py or pyproject.toml)")
    return root


# --- apt, debootstrap, pip, mke2fs command lines (pure) ----------------------------------


def apt_sources(inputs: BuildInputs) -> str:
    signed = f"[arch={inputs.arch} signed-by={KEYRING}]"
    return (
        f"deb {signed} {inputs.mirror} {inputs.suite} main\n"
        f"deb {signed} {inputs.mirror} {inputs.suite}-updates main\n"
        f"deb {signed} {inputs.security_mirror} {inputs.suite}-security main\n"
    )


def apt_options(state: Path, arch: str = ARCH) -> list[str]:
    """apt options for a private state under ``state``: the host's apt is left alone."""
    settings = {
        "Dir::Etc::SourceList": state / "sources.list",
        "Dir::Etc::SourceParts": state / "sources.list.d",
        "Dir::Etc::Preferences": state / "preferences",
        "Dir::Etc::PreferencesParts": state / "preferences.d",
        "Dir::State": state / "state",
        "Dir::State::status": state / "status",
        "Dir::Cache": state / "cache",
        "APT::Architecture": arch,
        "APT::Architectures": arch,
        "APT::Sandbox::User": "root",
        "Debug::NoLocking": "1",
    }
    return [arg for key, value in settings.items() for arg in ("-o", f"{key}={value}")]


def parse_kernel_dependency(show_output: str) -> tuple[str, str]:
    """From ``apt-cache show linux-image-amd64``: the versioned kernel package it depends on."""
    match = re.search(r"^Depends:.*?(linux-image-[\w.+-]+) \(= ([^)]+)\)", show_output, re.M)
    if not match:
        raise VmBuildError(f"cannot find the kernel package in:\n{show_output[:500]}")
    return match.group(1), match.group(2)


def parse_release_date(text: str) -> str | None:
    match = re.search(r"^Date: (.+)$", text, re.M)
    return match.group(1).strip() if match else None


def debootstrap_command(root: Path, inputs: BuildInputs) -> list[str]:
    return [
        "debootstrap",
        "--variant=minbase",
        f"--arch={inputs.arch}",
        f"--keyring={KEYRING}",
        f"--include={','.join(sorted(inputs.packages))}",
        inputs.suite,
        str(root),
        inputs.mirror,
    ]


def pip_download_command(python: str, dest: Path, inputs: BuildInputs) -> list[str]:
    """Download wheels on the host (it reaches PyPI; the chroot need not) for the guest's Python."""
    glibc = [f"manylinux_2_{minor}_x86_64" for minor in range(36, 16, -1)]
    platforms = [*glibc, "manylinux2014_x86_64", "linux_x86_64"]
    version = inputs.guest_python.replace(".", "")
    return [
        python, "-m", "pip", "download", "--disable-pip-version-check", "--dest", str(dest),
        "--only-binary=:all:", "--implementation", "cp", "--python-version", inputs.guest_python,
        "--abi", f"cp{version}", "--abi", "abi3", "--abi", "none",
        *[arg for platform in platforms for arg in ("--platform", platform)],
        *sorted(inputs.python_requirements),
    ]  # fmt: skip


def pip_install_command(wheels: str, inputs: BuildInputs) -> list[str]:
    return [
        f"/{VENV}/bin/pip", "install", "--disable-pip-version-check", "--no-cache-dir",
        "--no-index", "--find-links", wheels, *sorted(inputs.python_requirements),
    ]  # fmt: skip


def rootfs_size_mib(used_bytes: int, free_mib: int = FREE_SPACE_MIB) -> int:
    """Room for the files, ext4's own overhead (~10 %) and some free space for experiments."""
    return -(-used_bytes * 11 // 10 // 2**20) + free_mib


def mke2fs_command(root: Path, image: Path, size_mib: int, key: str) -> list[str]:
    # A UUID derived from the key, no journal (the disk is a throw-away snapshot at run time).
    fs_uuid = str(uuid.UUID(hashlib.sha256(key.encode()).hexdigest()[:32]))
    return [
        "mke2fs", "-q", "-F", "-t", "ext4", "-L", "dmsc-root", "-U", fs_uuid, "-m", "0",
        "-O", "^has_journal", "-E", "root_owner=0:0", "-d", str(root), str(image),
        f"{size_mib}M",
    ]  # fmt: skip


# --- kernel modules, initramfs, vmlinux (pure) -------------------------------------------


def parse_modules_dep(text: str) -> dict[str, list[str]]:
    """``modules.dep``: module path → the paths it needs (each also needing its own)."""
    dep_map: dict[str, list[str]] = {}
    for line in text.splitlines():
        if ":" in line:
            module, _, needs = line.partition(":")
            dep_map[module.strip()] = needs.split()
    return dep_map


def module_name(path: str) -> str:
    """``kernel/arch/x86/crypto/crc32c-intel.ko`` → ``crc32c_intel`` (as modprobe names it)."""
    base = path.rsplit("/", 1)[-1]
    return re.sub(r"\.ko(\.\w+)?$", "", base).replace("-", "_")


def modules_by_name(dep_map: Mapping[str, list[str]], names: Iterable[str]) -> list[str]:
    index = {module_name(path): path for path in dep_map}
    missing = [name for name in names if name.replace("-", "_") not in index]
    if missing:
        raise VmBuildError(f"kernel modules not found: {', '.join(missing)}")
    return [index[name.replace("-", "_")] for name in names]


def load_order(dep_map: Mapping[str, list[str]], seeds: Iterable[str]) -> list[str]:
    """Seeds and everything they need, each module after its dependencies, no repeats."""
    order: list[str] = []
    seen: set[str] = set()

    def visit(path: str) -> None:
        if path in seen:
            return
        seen.add(path)
        for needed in dep_map.get(path, []):
            visit(needed)
        order.append(path)

    for seed in seeds:
        visit(seed)
    return order


def select_modules(dep_map: Mapping[str, list[str]], subtrees: Iterable[str]) -> list[str]:
    """The modules under the given subtrees (a path ending in ``/``) or files, plus their needs."""
    prefixes = tuple(subtrees)
    chosen = sorted(path for path in dep_map if path.startswith(prefixes))
    return sorted(load_order(dep_map, chosen))


def cpio_newc(entries: Iterable[tuple[str, int, bytes]]) -> bytes:
    """An uncompressed ``newc`` cpio archive (what the kernel unpacks as an initramfs).

    Entries are (path, mode with file type bits, content; a symlink's content is its target).
    Timestamps and owners are zero, so equal entries give equal bytes.
    """
    out = bytearray()
    entries = list(entries)
    for inode, (name, mode, data) in enumerate(entries, start=1):
        out += _cpio_entry(name, mode, data, inode)
    out += _cpio_entry("TRAILER!!!", 0, b"", 0)
    return bytes(out)


def _cpio_entry(name: str, mode: int, data: bytes, inode: int) -> bytes:
    encoded = name.encode() + b"\0"
    nlink = 2 if mode & 0o170000 == 0o040000 else 1
    fields = (inode, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
    header = b"070701" + b"".join(b"%08X" % value for value in fields)
    return _pad4(header + encoded) + _pad4(data)


def _pad4(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def initramfs_entries(
    init: bytes, busybox: bytes, modules: Sequence[tuple[str, bytes]]
) -> list[tuple[str, int, bytes]]:
    """The initramfs: /init, /bin/busybox, the modules and ``/modules.order`` (load order)."""
    dirs = {"bin", "dev", "proc", "sys", "newroot", "lib", "lib/modules"}
    for path, _ in modules:
        parts = f"lib/modules/{path}".split("/")[:-1]
        dirs.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
    entries = [(directory, 0o040755, b"") for directory in sorted(dirs)]
    entries.append(("init", 0o100755, init))
    entries.append(("bin/busybox", 0o100755, busybox))
    entries.append(("bin/sh", 0o120777, b"busybox"))
    entries += [(f"lib/modules/{path}", 0o100644, data) for path, data in modules]
    order = "".join(f"{path}\n" for path, _ in modules).encode()
    entries.append(("modules.order", 0o100644, order))
    return entries


def extract_vmlinux(vmlinuz: bytes) -> bytes:
    """The ELF kernel inside a bzImage (as the kernel's scripts/extract-vmlinux finds it)."""
    for magic, decompress in ((b"\xfd7zXZ\x00", _unxz), (b"\x1f\x8b\x08", _gunzip)):
        start = vmlinuz.find(magic)
        while start != -1:
            with contextlib.suppress(lzma.LZMAError, zlib.error, EOFError, ValueError):
                kernel = decompress(vmlinuz[start:])
                if kernel.startswith(b"\x7fELF"):
                    return kernel
            start = vmlinuz.find(magic, start + 1)
    raise VmBuildError("no xz- or gzip-compressed ELF kernel found in the vmlinuz")


def _unxz(data: bytes) -> bytes:
    return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data)


def _gunzip(data: bytes) -> bytes:
    return zlib.decompressobj(wbits=31).decompress(data)  # stops at the end of the member


def parse_dpkg_query(text: str) -> dict[str, str]:
    """``dpkg-query -W -f '${Package}\\t${Version}\\n'`` → package → version."""
    pairs = (line.split("\t", 1) for line in text.splitlines() if "\t" in line)
    return {name: version for name, version in pairs}


def mounts_under(mountinfo: str, directory: Path) -> list[str]:
    """Mount points at or below ``directory`` in /proc/self/mountinfo, deepest first."""
    prefix = str(directory).rstrip("/")
    points = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 4:
            point = fields[4].encode().decode("unicode_escape")
            if point == prefix or point.startswith(prefix + "/"):
                points.append(point)
    return sorted(points, key=lambda point: point.count("/"), reverse=True)


# --- the cache ---------------------------------------------------------------------------


def default_cache_dir(env: Mapping[str, str] | None = None, euid: int | None = None) -> Path:
    """``$DMSC_VM_CACHE``, else /var/cache/dmsc-vm for root, else ~/.cache/dmsc/vm."""
    env = os.environ if env is None else env
    euid = os.geteuid() if euid is None else euid
    if env.get("DMSC_VM_CACHE"):
        return Path(env["DMSC_VM_CACHE"])
    if euid == 0:
        return Path("/var/cache/dmsc-vm")
    return Path(env.get("HOME", str(Path.home()))) / ".cache" / "dmsc" / "vm"


def lookup_cache_dirs(env: Mapping[str, str] | None = None) -> list[Path]:
    """Where ``dmsc vm run`` looks for an image: the env override alone, else both defaults."""
    env = os.environ if env is None else env
    if env.get("DMSC_VM_CACHE"):
        return [Path(env["DMSC_VM_CACHE"])]
    home = Path(env.get("HOME", str(Path.home())))
    return [home / ".cache" / "dmsc" / "vm", Path("/var/cache/dmsc-vm")]


@dataclass(frozen=True)
class Image:
    """A complete, verified image in the cache."""

    directory: Path
    manifest: dict = field(compare=False)

    @property
    def kernel(self) -> Path:
        return self.directory / "vmlinux"

    @property
    def initramfs(self) -> Path:
        return self.directory / "initramfs.cpio"

    @property
    def rootfs(self) -> Path:
        return self.directory / "rootfs.ext4"


def verify_image(directory: Path) -> Image:
    """The image in ``directory`` if it is complete; else :class:`VmImageMissing` saying why."""
    manifest_path = directory / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as error:
        raise VmImageMissing(f"{directory}: no readable {MANIFEST} ({error})") from None
    if manifest.get("key") != directory.name:
        raise VmImageMissing(f"{directory}: manifest is for image {manifest.get('key')!r}")
    for name in IMAGE_FILES:
        expected = manifest.get("files", {}).get(name)
        path = directory / name
        if expected is None or not path.is_file() or path.stat().st_size != expected:
            raise VmImageMissing(f"{directory}: {name} is missing or not the size recorded")
    return Image(directory, manifest)


def find_image(cache_dirs: Iterable[Path]) -> Image:
    """The ``current`` image of the first cache that has a complete one."""
    reasons = []
    for cache in cache_dirs:
        current = cache / "current"
        if not current.exists():
            reasons.append(f"{cache}: no image built")
            continue
        try:
            return verify_image(current.resolve())
        except VmImageMissing as error:
            reasons.append(str(error))
    raise VmImageMissing(
        "no experiment VM image: build it with `sudo dmsc vm build` (" + "; ".join(reasons) + ")"
    )


def _publish(tmp: Path, cache: Path, key: str) -> Path:
    """Rename the finished build into place, then point ``current`` at it (both atomic)."""
    final = cache / "images" / key
    if final.exists():
        old = final.with_name(f".old-{key}-{os.getpid()}")
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old)
    else:
        tmp.rename(final)
    _point_current(cache, key)
    return final


def _point_current(cache: Path, key: str) -> None:
    link = cache / f".current-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        link.unlink()
    link.symlink_to(Path("images") / key)
    link.replace(cache / "current")


def _prune(cache: Path, keep: int = 2) -> None:
    """Keep the newest ``keep`` images (the current one among them)."""
    images = sorted(
        (path for path in (cache / "images").iterdir() if not path.name.startswith(".")),
        key=lambda path: path.stat().st_mtime,
        reverse=True,
    )
    current = (cache / "current").resolve()
    for path in images[keep:]:
        if path.resolve() != current:
            shutil.rmtree(path)


def remove_tree(path: Path) -> None:
    """Remove a build directory; unmount anything left mounted in it first, never follow mounts."""
    if not path.exists():
        return
    for point in mounts_under(Path("/proc/self/mountinfo").read_text(), path.resolve()):
        subprocess.run(["umount", "--lazy", point], check=False)
    left = mounts_under(Path("/proc/self/mountinfo").read_text(), path.resolve())
    if left:
        raise VmBuildError(f"not removing {path}: still mounted: {', '.join(left)}")
    shutil.rmtree(path)


def _remove_stale_builds(cache: Path) -> None:
    for stale in (cache / "images").glob(".*"):
        print(f"removing an unfinished build: {stale}")
        remove_tree(stale)


@contextlib.contextmanager
def _cache_lock(cache: Path) -> Iterator[None]:
    with open(cache / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another build in {cache} ...", flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


# --- running commands, progress ----------------------------------------------------------


class Progress:
    """Prints each stage of the build with the time since the start."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self.out = out
        self.start = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def say(self, message: str) -> None:
        print(f"[{self.elapsed():6.1f}s] {message}", file=self.out, flush=True)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        began = time.monotonic()
        self.say(f"{name} ...")
        yield
        self.say(f"{name}: done in {time.monotonic() - began:.1f}s")


class Commands:
    """Runs argument lists, writing each exact command and its output to the build log."""

    def __init__(self, log: Path, out: TextIO = sys.stdout) -> None:
        self.log = log
        self.out = out

    def run(
        self, argv: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None
    ) -> str:
        """Run ``argv``; return its standard output; raise :class:`VmBuildError` on failure."""
        line = shlex.join(argv)
        print(f"         $ {_shorten(line)}", file=self.out, flush=True)
        with open(self.log, "a", encoding="utf-8") as log:
            log.write(f"$ {line}\n")
            log.flush()
            proc = subprocess.run(
                list(argv), cwd=cwd, env=None if env is None else dict(env),
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
            )  # fmt: skip
            stdout = proc.stdout.decode(errors="replace")
            log.write(stdout if len(stdout) < 20000 else stdout[:20000] + "\n[...]\n")
        if proc.returncode != 0:
            raise VmBuildError(
                f"command failed with exit status {proc.returncode}: {line}\n"
                f"--- last lines of {self.log} ---\n{_tail(self.log)}"
            )
        return stdout

    def chroot(self, root: Path, argv: Sequence[str]) -> str:
        return self.run(["chroot", str(root), *argv], env=CHROOT_ENV)


def _shorten(line: str, limit: int = 160) -> str:
    return line if len(line) <= limit else line[: limit - 5] + " [...]"


def _tail(path: Path, lines: int = 25) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# --- the build (I/O) ---------------------------------------------------------------------


@dataclass
class BuildContext:
    inputs: BuildInputs
    work: Path  # the temporary image directory, renamed into place at the end
    apt_state: Path
    commands: Commands
    progress: Progress

    @property
    def root(self) -> Path:
        return self.work / "root"


def check_host_tools() -> None:
    missing = [tool for tool in HOST_TOOLS if shutil.which(tool) is None]
    if missing:
        named = ", ".join(f"{tool} (Debian package {HOST_TOOLS[tool]})" for tool in missing)
        raise VmBuildError(f"missing host tools: {named}; run ./testbed setup (as root)")
    if os.geteuid() != 0:
        raise VmBuildError("building the image needs root (debootstrap, chroot): use sudo")


def resolve_inputs(
    commands: Commands, apt_state: Path, mirror: str, security_mirror: str
) -> tuple[BuildInputs, dict[str, str]]:
    """Ask the mirror (through a private apt state) which kernel package is current."""
    draft = BuildInputs(
        kernel_package="", kernel_version="", guest_files=guest_file_hashes(),
        python_requirements=project_requirements(project_root()),
        mirror=mirror, security_mirror=security_mirror,
    )  # fmt: skip
    _prepare_apt_state(apt_state, draft)
    options = apt_options(apt_state)
    commands.run(["apt-get", *options, "-q", "update"])
    show = commands.run(["apt-cache", *options, "show", "--no-all-versions", KERNEL_META_PACKAGE])
    package, version = parse_kernel_dependency(show)
    dates = {
        path.name: date
        for path in sorted((apt_state / "state" / "lists").glob("*Release"))
        if (date := parse_release_date(path.read_text(errors="replace")))
    }
    return replace(draft, kernel_package=package, kernel_version=version), dates


def _prepare_apt_state(state: Path, inputs: BuildInputs) -> None:
    for sub in ("sources.list.d", "preferences.d", "state/lists/partial", "cache/archives/partial"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    (state / "sources.list").write_text(apt_sources(inputs))
    (state / "status").touch()


def make_root(ctx: BuildContext) -> None:
    ctx.commands.run(debootstrap_command(ctx.root, ctx.inputs))
    (ctx.root / "etc/apt/sources.list").write_text(apt_sources(ctx.inputs))
    (ctx.root / "etc/hostname").write_text("dmsc-vm\n")
    (ctx.root / "etc/hosts").write_text("127.0.0.1\tlocalhost\n127.0.1.1\tdmsc-vm\n")
    for name, target in BAKED_GUEST_FILES.items():
        destination = ctx.root / target
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(GUEST_DIR / name, destination)
        destination.chmod(0o755 if name.endswith(".sh") else 0o644)
    for mount_point in ("dmsc", "results"):
        (ctx.root / mount_point).mkdir(exist_ok=True)
    # Open vSwitch's database, which ovs-ctl would otherwise create at every boot.
    ctx.commands.chroot(ctx.root, ["ovsdb-tool", "create", OVS_DB, OVS_SCHEMA])
    (ctx.root / "etc/dmsc-vm-image").write_text(
        f"key={image_key(ctx.inputs)}\nsuite={ctx.inputs.suite}\n"
        f"kernel={ctx.inputs.kernel_package} {ctx.inputs.kernel_version}\n"
    )


def install_python(ctx: BuildContext) -> None:
    wheels = ctx.root / "tmp" / "wheels"
    ctx.commands.run(pip_download_command(sys.executable, wheels, ctx.inputs))
    ctx.commands.chroot(ctx.root, ["python3", "-m", "venv", "--system-site-packages", f"/{VENV}"])
    ctx.commands.chroot(ctx.root, pip_install_command("/tmp/wheels", ctx.inputs))
    shutil.rmtree(wheels)


def install_kernel(ctx: BuildContext) -> list[str]:
    """Fetch Debian's kernel package; return the initramfs modules' paths in load order."""
    unpacked = ctx.root / "tmp" / "kernel"
    package = f"{ctx.inputs.kernel_package}={ctx.inputs.kernel_version}"
    ctx.commands.run(["apt-get", *apt_options(ctx.apt_state), "download", package], cwd=ctx.work)
    deb = next(ctx.work.glob(f"{ctx.inputs.kernel_package}_*.deb"))
    ctx.commands.run(["dpkg-deb", "-x", str(deb), str(unpacked)])
    release = ctx.inputs.kernel_release
    vmlinuz = unpacked / "boot" / f"vmlinuz-{release}"
    (ctx.work / "vmlinux").write_bytes(extract_vmlinux(vmlinuz.read_bytes()))
    ctx.commands.chroot(ctx.root, ["depmod", "-b", "/tmp/kernel", release])
    source = unpacked / "lib" / "modules" / release
    dep_map = parse_modules_dep((source / "modules.dep").read_text())
    initramfs = load_order(dep_map, modules_by_name(dep_map, ctx.inputs.initramfs_modules))
    _copy_modules(source, ctx.root / "lib" / "modules" / release, dep_map, ctx.inputs)
    _write_initramfs(ctx, source, initramfs)
    ctx.commands.chroot(ctx.root, ["depmod", release])
    shutil.rmtree(unpacked)
    deb.unlink()
    return initramfs


def _copy_modules(
    source: Path, target: Path, dep_map: Mapping[str, list[str]], inputs: BuildInputs
) -> None:
    chosen = select_modules(dep_map, inputs.module_subtrees)
    seeds = modules_by_name(dep_map, inputs.initramfs_modules)
    for path in sorted(set(chosen) | set(load_order(dep_map, seeds))):
        (target / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / path, target / path)
    for name in ("modules.builtin", "modules.builtin.modinfo", "modules.order"):
        shutil.copy2(source / name, target / name)


def _write_initramfs(ctx: BuildContext, modules_dir: Path, order: Sequence[str]) -> None:
    entries = initramfs_entries(
        init=(GUEST_DIR / INITRAMFS_INIT).read_bytes(),
        busybox=(ctx.root / "bin" / "busybox").read_bytes(),
        modules=[(path, (modules_dir / path).read_bytes()) for path in order],
    )
    (ctx.work / "initramfs.cpio").write_bytes(cpio_newc(entries))


def strip_root(ctx: BuildContext) -> None:
    """Drop apt's caches, documentation, translations (keeping the copyright files) and the
    test suites of the Python packages."""
    for relative in ctx.inputs.strip_paths:
        directory = ctx.root / relative
        if relative == "usr/share/doc":
            _strip_docs(directory)
        elif directory.is_dir():
            for child in directory.iterdir():
                _remove(child)
    for site in (ctx.root / VENV / "lib").glob("python3*/site-packages"):
        for name in ctx.inputs.strip_venv_dirs:
            for directory in sorted(site.glob(f"*/**/{name}"), reverse=True):
                if directory.is_dir() and not directory.is_symlink():
                    shutil.rmtree(directory)


def _strip_docs(directory: Path) -> None:
    for child in directory.rglob("*"):
        if child.is_file() and not child.is_symlink() and child.name != "copyright":
            child.unlink()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def record_packages(ctx: BuildContext) -> tuple[dict[str, str], dict[str, str]]:
    dpkg = ctx.commands.chroot(ctx.root, ["dpkg-query", "-W", "-f", "${Package}\t${Version}\n"])
    pip = ctx.commands.chroot(
        ctx.root, [f"/{VENV}/bin/pip", "list", "--local", "--format=json",
                   "--disable-pip-version-check"]
    )  # fmt: skip
    python = {item["name"]: item["version"] for item in json.loads(pip)}
    return parse_dpkg_query(dpkg), python


def make_rootfs(ctx: BuildContext) -> None:
    used = sum(
        path.lstat().st_blocks * 512 for path in ctx.root.rglob("*") if not path.is_symlink()
    )
    size = rootfs_size_mib(used)
    key = image_key(ctx.inputs)
    ctx.commands.run(mke2fs_command(ctx.root, ctx.work / "rootfs.ext4", size, key))


def build(
    cache: Path,
    *,
    force: bool = False,
    mirror: str = DEFAULT_MIRROR,
    security_mirror: str = DEFAULT_SECURITY_MIRROR,
    out: TextIO = sys.stdout,
) -> Image:
    """Build the image unless the cache already has one for the same inputs."""
    check_host_tools()
    progress = Progress(out)
    (cache / "images").mkdir(parents=True, exist_ok=True)
    log = cache / "build.log"
    log.write_text("")
    commands = Commands(log, out)
    progress.say(f"cache {cache}; log of the exact commands: {log}")
    with _cache_lock(cache):
        _remove_stale_builds(cache)
        with progress.stage("resolve inputs (apt update on a private state)"):
            inputs, dates = resolve_inputs(commands, cache / "apt", mirror, security_mirror)
        key = image_key(inputs)
        progress.say(f"image {key}: kernel {inputs.kernel_package} {inputs.kernel_version}")
        if not force:
            with contextlib.suppress(VmImageMissing):
                image = verify_image(cache / "images" / key)
                _point_current(cache, key)
                progress.say(f"up to date: {image.directory}")
                return image
        return _build_new(cache, inputs, dates, commands, progress)


def _build_new(
    cache: Path,
    inputs: BuildInputs,
    dates: Mapping[str, str],
    commands: Commands,
    progress: Progress,
) -> Image:
    key = image_key(inputs)
    work = cache / "images" / f".tmp-{key}-{os.getpid()}"
    work.mkdir()
    ctx = BuildContext(inputs, work, cache / "apt", commands, progress)
    try:
        _run_stages(ctx)
        debs, python = record_packages(ctx)
        with progress.stage("root file system image (mke2fs -d)"):
            make_rootfs(ctx)
        remove_tree(ctx.root)
        _write_manifest(ctx, debs, python, dates)
        shutil.copyfile(commands.log, work / "build.log")
        final = _publish(work, cache, key)
    finally:
        remove_tree(work)
    _prune(cache)
    image = verify_image(final)
    progress.say(f"built {final} ({_image_size(image) / 2**20:.0f} MiB on disk)")
    return image


def _run_stages(ctx: BuildContext) -> None:
    with ctx.progress.stage(f"debootstrap {ctx.inputs.suite} (minbase + packages)"):
        make_root(ctx)
    with ctx.progress.stage("python venv with the project's dependencies"):
        install_python(ctx)
    with ctx.progress.stage("kernel, modules and initramfs"):
        install_kernel(ctx)
    with ctx.progress.stage("strip caches and documentation"):
        strip_root(ctx)


def _write_manifest(
    ctx: BuildContext, debs: Mapping[str, str], python: Mapping[str, str],
    dates: Mapping[str, str],
) -> None:  # fmt: skip
    files = {name: (ctx.work / name).stat().st_size for name in IMAGE_FILES}
    manifest = make_manifest(
        ctx.inputs, debian_packages=debs, python_packages=python, apt_release_dates=dates,
        files=files, built_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        build_seconds=ctx.progress.elapsed(),
    )  # fmt: skip
    (ctx.work / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def _image_size(image: Image) -> int:
    """Bytes the image takes on disk (the ext4 file is sparse)."""
    return sum(path.stat().st_blocks * 512 for path in image.directory.iterdir())
