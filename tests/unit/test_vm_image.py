"""The experiment VM without root or qemu: inputs and their hash, the manifest, the cache's
trust rules, the pure builders (qemu, kernel command line, initramfs, modules) and the
runner's deadline, tested with fake "qemu" programs."""

from __future__ import annotations

import json
import lzma
import os
import re
import shutil
import sys
import textwrap
import time
import zlib
from dataclasses import replace
from pathlib import Path

import pytest

from dmsc.results import HOST_COMMIT_ENV, git_commit
from dmsc.vm import VmError, VmImageMissing, runner
from dmsc.vm import image as vm
from dmsc.vm.guest import selftest

REPO = Path(__file__).resolve().parents[2]


def inputs(**changes) -> vm.BuildInputs:
    base = vm.BuildInputs(
        kernel_package="linux-image-6.1.0-56-amd64",
        kernel_version="6.1.192-2",
        guest_files=(("init.sh", "a" * 64),),
        python_requirements=("PyYAML>=6.0", "pytest>=8"),
    )
    return replace(base, **changes)


# --- inputs, hash, manifest --------------------------------------------------------------


def test_hash_is_stable_and_ignores_order():
    first = inputs()
    again = inputs(
        packages=tuple(reversed(vm.GUEST_PACKAGES)),
        python_requirements=("pytest>=8", "PyYAML>=6.0"),
    )
    assert vm.input_hash(first) == vm.input_hash(inputs()) == vm.input_hash(again)
    assert len(vm.input_hash(first)) == 64
    assert vm.image_key(first) == vm.input_hash(first)[:16]


@pytest.mark.parametrize(
    "change",
    [
        {"kernel_version": "6.1.192-3"},
        {"kernel_package": "linux-image-6.1.0-57-amd64"},
        {"guest_files": (("init.sh", "b" * 64),)},
        {"python_requirements": ("PyYAML>=6.0", "pytest>=9")},
        {"packages": (*vm.GUEST_PACKAGES, "tcpdump")},
        {"mirror": "http://snapshot.debian.org/archive/debian/20250520T000000Z"},
        {"suite": "trixie"},
        {"format_version": vm.FORMAT_VERSION + 1},
    ],
)
def test_hash_changes_with_each_input(change):
    assert vm.input_hash(inputs(**change)) != vm.input_hash(inputs())


def test_guest_file_hashes_follow_the_files(tmp_path):
    for name in [*vm.BAKED_GUEST_FILES, vm.INITRAMFS_INIT]:
        (tmp_path / name).write_text(f"# {name}\n")
    before = vm.guest_file_hashes(tmp_path)
    (tmp_path / "init.sh").write_text("# changed\n")
    after = vm.guest_file_hashes(tmp_path)
    assert before != after
    assert [name for name, _ in before] == sorted(name for name, _ in before)


def test_shipped_guest_files_are_all_hashed():
    names = {name for name, _ in vm.guest_file_hashes()}
    assert names == {*vm.BAKED_GUEST_FILES, vm.INITRAMFS_INIT}


def test_manifest_records_inputs_kernel_and_versions():
    manifest = vm.make_manifest(
        inputs(),
        debian_packages={"mininet": "2.3.0-1", "iproute2": "6.1.0-3"},
        python_packages={"PyYAML": "6.0.4"},
        apt_release_dates={"bookworm_InRelease": "Sat, 11 Jul 2026 10:16:37 UTC"},
        files={"vmlinux": 10},
        built_at="2026-11-25T00:00:00+00:00",
        build_seconds=12.34,
    )
    assert manifest["input_hash"] == vm.input_hash(inputs())
    assert manifest["key"] == vm.image_key(inputs())
    assert manifest["kernel"] == {
        "package": "linux-image-6.1.0-56-amd64",
        "version": "6.1.192-2",
        "release": "6.1.0-56-amd64",
    }
    assert list(manifest["debian_packages"]) == ["iproute2", "mininet"]
    assert manifest["inputs"]["suite"] == "bookworm"
    assert manifest["build_seconds"] == 12.3
    json.dumps(manifest)


# --- the project's dependencies ----------------------------------------------------------


def test_requirements_are_read_from_setup_without_running_it():
    source = textwrap.dedent(
        """
        import sys
        sys.exit("must not run")
        from setuptools import setup
        setup(name="x", install_requires=["a>=1", "b"],
              extras_require={"test": ["pytest"], "dev": ["ruff"]})
        """
    )
    assert vm.requirements_from_setup(source) == ("a>=1", "b", "pytest")


def test_requirements_that_are_not_literals_are_refused():
    source = "from setuptools import setup\nsetup(install_requires=REQS)\n"
    with pytest.raises(vm.VmBuildError, match="install_requires"):
        vm.requirements_from_setup(source)


