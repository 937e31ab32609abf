"""The link-state protocol of one SG or SR, with no socket, clock or thread in it.

The node program feeds it datagrams and interface changes with the current time and sends what
it returns; tests join many of them in memory on a virtual clock (``dmsc.sim``)::

    router.receive(interface, data, now)        # a datagram arrived
    router.set_interface_state(name, up, now)   # carrier change
    router.handle_timer(now)                    # when get_timer() is due
    router.get_timer() -> float | None          # the next deadline
    router.datagrams_to_send() -> [(interface, bytes)]

Hellos find neighbors (3-way), LSAs are flooded reliably (acknowledged, retransmitted), aged and
purged; SPF is throttled and yields the RIB and FIB. ``now`` is the clock SPA attestations are
issued against: time.time() in node programs, a virtual clock in simulations.
"""

from __future__ import annotations

import collections
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from dmsc.errors import DecodeError
from dmsc.lpm import PrefixTable
from dmsc.names import ServiceName
from dmsc.proto import dmsc_pb2
from dmsc.proto.codec import (
    MAX_COST,
    MAX_NEIGHBORS_PER_HELLO,
    MAX_SEQUENCE,
    PROTOCOL_VERSION,
    decode_packet,
)
from dmsc.routing.auth import Refused, RouterSecurity
from dmsc.routing.config import LinkStateTimers
from dmsc.routing.lsdb import LinkStateDatabase, StoredLsa, compare
from dmsc.routing.neighbor import Event, Neighbor, State
from dmsc.routing.rib import (
    AttestationCache,
    AttestationChecker,
    FibEntry,
    RibEntry,
    build_fib,
    build_rib,
)
from dmsc.routing.spf import NextHop, SpfThrottle, shortest_paths, two_way_graph

#: Largest run of LSAs or headers packed into one datagram: with the packet's header (up to
#: ~70 bytes), its authentication trailer (~55) and IPv6 + UDP (48) it fits a 1500-byte MTU.
MAX_PACKET_BYTES = 1300
EVENT_LOG_SIZE = 10_000
#: A refusal of the same kind on the same interface is logged at most this often (an attacker
#: must not flush the event log); every one is counted.
REFUSAL_LOG_INTERVAL_S = 10.0


@dataclass
class Interface:
    name: str
    cost: int
    up: bool = True
    next_hello: float = 0.0
    hardware_address: bytes = b""  # announced in hellos: neighbors forward to it


@dataclass(frozen=True)
class RouterEvent:
    """Something worth a line in a trace: time, kind and a human-readable detail."""

    time: float
    kind: str
    detail: str


