"""The experiment VM: a Debian root file system with Debian's kernel, booted with qemu.

The development and CI machines' kernel has no ``sch_netem`` (and no Open vSwitch datapath), so
delay, jitter and loss come from this VM. :mod:`dmsc.vm.image` builds and caches the image,
:mod:`dmsc.vm.runner` boots it to run a command or give a shell, and ``dmsc/vm/guest/`` holds
the files installed inside it (its init, the initramfs init).
"""

from __future__ import annotations

from dmsc.errors import DmscError


class VmError(DmscError):
    """The experiment VM could not be built or run."""


class VmImageMissing(VmError):
    """No complete, trusted image in the cache: build it with ``dmsc vm build``."""