def test_requirements_from_pyproject():
    text = '[project]\ndependencies = ["a"]\n[project.optional-dependencies]\ntest = ["t"]\n'
    assert vm.requirements_from_pyproject(text) == ("a", "t")


def test_this_checkout_has_requirements():
    requirements = vm.project_requirements(REPO)
    assert any(req.startswith("pytest") for req in requirements)
    assert vm.project_root() == REPO


# --- command lines -----------------------------------------------------------------------


def test_debootstrap_and_mke2fs_commands_are_argument_lists(tmp_path):
    argv = vm.debootstrap_command(tmp_path / "root", inputs())
    assert argv[:2] == ["debootstrap", "--variant=minbase"]
    assert argv[-3:] == ["bookworm", str(tmp_path / "root"), vm.DEFAULT_MIRROR]
    assert "mininet" in argv[4] and "openvswitch-switch" in argv[4]
    mke2fs = vm.mke2fs_command(tmp_path / "root", tmp_path / "fs", 900, "abc")
    assert mke2fs[0] == "mke2fs" and mke2fs[-1] == "900M"
    assert mke2fs == vm.mke2fs_command(tmp_path / "root", tmp_path / "fs", 900, "abc")


def test_pip_downloads_wheels_for_the_guest_python(tmp_path):
    argv = vm.pip_download_command("/usr/bin/python3", tmp_path, inputs())
    assert argv[:4] == ["/usr/bin/python3", "-m", "pip", "download"]
    assert "--only-binary=:all:" in argv and "cp311" in argv
    assert argv[-2:] == ["PyYAML>=6.0", "pytest>=8"]


def test_apt_state_is_private(tmp_path):
    options = vm.apt_options(tmp_path)
    assert f"Dir::Etc::SourceList={tmp_path / 'sources.list'}" in options
    assert f"Dir::State::status={tmp_path / 'status'}" in options
    assert "bookworm-security main" in vm.apt_sources(inputs())


def test_kernel_package_is_read_from_the_meta_package():
    show = "Package: linux-image-amd64\nDepends: linux-image-6.1.0-56-amd64 (= 6.1.192-2)\n"
    assert vm.parse_kernel_dependency(show) == ("linux-image-6.1.0-56-amd64", "6.1.192-2")
    with pytest.raises(vm.VmBuildError):
        vm.parse_kernel_dependency("Package: x\n")


def test_rootfs_size_leaves_room():
    assert vm.rootfs_size_mib(500 * 2**20) == 550 + vm.FREE_SPACE_MIB


# --- modules, initramfs, kernel ----------------------------------------------------------

DEP_MAP = {
    "kernel/fs/ext4/ext4.ko": ["kernel/lib/crc16.ko", "kernel/fs/jbd2/jbd2.ko"],
    "kernel/fs/jbd2/jbd2.ko": [],
    "kernel/lib/crc16.ko": [],
    "kernel/net/sched/sch_netem.ko": [],
    "kernel/net/openvswitch/openvswitch.ko": ["kernel/net/netfilter/nf_conntrack.ko"],
    "kernel/net/netfilter/nf_conntrack.ko": ["kernel/lib/libcrc32c.ko"],
    "kernel/lib/libcrc32c.ko": [],
    "kernel/arch/x86/crypto/crc32c-intel.ko": [],
    "kernel/sound/core/snd.ko": [],
}


def test_modules_load_after_their_dependencies():
    order = vm.load_order(DEP_MAP, ["kernel/fs/ext4/ext4.ko", "kernel/lib/crc16.ko"])
    assert order == ["kernel/lib/crc16.ko", "kernel/fs/jbd2/jbd2.ko", "kernel/fs/ext4/ext4.ko"]


def test_module_selection_takes_subtrees_and_their_needs():
    chosen = vm.select_modules(DEP_MAP, ["kernel/net/"])
    assert "kernel/net/sched/sch_netem.ko" in chosen
    assert "kernel/lib/libcrc32c.ko" in chosen
    assert "kernel/sound/core/snd.ko" not in chosen and "kernel/fs/ext4/ext4.ko" not in chosen


def test_modules_by_name_accepts_dashes_and_reports_missing():
    assert vm.modules_by_name(DEP_MAP, ["crc32c-intel"]) == [
        "kernel/arch/x86/crypto/crc32c-intel.ko"
    ]
    with pytest.raises(vm.VmBuildError, match="virtio_blk"):
        vm.modules_by_name(DEP_MAP, ["ext4", "virtio_blk"])


def test_modules_dep_is_parsed():
    text = "kernel/a.ko: kernel/b.ko kernel/c.ko\nkernel/b.ko:\n"
    assert vm.parse_modules_dep(text) == {
        "kernel/a.ko": ["kernel/b.ko", "kernel/c.ko"],
        "kernel/b.ko": [],
    }