class LinkStateRouter:
    """The sans-I/O link-state core of one node."""

    def __init__(
        self,
        node_id: str,
        verifier: AttestationChecker,
        timers: LinkStateTimers | None = None,
        now: float = 0.0,
        security: RouterSecurity | None = None,
    ) -> None:
        """``security`` None runs the protocol open, unauthenticated: only for simulator
        baselines that measure what authentication costs. Node programs always pass one."""
        if security is not None and security.credentials.node_id != node_id:
            raise ValueError(f"{node_id}: credentials are those of {security.credentials.node_id}")
        self.node_id = node_id
        self.security = security
        self.timers = timers or LinkStateTimers()
        self.interfaces: dict[str, Interface] = {}
        self.neighbors: dict[str, dict[str, Neighbor]] = {}  # interface -> node id -> neighbor
        self.lsdb = LinkStateDatabase()
        self.sequence = 0
        self.own_prefixes: dict[str, dmsc_pb2.AnnouncedPrefix] = {}
        self.routes: dict[ipaddress.IPv6Network, RibEntry] = {}
        self.fib: PrefixTable[FibEntry] = PrefixTable()
        self.fib_version = 0
        self.counters: collections.Counter[str] = collections.Counter()
        self.events: collections.deque[RouterEvent] = collections.deque(maxlen=EVENT_LOG_SIZE)
        self._attestations = AttestationCache(verifier)
        self._spf = SpfThrottle(
            self.timers.spf_initial_delay, self.timers.spf_hold, self.timers.spf_max_hold
        )
        self._rib_recheck_at: float | None = None
        self._rejections_seen: set[tuple[str, str, str]] = set()
        self._last_origination: float | None = None
        self._origination_due: float | None = now
        self._updates: dict[str, list[dmsc_pb2.LinkStateAdvertisement]] = {}
        self._acks: dict[str, list[dmsc_pb2.LsaHeader]] = {}
        self._outbox: list[tuple[str, bytes]] = []
        self._refusals_logged: dict[tuple[str, str], float] = {}

    # ------------------------------------------------------------------ inputs

    def add_interface(
        self, name: str, cost: int, now: float, hardware_address: bytes = b""
    ) -> None:
        if not 1 <= cost <= MAX_COST:
            raise ValueError(f"{self.node_id}: interface {name} cost {cost} not in 1..{MAX_COST}")
        self.interfaces[name] = Interface(name, cost, True, now, hardware_address)
        self.neighbors.setdefault(name, {})

    def set_interface_state(self, name: str, up: bool, now: float) -> None:
        """Carrier up/down: a down link drops its adjacencies at once (no dead interval)."""
        interface = self.interfaces[name]
        if interface.up == up:
            return
        interface.up = up
        self._log(now, "interface", f"{name} {'up' if up else 'down'}")
        if up:
            interface.next_hello = now
            return
        for neighbor in list(self.neighbors[name].values()):
            self._transition(neighbor, Event.LINK_DOWN, now)
        self._flush(now)

    def announce_prefix(self, name: str, attestation: dmsc_pb2.Attestation, now: float) -> None:
        """Advertise ``name`` (an SG does this for its pods) with the SPA's attestation."""
        ServiceName.parse(name)
        announced = dmsc_pb2.AnnouncedPrefix(name=name, attestation=attestation)
        if self.own_prefixes.get(name) != announced:
            self.own_prefixes[name] = announced
            self._schedule_origination(now)

    def withdraw_prefix(self, name: str, now: float) -> None:
        if self.own_prefixes.pop(name, None) is not None:
            self._schedule_origination(now)

    def receive(self, interface: str, data: bytes, now: float) -> None:
        """One datagram from ``interface``. Bad input is counted and logged, never raised."""
        self.counters["rx_packets"] += 1
        if interface not in self.interfaces or not self.interfaces[interface].up:
            self.counters["rx_on_unknown_or_down_interface"] += 1
            return
        try:
            packet = decode_packet(data)
        except DecodeError as error:
            self.counters["rx_decode_errors"] += 1
            self._log(now, "decode-error", f"on {interface}: {error}")
            return
        if packet.sender == self.node_id:
            self.counters["rx_own_packets"] += 1
            return
        if self.security is not None:
            try:
                self.security.packets.check(interface, data, packet)
            except Refused as refusal:
                self._refuse(now, interface, "packet", f"from {packet.sender!r}: {refusal}")
                return
        handler = {"hello": self._on_hello, "update": self._on_update, "ack": self._on_ack}
        body = packet.WhichOneof("body")
        handler[body](interface, packet.sender, getattr(packet, body), now)
        self._flush(now)

    def handle_timer(self, now: float) -> None:
        self._expire_neighbors(now)
        self._send_due_hellos(now)
        self._retransmit_due(now)
        self._age_lsdb(now)
        self._originate_if_due(now)
        if self._spf.due(now) or (self._rib_recheck_at is not None and now >= self._rib_recheck_at):
            self._run_spf(now)
        self._flush(now)

    def shutdown(self, now: float) -> None:
        """Leave gracefully: flood a purge of our own LSA so others forget us at once. Its
        sequence is the next one, or MAX_SEQUENCE itself once there: at equal sequence a purge
        beats a live copy. No refresh brings a node that has left back."""
        self.sequence = min(self.sequence + 1, MAX_SEQUENCE)
        self._wrap_until = None  # leaving ends a wrap: this purge ages out as any other
        self._origination_due = self._last_origination = None
        self._install(self._own_purge(self.sequence), now, source=None)
        self._flush(now)

    # ------------------------------------------------------------------ outputs

    def datagrams_to_send(self) -> list[tuple[str, bytes]]:
        out, self._outbox = self._outbox, []
        return out

    def get_timer(self) -> float | None:
        deadlines = [i.next_hello for i in self.interfaces.values() if i.up]
        for neighbor in self._all_neighbors():
            deadlines.append(neighbor.dead_at)
            deadlines.extend(t for _, _, t in neighbor.retransmit.values())
        deadlines += [self.lsdb.next_expiry(), self._origination_due, self._spf.pending_at]
        deadlines.append(self._rib_recheck_at)
        if self._last_origination is not None:
            deadlines.append(self._last_origination + self.timers.lsa_refresh)
        return min((d for d in deadlines if d is not None), default=None)

    def pop_events(self) -> list[RouterEvent]:
        events = list(self.events)
        self.events.clear()
        return events

    def full_neighbors(self) -> list[Neighbor]:
        return [n for n in self._all_neighbors() if n.is_full]

    # ------------------------------------------------------------------ hello and adjacency

    def _all_neighbors(self) -> Iterable[Neighbor]:
        for by_id in self.neighbors.values():
            yield from by_id.values()

    def _on_hello(self, interface: str, sender: str, hello: dmsc_pb2.Hello, now: float) -> None:
        self.counters["rx_hellos"] += 1
        neighbor = self.neighbors[interface].get(sender)
        if neighbor is None:
            if len(self.neighbors[interface]) >= MAX_NEIGHBORS_PER_HELLO:
                # our hello lists every neighbour heard; past the bound neighbours refuse it
                self._refuse(now, interface, "neighbor", f"{sender!r}: too many neighbours")
                return
            neighbor = self.neighbors[interface][sender] = Neighbor(sender, interface)
        neighbor.dead_at = now + hello.dead_interval_ms / 1000
        neighbor.hardware_address = hello.hardware_address
        listed = self.node_id in hello.neighbors
        self._transition(neighbor, Event.HELLO_TWO_WAY if listed else Event.HELLO_ONE_WAY, now)

    def _transition(self, neighbor: Neighbor, event: Event, now: float) -> None:
        old, new = neighbor.handle(event)
        if old is new:
            return
        self._log(
            now,
            "neighbor",
            f"{neighbor.node_id} on {neighbor.interface}: "
            f"{old.value} -> {new.value} ({event.value})",
        )
        if new is State.DOWN:
            del self.neighbors[neighbor.interface][neighbor.node_id]
        elif old is State.DOWN or new is State.FULL:
            self._queue_hello(self.interfaces[neighbor.interface], now)  # speed up the 3-way
        if new is State.FULL:
            self._synchronise(neighbor, now)
        if State.FULL in (old, new):
            self._schedule_origination(now)
            self._spf.request(now)

    def _synchronise(self, neighbor: Neighbor, now: float) -> None:
        """A new adjacency gets our whole database; its acks confirm it (IS-IS style)."""
        for entry in self.lsdb:
            self._send_lsa(neighbor, entry, now)

    def _expire_neighbors(self, now: float) -> None:
        for neighbor in list(self._all_neighbors()):
            if neighbor.dead_at <= now:
                self._transition(neighbor, Event.DEAD_TIMER, now)

    def _send_due_hellos(self, now: float) -> None:
        for interface in self.interfaces.values():
            if interface.up and interface.next_hello <= now:
                self._queue_hello(interface, now)

    def _queue_hello(self, interface: Interface, now: float) -> None:
        heard = [n.node_id for n in self.neighbors[interface.name].values()]
        hello = dmsc_pb2.Hello(
            interface=interface.name,
            hello_interval_ms=int(self.timers.hello_interval * 1000),
            dead_interval_ms=int(self.timers.dead_interval * 1000),
            neighbors=sorted(heard),
            hardware_address=interface.hardware_address,
        )
        self._emit(interface.name, self._packet(hello=hello), now)
        interface.next_hello = now + self.timers.hello_interval
        self.counters["tx_hellos"] += 1

    # ------------------------------------------------------------------ flooding

    def _on_update(self, interface: str, sender: str, update, now: float) -> None:
        neighbor = self.neighbors[interface].get(sender)
        if neighbor is None or not neighbor.is_full:
            self.counters["rx_update_without_adjacency"] += 1
            return
        for lsa in update.lsas:
            self.counters["rx_lsas"] += 1
            if not self._authentic(interface, lsa, now):
                continue
            if lsa.originator == self.node_id:
                self._receive_own_lsa(neighbor, lsa, now)
            else:
                self._receive_lsa(neighbor, lsa, now)

    def _authentic(self, interface: str, lsa, now: float) -> bool:
        """An LSA counts only when signed by its enrolled originator (ours included: a copy of
        our own LSA that we did not sign is a forgery, not a memory from before a restart)."""
        if self.security is None:
            return True
        try:
            self.security.lsas.check(lsa, now)
        except Refused as refusal:
            self._refuse(now, interface, "lsa", f"{lsa.originator} seq {lsa.sequence}: {refusal}")
            return False
        return True

    def _receive_lsa(self, neighbor: Neighbor, lsa, now: float) -> None:
        stored = self.lsdb.get(lsa.originator)
        order = 1 if stored is None else compare(lsa, stored.lsa)
        if order < 0:  # the neighbor is behind: send it our newer copy
            self.counters["rx_lsa_older"] += 1
            self._send_lsa(neighbor, stored, now)
            return
        self._ack(neighbor, lsa)
        if order == 0:
            self.counters["rx_lsa_duplicate"] += 1
            self._implied_ack(neighbor, lsa)
        elif stored is None and lsa.lifetime_ms == 0:
            self.counters["rx_purge_of_unknown"] += 1
        else:
            self._install(lsa, now, source=neighbor)

    def _receive_own_lsa(self, neighbor: Neighbor, lsa, now: float) -> None:
        """A copy of our own LSA: older ones are answered; a newer one (from before a restart,
        or a purge) makes us jump past its sequence number and re-originate. Past
        MAX_SEQUENCE there is no jumping: one at the maximum makes us wrap (_wrap_sequence)."""
        stored = self.lsdb.get(self.node_id)
        order = 1 if stored is None else compare(lsa, stored.lsa)
        if order < 0:
            self._send_lsa(neighbor, stored, now)
            return
        self._ack(neighbor, lsa)
        if order == 0:
            self._implied_ack(neighbor, lsa)
            return
        self.counters["rx_own_lsa_newer"] += 1
        # decoding refuses sequences above MAX_SEQUENCE; min() keeps any other caller honest
        self.sequence = min(max(self.sequence, lsa.sequence), MAX_SEQUENCE)
        self._log(now, "originate", f"own LSA seq {lsa.sequence} seen: re-originating")
        self._originate(now)

    def _install(self, lsa, now: float, source: Neighbor | None) -> None:
        previous = self.lsdb.get(lsa.originator)
        entry = self.lsdb.install(lsa, now, self.timers.purge_hold)
        for neighbor in self.full_neighbors():
            if neighbor is source:
                neighbor.retransmit.pop(lsa.originator, None)
            else:
                self._send_lsa(neighbor, entry, now)
        if previous is None or _content_changed(previous.lsa, lsa):
            self._spf.request(now)
        kind = "purge" if lsa.lifetime_ms == 0 else "install"
        self._log(now, kind, f"LSA {lsa.originator} seq {lsa.sequence}")

    def _send_lsa(self, neighbor: Neighbor, entry: StoredLsa, now: float) -> None:
        copy = entry.wire_copy(now)
        self._updates.setdefault(neighbor.interface, []).append(copy)
        retransmit_at = now + self.timers.retransmit_interval
        neighbor.retransmit[copy.originator] = (copy.sequence, copy.lifetime_ms == 0, retransmit_at)

    def _ack(self, neighbor: Neighbor, lsa) -> None:
        header = dmsc_pb2.LsaHeader(
            originator=lsa.originator, sequence=lsa.sequence, lifetime_ms=lsa.lifetime_ms
        )
        self._acks.setdefault(neighbor.interface, []).append(header)

    def _implied_ack(self, neighbor: Neighbor, lsa) -> None:
        pending = neighbor.retransmit.get(lsa.originator)
        if pending is not None and pending[:2] == (lsa.sequence, lsa.lifetime_ms == 0):
            del neighbor.retransmit[lsa.originator]

    def _on_ack(self, interface: str, sender: str, ack, now: float) -> None:
        neighbor = self.neighbors[interface].get(sender)
        if neighbor is None:
            self.counters["rx_ack_without_adjacency"] += 1
            return
        for header in ack.headers:
            self._implied_ack(neighbor, header)

    def _retransmit_due(self, now: float) -> None:
        for neighbor in self.full_neighbors():
            for originator, (_, _, due) in list(neighbor.retransmit.items()):
                if due > now:
                    continue
                entry = self.lsdb.get(originator)
                if entry is None:
                    del neighbor.retransmit[originator]
                    continue
                self.counters["tx_retransmissions"] += 1
                self._send_lsa(neighbor, entry, now)

    # ------------------------------------------------------------------ aging and origination

    #: While our sequence number wraps (_wrap_sequence): when we may restart at 1, or check
    #: again; None otherwise. A class default, as only the wrap uses it.
    _wrap_until: float | None = None

    def _age_lsdb(self, now: float) -> None:
        """Purges, received or our own, are forgotten after their hold. Another node's LSA at
        the end of its lifetime is dropped, not flooded as a purge: every node ages it at the
        same rate and drops it too, and only its originator can sign a purge. Ours is refreshed
        long before its end; should it get there (a node suspended that long), it is purged."""
        for entry in self.lsdb:
            if entry.expires_at > now:
                continue
            originator = entry.lsa.originator
            if originator == self.node_id and self._wrap_until is not None:
                continue  # the wrap's purge: _wrap_sequence holds it and lets it go
            if entry.is_purge:
                self.lsdb.remove(originator)
            elif originator == self.node_id:
                self._install(self._own_purge(entry.lsa.sequence), now, source=None)
            else:
                self._drop_expired(entry, now)

    def _drop_expired(self, entry: StoredLsa, now: float) -> None:
        self.lsdb.remove(entry.lsa.originator)
        self.counters["lsa_expired"] += 1
        self._spf.request(now)
        self._log(now, "expire", f"LSA {entry.lsa.originator} seq {entry.lsa.sequence} dropped")

    def _own_purge(self, sequence: int) -> dmsc_pb2.LinkStateAdvertisement:
        """A purge of our LSA at ``sequence``, signed: nobody else can flood one."""
        purge = dmsc_pb2.LinkStateAdvertisement(
            originator=self.node_id, sequence=sequence, lifetime_ms=0
        )
        return self._seal(purge)

    def _schedule_origination(self, now: float) -> None:
        if self._origination_due is not None or self._wrap_until is not None:
            return  # (a wrap's restart at 1 originates what is current then)
        earliest = now
        if self._last_origination is not None:
            earliest = max(now, self._last_origination + self.timers.min_lsa_interval)
        self._origination_due = earliest

    def _originate_if_due(self, now: float) -> None:
        if self._wrap_until is not None:
            if now >= self._wrap_until:
                self._wrap_sequence(now)
            return
        refresh_due = (
            self._last_origination is not None
            and now >= self._last_origination + self.timers.lsa_refresh
        )
        if refresh_due or (self._origination_due is not None and now >= self._origination_due):
            self._originate(now)

    def _own_adjacencies(self) -> list[dmsc_pb2.Adjacency]:
        costs: dict[str, int] = {}
        for neighbor in self.full_neighbors():
            cost = self.interfaces[neighbor.interface].cost
            costs[neighbor.node_id] = min(cost, costs.get(neighbor.node_id, cost))
        return [dmsc_pb2.Adjacency(neighbor=n, cost=c) for n, c in sorted(costs.items())]

    def _originate(self, now: float) -> None:
        if self.sequence >= MAX_SEQUENCE or self._wrap_until is not None:
            self._wrap_sequence(now)
            return
        self.sequence += 1
        lsa = dmsc_pb2.LinkStateAdvertisement(
            originator=self.node_id,
            sequence=self.sequence,
            lifetime_ms=int(self.timers.lsa_lifetime * 1000),
            adjacencies=self._own_adjacencies(),
            prefixes=[self.own_prefixes[n] for n in sorted(self.own_prefixes)],
        )
        self._last_origination = now
        self._origination_due = None
        self.counters["tx_originations"] += 1
        self._install(self._seal(lsa), now, source=None)

    def _wrap_sequence(self, now: float) -> None:
        """Going past MAX_SEQUENCE as RFC 2328 §12.1.6 and ISO 10589 do, with no
        arithmetic past it: purge our LSA at MAX_SEQUENCE (a purge beats any copy at the
        maximum), originate nothing until every node has forgotten that purge, restart at 1.

        How long: a node keeps a purge purge_hold after installing it, and installs it within
        purge_hold of us (a purge_hold shorter than flooding takes would fail its own purpose,
        outvoting late copies): so 2 * purge_hold. And not before every FULL neighbor has
        acknowledged it, as RFC 2328 waits: one that missed it may still hold a copy at the
        maximum. Acks alone are not enough here: OSPF forgets an acknowledged MaxAge LSA at
        once, our nodes keep a purge purge_hold. Should a node still hold a copy at the maximum
        after the restart, it answers our sequence 1 with it, and the wrap runs again.
        """
        if self._wrap_until is None:
            self._begin_wrap(now)
        elif now < self._wrap_until:
            return
        elif self._own_purge_unacknowledged():
            self._hold_wrap(now + self.timers.retransmit_interval)  # after the next resend
        else:
            self._end_wrap(now)

    def _begin_wrap(self, now: float) -> None:
        self.sequence = MAX_SEQUENCE
        self._install(self._own_purge(MAX_SEQUENCE), now, source=None)
        self._last_origination = None  # a purge needs no refresh
        self._hold_wrap(now + 2 * self.timers.purge_hold)
        self.counters["sequence_wraps"] += 1
        self._log(
            now,
            "sequence-wrap",
            f"own LSA at MAX_SEQUENCE: purged; sequence 1 at {self._wrap_until:.3f} at the "
            "earliest, once every neighbor has acknowledged the purge",
        )

    def _hold_wrap(self, until: float) -> None:
        """Keep our purge, and the origination deadline, until ``until``."""
        self._wrap_until = self._origination_due = until
        self.lsdb.hold(self.node_id, until)

    def _own_purge_unacknowledged(self) -> bool:
        return any(self.node_id in n.retransmit for n in self.full_neighbors())

    def _end_wrap(self, now: float) -> None:
        self._wrap_until = self._origination_due = None
        self.lsdb.remove(self.node_id)
        self.sequence = 0
        self._log(now, "sequence-wrap", "purge at MAX_SEQUENCE forgotten: sequence 1")
        self._originate(now)

    # ------------------------------------------------------------------ SPF, RIB, FIB

    def _local_hops(self) -> dict[str, frozenset[NextHop]]:
        best: dict[str, tuple[int, set[NextHop]]] = {}
        for neighbor in self.full_neighbors():
            cost = self.interfaces[neighbor.interface].cost
            current = best.get(neighbor.node_id)
            if current is None or cost < current[0]:
                best[neighbor.node_id] = (cost, {(neighbor.interface, neighbor.node_id)})
            elif cost == current[0]:
                current[1].add((neighbor.interface, neighbor.node_id))
        return {node: frozenset(hops) for node, (_, hops) in best.items()}

    def _run_spf(self, now: float) -> None:
        live = list(self.lsdb.live())
        graph = two_way_graph(
            {e.lsa.originator: [(a.neighbor, a.cost) for a in e.lsa.adjacencies] for e in live}
        )
        graph.setdefault(self.node_id, {})
        spf = shortest_paths(graph, self.node_id, self._local_hops())
        announcements = [(e.lsa.originator, p) for e in live for p in e.lsa.prefixes]
        self._attestations.forget_older_than(now)
        build = build_rib(self.node_id, spf, announcements, self._attestations, now)
        self._spf.ran(now)
        self._rib_recheck_at = build.recheck_at
        self.counters["spf_runs"] += 1
        for rejection in build.rejections:
            self._note_rejection(rejection, now)
        if build.routes != self.routes:
            self._log(now, "fib", _describe_change(self.routes, build.routes))
            self.routes = build.routes
            self.fib = build_fib(build.routes)
            self.fib_version += 1

    def _note_rejection(self, rejection, now: float) -> None:
        key = (rejection.originator, rejection.name, rejection.reason)
        if key not in self._rejections_seen:
            self._rejections_seen.add(key)
            self.counters["prefixes_rejected"] += 1
            self._log(
                now, "reject", f"{rejection.name} from {rejection.originator}: {rejection.reason}"
            )

    # ------------------------------------------------------------------ packing

    def _packet(self, **body) -> dmsc_pb2.LinkStatePacket:
        return dmsc_pb2.LinkStatePacket(version=PROTOCOL_VERSION, sender=self.node_id, **body)

    def _emit(self, interface: str, packet: dmsc_pb2.LinkStatePacket, now: float) -> None:
        data = packet.SerializeToString()
        if self.security is not None:
            data = self.security.packets.seal(data, now)
        self._outbox.append((interface, data))

    def _flush(self, now: float) -> None:
        for interface, lsas in self._updates.items():
            newest = {lsa.originator: lsa for lsa in lsas}  # later copies supersede earlier
            for chunk in _chunks(list(newest.values())):
                update = dmsc_pb2.LinkStateUpdate(lsas=chunk)
                self._emit(interface, self._packet(update=update), now)
                self.counters["tx_updates"] += 1
        for interface, headers in self._acks.items():
            for chunk in _chunks(headers):
                self._emit(interface, self._packet(ack=dmsc_pb2.LinkStateAck(headers=chunk)), now)
                self.counters["tx_acks"] += 1
        self._updates.clear()
        self._acks.clear()

    def _seal(self, lsa: dmsc_pb2.LinkStateAdvertisement) -> dmsc_pb2.LinkStateAdvertisement:
        """Every LSA this node creates passes here before it is installed and flooded."""
        return lsa if self.security is None else self.security.credentials.sign(lsa)

    def refuse(self, interface: str, kind: str, detail: str, now: float) -> None:
        """A datagram the node program refused before the core saw it (its arrival failed
        the GTSM check): counted and logged with the core's own refusals."""
        self._refuse(now, interface, kind, detail)

    def _refuse(self, now: float, interface: str, kind: str, detail: str) -> None:
        """Count every refused packet or LSA; log it, at most once per interval and kind."""
        self.counters[f"rx_{kind}_refused"] += 1
        last = self._refusals_logged.get((interface, kind))
        if last is None or now - last >= REFUSAL_LOG_INTERVAL_S:
            self._refusals_logged[(interface, kind)] = now
            self._log(now, "refused", f"{kind} on {interface} {detail}")

    def _log(self, now: float, kind: str, detail: str) -> None:
        self.events.append(RouterEvent(now, kind, detail))


def _content_changed(old, new) -> bool:
    if (old.lifetime_ms == 0) != (new.lifetime_ms == 0):
        return True
    return list(old.adjacencies) != list(new.adjacencies) or list(old.prefixes) != list(
        new.prefixes
    )


def _chunks(messages: list) -> Iterable[list]:
    """Split into groups whose encoding stays under MAX_PACKET_BYTES (at least one each)."""
    chunk: list = []
    size = 0
    for message in messages:
        message_size = message.ByteSize() + 4
        if chunk and size + message_size > MAX_PACKET_BYTES:
            yield chunk
            chunk, size = [], 0
        chunk.append(message)
        size += message_size
    if chunk:
        yield chunk


def _describe_change(old: dict, new: dict) -> str:
    added = [new[p].label for p in new.keys() - old.keys()]
    removed = [old[p].label for p in old.keys() - new.keys()]
    changed = [new[p].label for p in new.keys() & old.keys() if new[p] != old[p]]
    parts = [
        f"{what} {sorted(labels)}"
        for what, labels in (("added", added), ("removed", removed), ("changed", changed))
        if labels
    ]
    return "; ".join(parts)
