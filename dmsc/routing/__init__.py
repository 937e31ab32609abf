"""Link-state routing by service prefix (sans-I/O): adjacency, flooding, LSDB, SPF, RIB/FIB."""

from dmsc.routing.config import LinkStateTimers
from dmsc.routing.router import LinkStateRouter, RouterEvent

__all__ = ["LinkStateRouter", "LinkStateTimers", "RouterEvent"]