def read_cpio(data: bytes) -> dict[str, tuple[int, bytes]]:
    entries, offset = {}, 0
    while True:
        assert data[offset : offset + 6] == b"070701"
        fields = [int(data[offset + 6 + 8 * i : offset + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        start = offset + 110
        name = data[start : start + namesize - 1].decode()
        body = start + namesize + (-(110 + namesize) % 4)
        if name == "TRAILER!!!":
            return entries
        entries[name] = (mode, data[body : body + size])
        offset = body + size + (-size % 4)


def test_initramfs_is_a_reproducible_newc_archive():
    entries = vm.initramfs_entries(
        b"#!/bin/busybox sh\n", b"BUSYBOX", [("kernel/fs/ext4/ext4.ko", b"\x7fELFext4")]
    )
    archive = vm.cpio_newc(entries)
    assert archive == vm.cpio_newc(entries) and len(archive) % 4 == 0
    files = read_cpio(archive)
    assert files["init"] == (0o100755, b"#!/bin/busybox sh\n")
    assert files["bin/sh"] == (0o120777, b"busybox")
    assert files["lib/modules/kernel/fs/ext4/ext4.ko"][1] == b"\x7fELFext4"
    assert files["modules.order"][1] == b"kernel/fs/ext4/ext4.ko\n"
    assert files["lib/modules/kernel/fs"][0] == 0o040755


def test_vmlinux_is_found_inside_the_bzimage():
    elf = b"\x7fELF" + bytes(range(256)) * 64
    compressed = lzma.compress(elf, format=lzma.FORMAT_XZ)
    bzimage = b"MZ setup code \xfd7zXZ\x00 not a stream " + compressed + b"\0" * 100
    assert vm.extract_vmlinux(bzimage) == elf


def test_gzip_kernel():
    elf = b"\x7fELF" + b"kernel" * 1000
    compressor = zlib.compressobj(wbits=31)
    bzimage = b"header\x1f\x8b\x08junk" + compressor.compress(elf) + compressor.flush() + b"tail"
    assert vm.extract_vmlinux(bzimage) == elf


def test_bzimage_without_a_kernel_is_refused():
    with pytest.raises(vm.VmBuildError):
        vm.extract_vmlinux(b"MZ" + b"\0" * 1000)


def test_dpkg_query_and_release_date_are_parsed():
    assert vm.parse_dpkg_query("mininet\t2.3.0-1\nkmod\t30+20221128-1\n") == {
        "mininet": "2.3.0-1",
        "kmod": "30+20221128-1",
    }
    assert vm.parse_release_date("Origin: Debian\nDate: Sat, 11 Jul 2026 10:16:37 UTC\n") == (
        "Sat, 11 Jul 2026 10:16:37 UTC"
    )


def test_mounts_under_a_build_directory_deepest_first():
    mountinfo = (
        "22 1 0:21 / /proc rw - proc proc rw\n"
        "90 1 0:50 / /cache/images/.tmp-x/root/proc rw - proc proc rw\n"
        "91 90 0:51 / /cache/images/.tmp-x/root/proc/sys/fs/binfmt_misc rw - binfmt binfmt rw\n"
        "92 1 0:52 / /cache/images/.tmp-xy rw - tmpfs tmpfs rw\n"
    )
    assert vm.mounts_under(mountinfo, Path("/cache/images/.tmp-x")) == [
        "/cache/images/.tmp-x/root/proc/sys/fs/binfmt_misc",
        "/cache/images/.tmp-x/root/proc",
    ]


# --- the cache: what is trusted ----------------------------------------------------------


def make_image(cache: Path, key: str, *, manifest_key: str | None = None) -> Path:
    directory = cache / "images" / key
    directory.mkdir(parents=True)
    files = {}
    for name in vm.IMAGE_FILES:
        (directory / name).write_bytes(name.encode())
        files[name] = len(name)
    manifest = {"key": manifest_key or key, "files": files, "input_hash": key}
    (directory / vm.MANIFEST).write_text(json.dumps(manifest))
    return directory


def test_a_complete_image_is_trusted(tmp_path):
    directory = make_image(tmp_path, "k1")
    image = vm.verify_image(directory)
    assert image.kernel == directory / "vmlinux" and image.rootfs.name == "rootfs.ext4"


@pytest.mark.parametrize("damage", ["no manifest", "truncated", "missing file", "wrong key"])
def test_an_incomplete_image_is_not_trusted(tmp_path, damage):
    directory = make_image(tmp_path, "k1", manifest_key="other" if damage == "wrong key" else None)
    if damage == "no manifest":
        (directory / vm.MANIFEST).unlink()
    elif damage == "truncated":
        (directory / "rootfs.ext4").write_bytes(b"r")
    elif damage == "missing file":
        (directory / "vmlinux").unlink()
    with pytest.raises(VmImageMissing):
        vm.verify_image(directory)


def test_find_image_follows_current_and_explains_a_missing_one(tmp_path):
    with pytest.raises(VmImageMissing, match="dmsc vm build"):
        vm.find_image([tmp_path / "a", tmp_path / "b"])
    make_image(tmp_path / "b", "k2")
    vm._point_current(tmp_path / "b", "k2")
    assert vm.find_image([tmp_path / "a", tmp_path / "b"]).directory.name == "k2"


def test_a_half_build_is_never_current_and_is_removed(tmp_path):
    half = make_image(tmp_path, ".tmp-k3-999")
    with pytest.raises(VmImageMissing):
        vm.find_image([tmp_path])
    vm._remove_stale_builds(tmp_path)
    assert not half.exists()


def test_publish_renames_into_place_and_points_current(tmp_path):
    tmp = make_image(tmp_path, ".tmp-k4-1")
    (tmp / vm.MANIFEST).write_text(json.dumps({**json.loads((tmp / vm.MANIFEST).read_text()),
                                               "key": "k4"}))  # fmt: skip
    final = vm._publish(tmp, tmp_path, "k4")
    assert not tmp.exists() and final == tmp_path / "images" / "k4"
    assert vm.find_image([tmp_path]).directory == final.resolve()


def test_default_cache_dir():
    assert vm.default_cache_dir({"DMSC_VM_CACHE": "/x"}, euid=1000) == Path("/x")
    assert vm.default_cache_dir({}, euid=0) == Path("/var/cache/dmsc-vm")
    assert vm.default_cache_dir({"HOME": "/home/u"}, euid=1000) == Path("/home/u/.cache/dmsc/vm")
    assert vm.lookup_cache_dirs({"DMSC_VM_CACHE": "/x"}) == [Path("/x")]


@pytest.fixture
def fake_build(monkeypatch, tmp_path):
    """build() with the host checks and the apt resolution replaced; records fresh builds."""
    state = {"inputs": inputs(), "built": 0}
    monkeypatch.setattr(vm, "check_host_tools", lambda: None)
    monkeypatch.setattr(vm, "resolve_inputs", lambda *args: (state["inputs"], {}))

    def build_new(cache, build_inputs, dates, commands, progress):
        state["built"] += 1
        key = vm.image_key(build_inputs)
        shutil.rmtree(cache / "images" / key, ignore_errors=True)
        make_image(cache, key)
        vm._point_current(cache, key)
        return vm.verify_image(cache / "images" / key)

    monkeypatch.setattr(vm, "_build_new", build_new)
    return state


def test_build_reuses_the_cache_until_an_input_changes(fake_build, tmp_path):
    cache = tmp_path / "cache"
    first = vm.build(cache)
    assert vm.build(cache) == first and fake_build["built"] == 1
    vm.build(cache, force=True)
    assert fake_build["built"] == 2
    fake_build["inputs"] = inputs(kernel_version="6.1.193-1")
    second = vm.build(cache)
    assert fake_build["built"] == 3 and second.directory != first.directory
    assert vm.find_image([cache]).directory == second.directory.resolve()


def test_a_failed_build_leaves_nothing_trusted(monkeypatch, tmp_path):
    monkeypatch.setattr(vm, "check_host_tools", lambda: None)
    monkeypatch.setattr(vm, "resolve_inputs", lambda *args: (inputs(), {}))

    def fail(ctx):
        (ctx.work / "vmlinux").write_bytes(b"half")
        raise vm.VmBuildError("debootstrap failed")

    monkeypatch.setattr(vm, "_run_stages", fail)
    cache = tmp_path / "cache"
    with pytest.raises(vm.VmBuildError):
        vm.build(cache)
    assert [path.name for path in (cache / "images").iterdir()] == []
    with pytest.raises(VmImageMissing):
        vm.find_image([cache])


# --- the runner: pure builders -----------------------------------------------------------


def spec(**changes) -> runner.VmSpec:
    base = runner.VmSpec(
        kernel=Path("/img/vmlinux"),
        initramfs=Path("/img/initramfs.cpio"),
        rootfs=Path("/img/rootfs.ext4"),
        cmdline="console=ttyS0",
        shares=(
            runner.Share("dmsc", Path("/src,odd"), readonly=True),
            runner.Share("results", Path("/out"), readonly=False),
        ),
    )
    return replace(base, **changes)


def test_qemu_command_tcg():
    argv = runner.qemu_command(spec())
    assert argv[:5] == ["qemu-system-x86_64", "-accel", "tcg", "-cpu", "max"]
    assert argv[argv.index("-smp") + 1] == "2" and "-no-reboot" in argv
    assert "file=/img/rootfs.ext4,format=raw,if=virtio,snapshot=on" in argv
    assert "local,path=/src,,odd,mount_tag=dmsc,security_model=none,readonly=on" in argv
    assert "local,path=/out,mount_tag=results,security_model=none" in argv
    assert argv[argv.index("-serial") + 1] == "stdio"


def test_qemu_command_kvm_and_interactive():
    argv = runner.qemu_command(spec(accel="kvm", interactive=True, memory_mib=4096))
    assert argv[1:5] == ["-accel", "kvm", "-cpu", "host"]
    assert argv[argv.index("-serial") + 1] == "mon:stdio" and "4096M" in argv
    with pytest.raises(VmError):
        runner.qemu_command(spec(accel="hvf"))


def test_kernel_cmdline_carries_the_guest_parameters():
    line = runner.kernel_cmdline(nonce="ab12", mode="run", with_ovs=True, size=(120, 40))
    words = line.split()
    assert {"console=ttyS0", "dmsc.mode=run", "dmsc.nonce=ab12", "dmsc.ovs=1"} <= set(words)
    assert {"dmsc.cols=120", "dmsc.rows=40"} <= set(words)
    assert "dmsc.term=" not in runner.kernel_cmdline(
        nonce="n", mode="shell", with_ovs=False, term="bad term"
    )
    with pytest.raises(VmError):
        runner.kernel_cmdline(nonce="n", mode="boot", with_ovs=False)


def uml_spec(**changes) -> runner.UmlSpec:
    base = runner.UmlSpec(
        rootfs=Path("/img/rootfs.ext4"), cow=Path("/scratch/rootfs.cow"),
        cmdline="console=ttyS0 dmsc.mode=run",
    )  # fmt: skip
    return replace(base, **changes)


def test_uml_command_boots_the_image_behind_a_copy_on_write_file():
    argv = runner.uml_command(uml_spec(memory_mib=2048))
    assert argv[:2] == ["linux.uml", "mem=2048M"]
    # the run's writes go to the COW file: the cached image stays as built
    assert "ubd0=/scratch/rootfs.cow,/img/rootfs.ext4" in argv and "root=/dev/ubda" in argv
    assert "init=/sbin/dmsc-init" in argv and "con=null" in argv
    assert "ssl0=null,fd:1" in argv  # the guest's ttyS0 on stdout, no input
    assert argv[-2:] == ["console=ttyS0", "dmsc.mode=run"]
    assert "ssl0=fd:0,fd:1" in runner.uml_command(uml_spec(interactive=True))


def test_uml_cmdline_names_the_modules_and_every_share():
    shares = (
        runner.Share("dmsc", Path("/src"), readonly=True),
        runner.Share("results", Path("/out"), readonly=False),
    )
    words = runner.uml_cmdline_words(shares, Path("/usr/lib/uml/modules"))
    assert words == [
        "dmsc.backend=uml", "dmsc.modules=/usr/lib/uml/modules",
        "dmsc.share=dmsc:ro:/src", "dmsc.share=results:rw:/out",
    ]  # fmt: skip


@pytest.mark.parametrize("path", ["/with space", "/with,comma", "relative", "/tab\there"])
def test_uml_refuses_a_path_hostfs_cannot_carry(path):
    with pytest.raises(VmError, match="--backend qemu"):
        runner.uml_cmdline_words((runner.Share("results", Path(path), False),), Path("/m"))


def test_auto_backend_is_uml_when_installed_else_qemu(tmp_path, monkeypatch):
    fake_uml = fake_uml_kernel(tmp_path, monkeypatch, "")
    resolved = runner.resolve_backend(runner.VmOptions(results=tmp_path, uml=str(fake_uml)))
    assert resolved.backend == "uml"
    qemu = tmp_path / "qemu-fake"
    qemu.write_text("#!/bin/sh\n")
    qemu.chmod(0o755)
    without_uml = runner.VmOptions(results=tmp_path, uml="/nonexistent/linux.uml", qemu=str(qemu))
    assert runner.resolve_backend(without_uml).backend == "qemu"


def test_backend_errors_name_what_is_missing(tmp_path, monkeypatch):
    with pytest.raises(VmError, match="unknown VM backend 'xen'"):
        runner.resolve_backend(runner.VmOptions(results=tmp_path, backend="xen"))
    with pytest.raises(VmError, match="user-mode-linux"):
        runner.resolve_backend(
            runner.VmOptions(results=tmp_path, backend="uml", uml="/nonexistent/linux.uml")
        )
    fake_uml = fake_uml_kernel(tmp_path, monkeypatch, "")
    (tmp_path / "modules" / "6.1.99" / "modules.dep").unlink()
    with pytest.raises(VmError, match="no modules for"):
        runner.resolve_backend(runner.VmOptions(results=tmp_path, uml=str(fake_uml)))


def fake_uml_kernel(tmp_path: Path, monkeypatch, body: str) -> Path:
    """A stand-in ``linux.uml`` (release 6.1.99, its modules folder faked too) whose boot runs
    ``body`` with ``args`` its arguments."""
    modules = tmp_path / "modules"
    (modules / "6.1.99").mkdir(parents=True)
    (modules / "6.1.99" / "modules.dep").write_text("")
    monkeypatch.setattr(runner, "UML_MODULES", modules)
    fake = tmp_path / "linux.uml"
    script = """
        import pathlib, re, sys
        args = sys.argv[1:]
        if args == ["--version"]:
            print("6.1.99")
            sys.exit(0)
    """
    fake.write_text(f"#!{sys.executable}\n" + textwrap.dedent(script) + textwrap.dedent(body))
    fake.chmod(0o755)
    return fake


def test_run_under_uml_hands_the_command_and_the_shares_to_the_guest(tmp_path, monkeypatch):
    """run() end to end with a fake UML that reads the job share and answers like the init."""
    body = """
        words = dict(a.split("=", 1) for a in args if "=" in a)
        nonce = words["dmsc.nonce"]
        shares = [a.split("=", 1)[1].split(":", 2) for a in args if a.startswith("dmsc.share=")]
        job = next(path for tag, mode, path in shares if tag == "job")
        cow, rootfs = words["ubd0"].split(",")
        argv = pathlib.Path(job, "argv").read_bytes().split(b"\\0")[:-1]
        print(f"DMSC-VM-{nonce} ready")
        print("ran", " ".join(a.decode() for a in argv[2:]))
        print("modes", " ".join(f"{tag}:{mode}" for tag, mode, path in shares))
        print("cow shared:", any(pathlib.Path(cow).is_relative_to(p) for _, _, p in shares))
        print(f"DMSC-VM-{nonce} exit 3")
    """
    fake = fake_uml_kernel(tmp_path, monkeypatch, body)
    image = vm.Image(make_image(tmp_path, "k6"), {})
    options = runner.VmOptions(results=tmp_path / "results", uml=str(fake))
    out = tmp_path / "out.txt"
    with open(out, "w") as out_file:
        result = runner.run(image, ["echo", "a b"], options, checkout=REPO, out=out_file)
    assert result.status == 3
    assert out.read_text().splitlines() == [
        "ran echo a b", "modes dmsc:ro results:rw job:ro", "cow shared: False"
    ]  # fmt: skip


def test_markers_need_the_nonce():
    assert runner.parse_marker("DMSC-VM-ab ready\n", "ab") == ("ready", None)
    assert runner.parse_marker("Booting from ROM..DMSC-VM-ab ready\r\n", "ab") == (
        "ready",
        None,
    )
    assert runner.parse_marker("DMSC-VM-ab exit 3", "ab") == ("exit", 3)
    assert runner.parse_marker("DMSC-VM-zz exit 0", "ab") is None
    assert runner.parse_marker("echo DMSC-VM-ab exit 0 >log", "ab") is None


def test_job_file_and_experiment_paths(tmp_path):
    assert runner.job_argv_bytes(["sh", "-c", "echo a b"]) == b"sh\0-c\0echo a b\0"
    with pytest.raises(VmError):
        runner.job_argv_bytes([])
    assert runner.is_experiment(["exp.yaml"]) and not runner.is_experiment(["exp.yaml", "x"])
    inside = REPO / "experiments" / "a.yaml"
    assert runner.experiment_in_guest(inside, REPO) == "/dmsc/experiments/a.yaml"
    assert runner.experiment_in_guest(tmp_path / "a.yaml", REPO) is None


def test_an_experiment_outside_the_checkout_travels_in_the_job(tmp_path):
    experiment = tmp_path / "mine.yaml"
    experiment.write_text("duration: 1\n")
    job = tmp_path / "job"
    job.mkdir()
    argv = runner._guest_argv([str(experiment)], REPO, job)
    assert argv == ["dmsc", "run", "/run/dmsc-job/mine.yaml"]
    assert (job / "mine.yaml").read_text() == "duration: 1\n"
    with pytest.raises(VmError, match="no such experiment"):
        runner._guest_argv([str(tmp_path / "none.yaml")], REPO, job)


def test_the_guest_command_carries_the_hosts_commit(tmp_path, monkeypatch):
    monkeypatch.delenv(HOST_COMMIT_ENV, raising=False)
    argv = runner.with_host_commit(["dmsc", "run", "x.yaml"], REPO)
    assert argv[0] == "env" and argv[2:] == ["dmsc", "run", "x.yaml"]
    name, commit = argv[1].split("=")
    assert name == HOST_COMMIT_ENV and commit == git_commit(REPO)
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", commit)
    assert runner.with_host_commit(["true"], tmp_path) == ["true"]  # not a repository
    monkeypatch.setenv(HOST_COMMIT_ENV, commit)  # as in the guest, whose git cannot answer
    assert git_commit(tmp_path) == commit


# --- the runner: deadlines and reaping, with fake qemu programs --------------------------


def python_program(tmp_path: Path, body: str) -> list[str]:
    script = tmp_path / "fake_qemu.py"
    script.write_text(textwrap.dedent(body))
    return [sys.executable, str(script)]


def supervise(argv, tmp_path, **kwargs):
    out, log = tmp_path / "out.txt", tmp_path / "console.log"
    with open(out, "w") as out_file, open(log, "w") as log_file:
        result = runner.supervise(argv, out=out_file, log=log_file, **kwargs)
    return result, out.read_text(), log.read_text()


def pid_is_gone(pid: int) -> bool:
    """No such process, or a zombie (dead; reaping an orphan is its new parent's business)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def test_a_hung_guest_is_killed_at_the_deadline(tmp_path):
    pidfile = tmp_path / "pid"
    argv = ["sh", "-c", f'echo $$ > "{pidfile}"; exec sleep 1000']
    began = time.monotonic()
    result, out, log = supervise(argv, tmp_path, nonce="n", timeout=1.0)
    assert time.monotonic() - began < 10
    assert result.status == runner.TIMED_OUT and result.timed_out
    assert "timed out after 1 s while booting" in result.reason
    assert pid_is_gone(int(pidfile.read_text()))
    assert "timed out" in log and out == ""


def test_a_command_that_hangs_after_ready_times_out_too(tmp_path):
    argv = python_program(
        tmp_path,
        """
        import time
        print("DMSC-VM-n ready", flush=True)
        print("working", flush=True)
        time.sleep(1000)
        """,
    )
    result, out, _ = supervise(argv, tmp_path, nonce="n", timeout=2.0)
    assert result.status == 124 and "while the command ran" in result.reason
    assert out == "working\n"


def test_status_and_output_come_from_the_guest(tmp_path):
    argv = python_program(
        tmp_path,
        """
        print("SeaBIOS noise\\r")
        print("Booting..DMSC-VM-n ready\\r", flush=True)
        print("result line\\r")
        print("\\r")
        print("after a blank line")
        print("DMSC-VM-other exit 0")
        print("\\r")
        print("DMSC-VM-n exit 3\\r", flush=True)
        print("[ 9.1] reboot: Power down")
        """,
    )
    result, out, log = supervise(argv, tmp_path, nonce="n", timeout=30)
    assert result.status == 3 and not result.timed_out and result.ready_seconds is not None
    assert out == "result line\n\nafter a blank line\nDMSC-VM-other exit 0\n"
    assert "SeaBIOS noise" in log and "\r" not in log


def test_a_guest_that_does_not_power_off_is_killed_after_the_grace(tmp_path):
    pidfile = tmp_path / "pid"
    argv = ["sh", "-c", f'echo $$ > "{pidfile}"; echo "DMSC-VM-n ready"; '
                        'echo "DMSC-VM-n exit 0"; exec sleep 1000']  # fmt: skip
    result, _, _ = supervise(argv, tmp_path, nonce="n", timeout=30, grace=0.5)
    assert result.status == 0
    assert pid_is_gone(int(pidfile.read_text()))


def test_a_setup_failure_before_the_command_is_explained(tmp_path):
    argv = ["sh", "-c", 'echo "dmsc-init: Open vSwitch did not become ready"; '
                        'echo "DMSC-VM-n exit 125"']  # fmt: skip
    result, out, log = supervise(argv, tmp_path, nonce="n", timeout=30)
    assert result.status == 125 and "before the command started" in result.reason
    assert out == "" and "Open vSwitch" in log


def test_a_vm_that_stops_without_a_status_is_a_failure(tmp_path):
    argv = ["sh", "-c", "echo 'Kernel panic - not syncing'; exit 0"]
    result, _, log = supervise(argv, tmp_path, nonce="n", timeout=30)
    assert result.status == runner.VM_FAILED and "before it was ready" in result.reason
    assert "Kernel panic" in log


def test_run_hands_the_command_to_the_guest(tmp_path):
    """run() end to end with a fake qemu that reads the job share and answers like the init."""
    fake = tmp_path / "qemu-fake"
    fake.write_text(
        f"#!{sys.executable}\n"
        + textwrap.dedent(
            """
            import pathlib, re, sys
            args = sys.argv[1:]
            nonce = re.search(r"dmsc.nonce=(\\w+)", args[args.index("-append") + 1]).group(1)
            shares = [a for a in args if a.startswith("local,")]
            job = next(s for s in shares if "mount_tag=job" in s).split(",")[1][5:]
            argv = pathlib.Path(job, "argv").read_bytes().split(b"\\0")[:-1]
            print(f"DMSC-VM-{nonce} ready")
            print("ran", " ".join(a.decode() for a in argv))
            print(f"DMSC-VM-{nonce} exit 5")
            """
        )
    )
    fake.chmod(0o755)
    image = vm.Image(make_image(tmp_path, "k5"), {})
    options = runner.VmOptions(results=tmp_path / "results", backend="qemu", qemu=str(fake))
    out = tmp_path / "out.txt"
    with open(out, "w") as out_file:
        result = runner.run(image, ["echo", "a b"], options, checkout=REPO, out=out_file)
    assert result.status == 5
    # the guest runs it with the checkout's commit in its environment, for metadata.json
    assert out.read_text() == f"ran env {HOST_COMMIT_ENV}={git_commit(REPO)} echo a b\n"
    assert (tmp_path / "results" / runner.CONSOLE_LOG).exists()


# --- the in-VM checks' verdicts ----------------------------------------------------------


def uniform_rtts(count: int, delay: float, jitter: float, base: float = 0.3) -> list[float]:
    return [delay - jitter + 2 * jitter * (i + 0.5) / count + base for i in range(count)]


def test_delay_verdict_accepts_netem_like_samples():
    check = selftest.delay_verdict(uniform_rtts(40, 50, 10), 50, 10, 40)
    assert check.ok, check.detail


@pytest.mark.parametrize(
    "rtts, problem",
    [
        ([50.2] * 40, "spread"),  # no jitter applied
        (uniform_rtts(40, 70, 10), "median"),  # wrong delay
        ([0.3] * 40, "median"),  # no netem at all
        (uniform_rtts(30, 50, 10), "replies"),  # lost replies
    ],
)
def test_delay_verdict_rejects(rtts, problem):
    check = selftest.delay_verdict(rtts, 50, 10, 40)
    assert not check.ok and problem in check.detail


def test_loss_verdict_uses_a_binomial_band():
    low, high = selftest.binomial_bounds(200, 0.2, 4)
    assert low == pytest.approx(0.0869, abs=1e-3) and high == pytest.approx(0.3131, abs=1e-3)
    assert selftest.loss_verdict(200, 160, 0.2, 4).ok
    assert not selftest.loss_verdict(200, 200, 0.2, 4).ok
    assert not selftest.loss_verdict(200, 100, 0.2, 4).ok


def test_ping_output_is_parsed():
    output = (
        "64 bytes from 10.0.0.2: icmp_seq=1 ttl=64 time=51.3 ms\n"
        "64 bytes from 10.0.0.2: icmp_seq=2 ttl=64 time=44.0 ms\n"
        "2 packets transmitted, 2 received, 0% packet loss, time 1001ms\n"
    )
    assert selftest.parse_ping_rtts(output) == [51.3, 44.0]
    assert selftest.parse_ping_counts(output) == (2, 2)


def test_ovs_and_mininet_verdicts():
    dpctl = "system@ovs-system:\n  lookups: hit:0\n  port 0: ovs-system (internal)\n"
    assert not selftest.ovs_verdict(dpctl, "dmsc-st-br").ok
    assert selftest.ovs_verdict(dpctl + "  port 1: dmsc-st-br (internal)\n", "dmsc-st-br").ok
    assert selftest.mininet_verdict("*** Results: 0% dropped (2/2 received)\n", 0).ok
    assert not selftest.mininet_verdict("*** Results: 50% dropped (1/2 received)\n", 0).ok


def test_strip_keeps_copyrights_and_drops_caches_and_test_suites(tmp_path):
    root = tmp_path / "work" / "root"
    site = root / vm.VENV / "lib" / "python3.11" / "site-packages"
    files = [
        "usr/share/doc/mininet/copyright",
        "usr/share/doc/mininet/README.gz",
        "var/lib/apt/lists/deb.debian.org_InRelease",
        "usr/share/man/man8/tc.8.gz",
        f"{site.relative_to(root)}/pandas/tests/io/test_csv.py",
        f"{site.relative_to(root)}/pandas/core/frame.py",
    ]
    for relative in files:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text("x")
    ctx = vm.BuildContext(inputs(), tmp_path / "work", tmp_path, None, None)
    vm.strip_root(ctx)
    left = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert left == sorted([files[0], files[5]])


def test_sigterm_unwinds_like_ctrl_c():
    import signal

    with pytest.raises(KeyboardInterrupt), runner.sigterm_unwinds():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_qemu_dies_with_a_killed_runner(tmp_path):
    """Even if ``dmsc vm run`` is killed with SIGKILL, the (fake) qemu does not outlive it."""
    import signal
    import subprocess

    pidfile = tmp_path / "qemu.pid"
    program = textwrap.dedent(
        f"""
        import io, sys
        from dmsc.vm import runner
        argv = ["sh", "-c", 'echo $$ > "{pidfile}"; exec sleep 1000']
        runner.supervise(argv, nonce="n", timeout=600, out=io.StringIO(), log=io.StringIO())
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", program], cwd=REPO)
    try:
        deadline = time.monotonic() + 20
        while not (pidfile.exists() and pidfile.read_text().strip()):
            assert time.monotonic() < deadline, "the fake qemu did not start"
            time.sleep(0.05)
        qemu_pid = int(pidfile.read_text())
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        while not pid_is_gone(qemu_pid):
            assert time.monotonic() < deadline, "the fake qemu outlived its runner"
            time.sleep(0.05)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
