#!/usr/bin/env bash
# Build (or reuse) the experiment VM image, then run the VM tests (tests/vm) against it.
#
#   PYTHON=/path/to/venv/bin/python scripts/ci-vm.sh [extra pytest arguments]
#
# Idempotent: `dmsc vm build` reuses the cached image (/var/cache/dmsc-vm, or $DMSC_VM_CACHE)
# unless one of its inputs changed, and a build that fails leaves no image behind. Needs root
# (debootstrap, chroot) and the host tools, which `./testbed setup` installs (they are in
# debian-packages.txt). Fails loudly: any failed step stops the script with a non-zero status,
# and the VM tests are not allowed to skip for want of an image.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}

say() { printf 'ci-vm: %s\n' "$*" >&2; }

check_host_tools() {  # installed by ./testbed setup (debian-packages.txt), not here
    local -a missing=()
    command -v qemu-system-x86_64 >/dev/null || missing+=("qemu-system-x86_64 (qemu-system-x86)")
    command -v debootstrap >/dev/null || missing+=("debootstrap (debootstrap)")
    command -v mke2fs >/dev/null || missing+=("mke2fs (e2fsprogs)")
    command -v dpkg-deb >/dev/null || missing+=("dpkg-deb (dpkg)")
    if ((${#missing[@]})); then
        say "missing host tools: ${missing[*]}; run ./testbed setup (as root) to install them"
        exit 1
    fi
}

main() {
    if [[ $(id -u) -ne 0 ]]; then
        say "must run as root (debootstrap and chroot build the image)"
        exit 1
    fi
    check_host_tools
    say "building or reusing the image"
    "$PYTHON" -m dmsc.cli.vm build
    "$PYTHON" -m dmsc.cli.vm info
    say "running the VM tests"
    DMSC_VM_REQUIRE_IMAGE=1 "$PYTHON" -m pytest tests/vm -m vm -p no:cacheprovider -rs "$@"
}

main "$@"
