"""What a node tells about itself: JSON-ready views of its link-state core (CLI, tests)."""

from __future__ import annotations

from dmsc.names import name_address
from dmsc.routing import LinkStateRouter
from dmsc.routing.rib import RibEntry


def neighbors(router: LinkStateRouter) -> list[dict]:
    return [
        {
            "interface": n.interface,
            "node": n.node_id,
            "state": n.state.value,
            "mac": n.hardware_address.hex(":"),
            "pending_acks": len(n.retransmit),
        }
        for by_id in router.neighbors.values()
        for n in by_id.values()
    ]


def lsdb(router: LinkStateRouter, now: float) -> list[dict]:
    return [
        {
            "originator": e.lsa.originator,
            "sequence": e.lsa.sequence,
            "remaining_s": round(e.remaining_ms(now) / 1000, 1),
            "purge": e.is_purge,
            "adjacencies": {a.neighbor: a.cost for a in e.lsa.adjacencies},
            "prefixes": [p.name for p in e.lsa.prefixes],
        }
        for e in sorted(router.lsdb, key=lambda e: e.lsa.originator)
    ]


def _route(entry: RibEntry) -> dict:
    return {
        "prefix": str(entry.prefix),
        "label": entry.label,
        "distance": entry.distance,
        "origins": list(entry.origins),
        "local": entry.local,
        "next_hops": [{"interface": i, "node": n} for i, n in sorted(entry.next_hops)],
    }


def rib(router: LinkStateRouter) -> list[dict]:
    return [_route(e) for e in sorted(router.routes.values(), key=lambda e: e.label)]


def fib(router: LinkStateRouter) -> list[dict]:
    return [
        {
            "prefix": str(prefix),
            "label": entry.label,
            "local": entry.local,
            "next_hops": [{"interface": i, "node": n} for i, n in entry.next_hops],
        }
        for prefix, entry in sorted(router.fib.items(), key=lambda item: item[1].label)
    ]


def events(router: LinkStateRouter, limit: int = 200) -> list[dict]:
    recent = list(router.events)[-limit:]
    return [{"time": e.time, "kind": e.kind, "detail": e.detail} for e in recent]


def prefixes(router: LinkStateRouter) -> list[dict]:
    return [
        {"name": name, "address": str(name_address(name))} for name in sorted(router.own_prefixes)
    ]
