"""Process lifecycle shared by the commands that own resources (emulated networks, the VM)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """SIGTERM (a CI job's timeout, ``kill PID``) unwinds like Ctrl-C, so that every
    ``finally`` runs: Python's default for SIGTERM exits at once, which would leave node
    programs in their namespaces, qemu unreaped, a half build on disk."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
