#!/bin/busybox sh
# /init of the experiment VM's initramfs: load the modules the root disk needs (virtio, ext4),
# mount the root file system and hand over to the project's init (/sbin/dmsc-init).
# Debian's kernel has virtio_blk and ext4 as modules, hence this small first stage.

/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /newroot
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

fail() {
    echo "dmsc-initramfs: $*" >/dev/console
    echo o >/proc/sysrq-trigger
    sleep 60
}

# modules.order lists paths, dependencies first, one a line.
while read -r module; do
    insmod "/lib/modules/$module" 2>/dev/null || echo "dmsc-initramfs: could not load $module"
done </modules.order

# Poll for the root disk (virtio probing is asynchronous), up to 30 s.
tries=0
while [ ! -b /dev/vda ]; do
    tries=$((tries + 1))
    [ "$tries" -gt 300 ] && fail "no root disk /dev/vda"
    sleep 0.1
done

mount -t ext4 -o rw /dev/vda /newroot || fail "cannot mount /dev/vda"
umount /sys
umount /proc
mount --move /dev /newroot/dev || umount /dev
exec switch_root /newroot /sbin/dmsc-init
