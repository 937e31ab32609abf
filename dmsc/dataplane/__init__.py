"""The DMSC data plane: per-packet decisions (pure) and the AF_PACKET forwarding loop.

See docs/dataplane.md. The node program builds :class:`Tables` and hands them to a
:class:`~dmsc.dataplane.forwarder.Forwarder`; tests and benchmarks drive :func:`decide` and
:class:`Dataplane` directly.
"""

from dmsc.dataplane.decide import Dataplane, decide, forwarded
from dmsc.dataplane.tables import (
    DROP,
    Counters,
    DropReason,
    Masked,
    NextHop,
    Policy,
    Port,
    PortCounters,
    Route,
    Tables,
    compile_tables,
    format_mac,
    parse_mac,
)

__all__ = [
    "DROP",
    "Counters",
    "Dataplane",
    "DropReason",
    "Masked",
    "NextHop",
    "Policy",
    "Port",
    "PortCounters",
    "Route",
    "Tables",
    "compile_tables",
    "decide",
    "format_mac",
    "forwarded",
    "parse_mac",
]
