#!/usr/bin/env bash
# The README's commands on a bare Debian 12: a debootstrap minbase root with nothing but a clean
# clone of this repository, where `./testbed setup` must install everything the project needs.
# Inside it: the set-up, the unit tests, a Mininet test, `dmsc vm build` and a VM test. A step
# the set-up forgot fails here, however complete this machine is.
#
#   scripts/bare-root-check.sh [--main]    (as root; --main also runs `./testbed main --quick`)
#
# The root inherits only how this machine reaches its package mirrors (apt sources and options,
# local CA certificates, pip's index configuration, DNS), never installed software. Caches, kept
# between runs under $DMSC_BARE_CACHE (default /var/cache/dmsc-bare): the debootstrap tarball,
# apt's downloaded packages, pip's wheels, and the experiment VM's image cache (/var/cache/dmsc-vm,
# shared with the host, keyed by the image's inputs: on a machine without an image, it is built
# here, in the bare root). Everything mounted or made is removed on exit, also on failure.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."

CACHE=${DMSC_BARE_CACHE:-/var/cache/dmsc-bare}
VM_CACHE=${DMSC_VM_CACHE:-/var/cache/dmsc-vm}
SUITE=bookworm
MOUNTS=()   # mounted inside the root, unmounted in reverse order on exit
ROOT=""
RUN_MAIN=0
SRC=/root/dmsc-testbed   # the clone's place inside the root

say() { printf '\033[1m[bare-root]\033[0m %s\n' "$*" >&2; }
elapsed() { echo "$(($(date +%s) - STARTED)) s"; }

mirror() {  # the Debian mirror this machine's apt uses (deb822 or one-line sources)
    local uri
    uri=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' |
        grep -v security | head -n1)
    [ -n "$uri" ] || uri=$(grep -hs '^deb ' /etc/apt/sources.list | awk '{print $2}' | head -n1)
    echo "${uri:-http://deb.debian.org/debian}"
}

