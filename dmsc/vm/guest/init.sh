#!/bin/bash
# /sbin/dmsc-init: PID 1 of the experiment VM (installed by `dmsc vm build`).
#
# Mounts the kernel file systems and the host's shares (the project checkout read-only at /dmsc,
# the results folder at /results, the job at /run/dmsc-job: 9p under qemu, from /etc/fstab;
# hostfs under User-Mode Linux, from the kernel command line), starts Open vSwitch when asked,
# then either runs the job's command (mode "run") or gives a login shell on the serial console
# (mode "shell"), and powers off.
#
# The host reads two marker lines on the serial console, made unique by a nonce it chose:
#   DMSC-VM-<nonce> ready            the guest is set up; the command starts now
#   DMSC-VM-<nonce> exit <status>    the command ended with this exit status
# Parameters come from the kernel command line: dmsc.mode, dmsc.nonce, dmsc.ovs, dmsc.term,
# dmsc.rows, dmsc.cols; under UML also dmsc.backend=uml, dmsc.modules (the host folder of the
# UML kernel's modules) and one dmsc.share=TAG:ro|rw:HOST-PATH per share.

export PATH=/opt/dmsc/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 PYTHONPATH=/dmsc PYTHONDONTWRITEBYTECODE=1
export DMSC_IN_VM=1 DMSC_RESULTS=/results

MODE=run NONCE=none OVS=0 TERM=vt100 ROWS= COLS= BACKEND=qemu MODULES=
SHARES=()
STATUS=125

say() { echo "dmsc-init: $*"; }

power_off() {
    sync
    umount /results 2>/dev/null
    echo o >/proc/sysrq-trigger
    sleep 60
}

parse_cmdline() {
    local word words
    read -r -a words </proc/cmdline
    for word in "${words[@]}"; do
        case "$word" in
            dmsc.mode=*) MODE=${word#dmsc.mode=} ;;
            dmsc.nonce=*) NONCE=${word#dmsc.nonce=} ;;
            dmsc.ovs=*) OVS=${word#dmsc.ovs=} ;;
            dmsc.term=*) TERM=${word#dmsc.term=} ;;
            dmsc.rows=*) ROWS=${word#dmsc.rows=} ;;
            dmsc.cols=*) COLS=${word#dmsc.cols=} ;;
            dmsc.backend=*) BACKEND=${word#dmsc.backend=} ;;
            dmsc.modules=*) MODULES=${word#dmsc.modules=} ;;
            dmsc.share=*) SHARES+=("${word#dmsc.share=}") ;;
        esac
    done
    export TERM DMSC_VM_BACKEND=$BACKEND
}

# Few processes: each one costs ~0.1 s under TCG. Other modules (sch_netem, veth, bridge,
# ...) load on demand: the kernel runs modprobe when tc or ip need them.
mount_system() {
    mount -t sysfs sysfs /sys
    if [ "$BACKEND" = uml ]; then
        mount_uml
    else
        modprobe -a 9pnet_virtio 9p virtio_rng || say "9p modules did not load"
        mount -a || say "not every file system in /etc/fstab was mounted"
    fi
    mkdir -p /run/lock /run/openvswitch /run/netns
    mountpoint -q /dmsc || say "the project checkout is not shared at /dmsc"
}

# The UML kernel's modules are the host's (its package's, for its release): mounted first, so
# that modprobe finds them. IPv6 is a module there, built in Debian's kernel: loaded up front,
# as the sysctls under /proc/sys/net/ipv6 exist only once it is.
mount_uml() {
    local release share tag mode path where
    release=$(uname -r)
    mount -a -t no9p || say "not every file system in /etc/fstab was mounted"
    mkdir -p "/lib/modules/$release"
    mount -t hostfs -o ro,"$MODULES/$release" hostfs "/lib/modules/$release" ||
        say "the UML kernel's modules are not at $MODULES on the host"
    modprobe ipv6 || say "IPv6 did not load"
    for share in "${SHARES[@]}"; do
        IFS=: read -r tag mode path <<<"$share"
        case "$tag" in
            dmsc) where=/dmsc ;; results) where=/results ;; job) where=/run/dmsc-job ;;
            *) say "unknown share $tag"; continue ;;
        esac
        mkdir -p "$where"
        mount -t hostfs -o "$mode,$path" hostfs "$where" || say "share $tag was not mounted"
    done
}

# The two daemons started directly (ovs-ctl runs dozens of processes: slow under TCG); the
# database was created at build time.
start_ovs() {
    local run=/run/openvswitch
    modprobe openvswitch || return 1
    ovsdb-server /etc/openvswitch/conf.db --remote="punix:$run/db.sock" \
        --pidfile="$run/ovsdb-server.pid" --log-file="$run/ovsdb-server.log" \
        --detach --no-chdir || return 1
    ovs-vsctl --no-wait init || return 1
    ovs-vswitchd "unix:$run/db.sock" --pidfile="$run/ovs-vswitchd.pid" \
        --log-file="$run/ovs-vswitchd.log" --detach --no-chdir || return 1
    # Ready when both daemons answer; poll with a 60 s deadline (TCG is slow).
    local deadline=$((SECONDS + 60))
    until ovs-vsctl --timeout=2 show >/dev/null 2>&1 &&
        ovs-appctl --timeout=2 -t ovs-vswitchd version >/dev/null 2>&1; do
        [ "$SECONDS" -ge "$deadline" ] && return 1
        sleep 0.2
    done
}

run_job() {
    local -a argv
    if [ ! -s /run/dmsc-job/argv ]; then
        say "no command in the job share"
        return 125
    fi
    mapfile -d '' -t argv </run/dmsc-job/argv
    cd /dmsc || return 125
    "${argv[@]}" </dev/null
}

run_shell() {
    [ -n "$ROWS" ] && [ -n "$COLS" ] && stty -F /dev/ttyS0 rows "$ROWS" cols "$COLS"
    cat /etc/motd 2>/dev/null
    cd /dmsc || cd /root
    setsid -c /bin/bash -l </dev/ttyS0 >/dev/ttyS0 2>&1
}

marker() { # shown in mode "run" only, where the host reads it
    [ "$MODE" = run ] && printf '\nDMSC-VM-%s %s\n' "$NONCE" "$*"
}

main() {
    mount -t proc proc /proc
    parse_cmdline
    mount_system
    hostname dmsc-vm
    ip link set lo up
    if [ "$OVS" = 1 ] && ! start_ovs; then
        say "Open vSwitch did not become ready"
        marker exit 125
        power_off
    fi
    marker ready
    if [ "$MODE" = shell ]; then
        run_shell
    else
        run_job
    fi
    STATUS=$?
    marker exit "$STATUS"
    power_off
}

main
power_off