cleanup() {
    local status=$? index
    for ((index = ${#MOUNTS[@]} - 1; index >= 0; index--)); do
        umount -R "${MOUNTS[index]}" 2>/dev/null || umount -lR "${MOUNTS[index]}" || true
    done
    if [ -n "$ROOT" ] && ! grep -qE " $ROOT[/ ]" /proc/self/mounts; then
        rm -rf --one-file-system "$ROOT"
    elif [ -n "$ROOT" ]; then
        say "left $ROOT: something is still mounted in it"
    fi
    [ "$status" = 0 ] && say "passed in $(elapsed)" || say "FAILED (status $status) after $(elapsed)"
    exit "$status"
}

bind() {  # bind SOURCE at TARGET inside the root
    mkdir -p "$1" "$ROOT$2"
    mount --rbind "$1" "$ROOT$2"
    mount --make-rslave "$ROOT$2"
    MOUNTS+=("$ROOT$2")
}

make_root() {
    local tarball="$CACHE/debootstrap-$SUITE-minbase.tar" source
    source=$(mirror)
    mkdir -p "$CACHE"
    if [ ! -f "$tarball" ]; then
        say "debootstrap tarball (downloads the minbase packages once) from $source"
        debootstrap --variant=minbase --make-tarball="$tarball.part" "$SUITE" "$CACHE/tarball-work" \
            "$source" >"$CACHE/debootstrap.log"
        rm -rf "$CACHE/tarball-work"
        mv "$tarball.part" "$tarball"
    fi
    say "debootstrap --variant=minbase $SUITE into $ROOT"
    debootstrap --variant=minbase --unpack-tarball="$tarball" "$SUITE" "$ROOT" "$source" \
        >"$CACHE/debootstrap.log"
}

inherit_network_configuration() {
    cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
    cp -a /etc/apt/sources.list.d/. "$ROOT/etc/apt/sources.list.d/"
    rm -f "$ROOT/etc/apt/sources.list"  # debootstrap's; the machine's own sources replace it
    [ -f /etc/apt/sources.list ] && cp /etc/apt/sources.list "$ROOT/etc/apt/sources.list"
    # apt options that concern reaching the mirror (not Docker's "clean after install")
    find /etc/apt/apt.conf.d -maxdepth 1 -type f ! -name 'docker-*' -exec \
        grep -lE 'Acquire::|Proxy' {} + 2>/dev/null | xargs -r cp -t "$ROOT/etc/apt/apt.conf.d/"
    mkdir -p "$ROOT/usr/local/share/ca-certificates"
    cp -a /usr/local/share/ca-certificates/. "$ROOT/usr/local/share/ca-certificates/"
    for config in /etc/pip.conf /etc/xdg/pip; do
        [ -e "$config" ] && mkdir -p "$ROOT$(dirname "$config")" && cp -a "$config" "$ROOT$config"
    done
    return 0
}

mount_system() {
    # the root a mount point of its own, as / is on a machine: `ip netns exec` and `ip -n`
    # make / a recursive slave, which fails on a plain directory
    mount --bind "$ROOT" "$ROOT"
    MOUNTS+=("$ROOT")
    bind /proc /proc
    bind /sys /sys
    bind /dev /dev
    mkdir -p "$ROOT/run"
    mount -t tmpfs tmpfs "$ROOT/run"  # its own /run: /run/netns, /run/dmsc stay inside
    MOUNTS+=("$ROOT/run")
    bind "$CACHE/apt-archives" /var/cache/apt/archives
    bind "$CACHE/pip" /root/.cache/pip
    bind "$VM_CACHE" /var/cache/dmsc-vm
}

inside() {  # run a command in the clone inside the root, with the machine's pip/TLS variables
    local -a environment=(HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
        TERM="${TERM:-dumb}" LANG=C.UTF-8)
    local name
    for name in $(compgen -e); do
        case "$name" in PIP_* | *_CA_BUNDLE | SSL_CERT_* | *_CA_CERTS* | *_proxy | *_PROXY)
            environment+=("$name=${!name}") ;;
        esac
    done
    say "\$ $*"
    # A mount namespace whose root is the root, as a machine's is: Mininet's `mnexec -a` enters
    # a host's mount namespace with setns(), which resets a process's root to that namespace's
    # root, so a plain chroot would send every node program back to this machine's /.
    unshare --mount --propagation private /bin/sh -ec '
        cd "$1" && shift
        mkdir -p .machine-root && pivot_root . .machine-root
        umount -l /.machine-root && rmdir /.machine-root
        exec chroot / "$@"' pivot "$ROOT" \
        /usr/bin/env -i "${environment[@]}" /bin/bash -c "cd $SRC && $*"
}

main() {
    [ "$(id -u)" = 0 ] || { say "must run as root (debootstrap, mount namespaces, mounts)"; exit 1; }
    [ "${1:-}" = "--main" ] && RUN_MAIN=1
    command -v debootstrap >/dev/null || { say "debootstrap is missing: run ./testbed setup"; exit 1; }
    STARTED=$(date +%s)
    mkdir -p /var/tmp/dmsc-bare
    ROOT=$(mktemp -d /var/tmp/dmsc-bare/root.XXXXXX)
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    make_root
    inherit_network_configuration
    mount_system
    say "a clean clone of $(git rev-parse --short HEAD) at $SRC"
    git clone --quiet --no-hardlinks "$PWD" "$ROOT$SRC"
    local part began
    for part in "./testbed setup" \
        "./testbed test tests/unit -q -p no:cacheprovider" \
        "./testbed test tests/mininet/test_data_plane.py -q -p no:cacheprovider" \
        ".venv/bin/dmsc vm build" \
        "DMSC_VM_REQUIRE_IMAGE=1 ./testbed test tests/vm/test_vm_basics.py -m vm -q -p no:cacheprovider"; do
        began=$(date +%s)
        inside "$part"
        say "took $(($(date +%s) - began)) s: $part"
    done
    if [ "$RUN_MAIN" = 1 ]; then
        began=$(date +%s)
        inside "./testbed main --quick && ls results/*/"
        rm -rf "$CACHE/main-results" && cp -a "$ROOT$SRC/results" "$CACHE/main-results"
        say "the main job's results, kept: $CACHE/main-results"
        say "took $(($(date +%s) - began)) s: ./testbed main --quick"
    fi
}

main "$@"
