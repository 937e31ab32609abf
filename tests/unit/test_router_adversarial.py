"""Link-state cores under hostile input (issue 12, bounded inputs).

Random bytes, random but well-formed packets, strangers' hellos, LSAs at the extremes of sequence
number and lifetime (the core's own included), purges of unknown LSAs, acks for nothing, all
interleaved with timers and carrier changes. Nothing may raise, a core with an interface up always
has a next deadline and never one it leaves due, everything it sends a neighbor accepts, and once
the attacker stops the network converges back: an originator whose LSA was forged at
MAX_SEQUENCE wins it back by wrapping its sequence number (LinkStateRouter._wrap_sequence).

The networks here run open (``secure=False``): with authentication on, none of the forgeries
would get past the signature checks. What is tested is the protocol beneath them, which must hold
even against its own enrolled routers' mistakes.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dmsc.errors import DecodeError
from dmsc.proto import dmsc_pb2
from dmsc.proto.codec import (
    MAX_COST,
    MAX_DEAD_INTERVAL_MS,
    MAX_LIFETIME_MS,
    MAX_SEQUENCE,
    PROTOCOL_VERSION,
    decode_packet,
)
from dmsc.routing import LinkStateRouter, LinkStateTimers
from dmsc.sim import DEFAULT_START, SimNetwork
from dmsc.sim.reference import fibs_match, mismatches

#: Short holds and refreshes keep the recovery bound (below) short; the rest are the defaults.
TIMERS = LinkStateTimers(purge_hold=5.0, lsa_lifetime=40.0, lsa_refresh=20.0)
NODES = ("sg1", "sr1", "sr2", "sg3")
LINKS = (("sg1", "sr1"), ("sr1", "sr2"), ("sr2", "sg3"), ("sg1", "sr2"))
ANNOUNCED = {"/A": {"sg1"}, "/C": {"sg3"}}
STRANGER = "ghost"
HYPOTHESIS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def recovery_bound(timers: LinkStateTimers, longest_dead_s: float) -> float:
    """Virtual seconds from the attacker's last datagram until every FIB is right again.

    - A stranger's adjacency (or a real neighbor's id heard on the wrong link) lasts the longest
      dead interval a hello asked for, and holds up a wrap while it acknowledges nothing.
    - A forgery handed to a node "from" a neighbor that never had it is not flooded back to that
      neighbor (flooding trusts the sender; link authentication is what stops the lie). If no
      other path carries it, the originator learns of it only when its next refresh meets the
      forged copy, at most lsa_refresh later; a forged purge, forgotten after purge_hold, leaves
      that node without the LSA until the same refresh.
    - A wrap takes 2 * purge_hold after it starts, which is at the latest when a purge the
      attacker provoked is forgotten (purge_hold) or when that refresh reveals a forgery.
    - Waiting for acks adds a retransmission interval per poll; a hello brings back a link the
      attacker cut; an origination waits at most min_lsa_interval, SPF at most spf_max_hold;
      one second covers flooding.
    """
    wrap = 2 * timers.purge_hold + max(timers.purge_hold, timers.lsa_refresh)
    waits = 2 * timers.retransmit_interval + timers.hello_interval + timers.min_lsa_interval
    return max(longest_dead_s, wrap) + waits + timers.spf_max_hold + 1.0


def build(spa) -> SimNetwork:
    network = SimNetwork(spa.verifier, TIMERS, secure=False)
    for node in NODES:
        network.add_node(node)
    for a, b in LINKS:
        network.add_link(a, b)
    for name, origins in ANNOUNCED.items():
        for origin in origins:
            network.announce(origin, name, spa.attest(name, origin, network.now))
    network.run_until_true(lambda: fibs_match(network, ANNOUNCED), timeout=30.0)
    return network


def packet(sender: str, **body) -> bytes:
    message = dmsc_pb2.LinkStatePacket(version=PROTOCOL_VERSION, sender=sender, **body)
    return message.SerializeToString()


def update(sender: str, *lsas) -> bytes:
    return packet(sender, update=dmsc_pb2.LinkStateUpdate(lsas=list(lsas)))


def interface_towards(network: SimNetwork, node: str, neighbor: str) -> str:
    link = network.link_between(node, neighbor)
    return link.interface_a if link.a == node else link.interface_b


def labels(router: LinkStateRouter) -> set[str]:
    return {entry.label for _, entry in router.fib.items()}


def all_hold(network: SimNetwork, name: str) -> bool:
    return all(name in labels(router) for router in network.routers.values())


# ---------------------------------------------------------------------- the attack


def forge_at(network: SimNetwork, victim: str, via: str, sequence: int) -> None:
    """An LSA 'from sg3' with no prefixes and no adjacencies, handed to ``victim`` as if its
    neighbor ``via`` had flooded it."""
    forged = dmsc_pb2.LinkStateAdvertisement(
        originator="sg3", sequence=sequence, lifetime_ms=1_800_000
    )
    network.inject(victim, interface_towards(network, victim, via), update(via, forged))


def test_forged_lsa_at_the_maximum_sequence_is_won_back_by_its_originator(spa):
    network = build(spa)
    sg3 = network.routers["sg3"]
    forge_at(network, "sr1", "sr2", MAX_SEQUENCE)
    assert network.routers["sr1"].lsdb.get("sg3").lsa.sequence == MAX_SEQUENCE  # it took hold
    attacked = network.now
    network.run_for(1.0)
    assert not any("/C" in labels(r) for r in network.routers.values())  # /C is gone at first
    took = network.run_until_true(
        lambda: all_hold(network, "/C"), timeout=recovery_bound(TIMERS, 0.0)
    )
    assert took + 1.0 >= 2 * TIMERS.purge_hold  # it waited out the purge before restarting
    assert fibs_match(network, ANNOUNCED)
    assert sg3.counters["sequence_wraps"] == 1 and sg3.sequence == 1
    assert [e.kind for e in sg3.events if e.time >= attacked].count("sequence-wrap") == 2
    for router in network.routers.values():
        assert router.lsdb.get("sg3").lsa.sequence == 1
        assert router.counters["rx_decode_errors"] == 0


def test_sequence_above_the_maximum_is_refused_at_decoding(spa):
    network = build(spa)
    forge_at(network, "sr1", "sr2", 2**64 - 1)
    sr1 = network.routers["sr1"]
    assert sr1.counters["rx_decode_errors"] == 1
    assert any("MAX_SEQUENCE" in e.detail for e in sr1.events if e.kind == "decode-error")
    network.run_for(2.0)
    assert fibs_match(network, ANNOUNCED) and network.routers["sg3"].sequence < 10


def test_own_lsa_signed_at_the_maximum_is_wrapped_with_signed_purges(spa):
    # With authentication on, only sg3's key makes such a copy (a restored backup, a bug); the
    # wrap's purge and restart must be signed too, or every neighbor would refuse them.
    from dmsc.routing.auth import PacketAuthenticator
    from dmsc.routing.domain import LINK_KEY_ID

    network = SimNetwork(spa.verifier, TIMERS)
    if network.domain is None:
        pytest.skip("the simulator runs open")
    for node in NODES:
        network.add_node(node)
    for a, b in LINKS:
        network.add_link(a, b)
    network.announce("sg3", "/C", spa.attest("/C", "sg3", network.now))
    network.run_until_true(lambda: fibs_match(network, {"/C": {"sg3"}}), timeout=30.0)
    credentials = network.domain.enrol("sg3", "sr", network.now, network.seed)
    signed = credentials.sign(
        dmsc_pb2.LinkStateAdvertisement(
            originator="sg3", sequence=MAX_SEQUENCE, lifetime_ms=1_800_000
        )
    )
    sealer = PacketAuthenticator(network.domain.link_keys, LINK_KEY_ID)
    network.run_for(0.0004)  # off the instants the real sr2 seals at, for the replay window
    data = sealer.seal(update("sr2", signed), network.now)
    network.inject("sr1", interface_towards(network, "sr1", "sr2"), data)
    assert network.routers["sr1"].lsdb.get("sg3").lsa.sequence == MAX_SEQUENCE
    network.run_for(1.0)
    assert not any("/C" in labels(r) for r in network.routers.values())
    network.run_until_true(lambda: all_hold(network, "/C"), timeout=recovery_bound(TIMERS, 0))
    sg3 = network.routers["sg3"]
    assert sg3.counters["sequence_wraps"] == 1 and sg3.sequence == 1
    assert all(r.counters["rx_lsa_refused"] == 0 for r in network.routers.values())


def test_a_copy_at_the_maximum_meeting_a_restarted_originator_wraps_it_again(spa):
    network = build(spa)
    forge_at(network, "sr1", "sr2", MAX_SEQUENCE)
    sg3 = network.routers["sg3"]
    network.run_until_true(lambda: sg3.sequence == 1, timeout=recovery_bound(TIMERS, 0))
    forge_at(network, "sg1", "sr1", MAX_SEQUENCE)  # a second forgery, after the restart
    network.run_until_true(
        lambda: (
            sg3.counters["sequence_wraps"] == 2 and sg3.sequence == 1 and all_hold(network, "/C")
        ),
        timeout=recovery_bound(TIMERS, 0),
    )
    assert fibs_match(network, ANNOUNCED)


def test_reaching_the_maximum_by_originating_wraps_and_refreshes_go_on(spa):
    network = build(spa)
    sg3 = network.routers["sg3"]
    sg3.sequence = MAX_SEQUENCE - 1  # as if sg3 had originated 2^63 - 2 times
    network.withdraw("sg3", "/C")
    network.run_for(1.0)
    assert sg3.lsdb.get("sg3").lsa.sequence == MAX_SEQUENCE and not sg3.lsdb.get("sg3").is_purge
    network.announce("sg3", "/C", spa.attest("/C", "sg3", network.now))  # one past the maximum
    network.run_until_true(lambda: all_hold(network, "/C"), timeout=recovery_bound(TIMERS, 0))
    assert sg3.counters["sequence_wraps"] == 1 and sg3.sequence == 1
    network.run_for(TIMERS.lsa_refresh + 1.0)
    assert sg3.sequence == 2 and fibs_match(network, ANNOUNCED)  # refreshed as usual


def test_shutdown_at_the_maximum_purges_at_the_maximum(spa):
    network = build(spa)
    sg3 = network.routers["sg3"]
    sg3.sequence = MAX_SEQUENCE
    network.stop_node("sg3")
    network.run_for(1.0)
    for node in ("sg1", "sr1", "sr2"):
        stored = network.routers[node].lsdb.get("sg3")
        assert stored.is_purge and stored.lsa.sequence == MAX_SEQUENCE
        assert "/C" not in labels(network.routers[node])


# ---------------------------------------------------------------------- strategies


def mostly(valid, invalid):
    """Mostly values that pass decoding: one bad LSA refuses its whole update. (The roll that
    picks ``invalid`` is not at either end, which hypothesis favours.)"""
    return st.integers(0, 15).flatmap(lambda roll: invalid if roll == 7 else valid)


SEQUENCES = mostly(
    st.one_of(
        st.sampled_from([MAX_SEQUENCE, MAX_SEQUENCE - 1, 1, 2]), st.integers(1, MAX_SEQUENCE)
    ),
    st.sampled_from([0, MAX_SEQUENCE + 1, 2**64 - 1]),
)
LIFETIMES = mostly(
    st.one_of(st.sampled_from([0, 1, 2, MAX_LIFETIME_MS]), st.integers(0, MAX_LIFETIME_MS)),
    st.sampled_from([MAX_LIFETIME_MS + 1, 2**32 - 1]),
)
COSTS = mostly(st.sampled_from([1, 10, MAX_COST]), st.sampled_from([0, MAX_COST + 1]))
INTERVALS_MS = mostly(  # (hello, dead): from the fastest to the slowest a hello may ask for
    st.sampled_from([(1, 2), (1000, 4000), (1000, MAX_DEAD_INTERVAL_MS)]),
    st.sampled_from(
        [(0, 1), (1000, 1000), (1000, MAX_DEAD_INTERVAL_MS + 1), (2**32 - 2, 2**32 - 1)]
    ),
)
NAMES = st.sampled_from(["/A", "/C", "/B/4", "/x"])


def lsas(ids: list[str]):
    return st.builds(
        lambda originator, sequence, lifetime, adjacencies, names: dmsc_pb2.LinkStateAdvertisement(
            originator=originator,
            sequence=sequence,
            lifetime_ms=lifetime,
            adjacencies=[dmsc_pb2.Adjacency(neighbor=n, cost=c) for n, c in adjacencies],
            prefixes=[dmsc_pb2.AnnouncedPrefix(name=name) for name in names],
        ),
        st.sampled_from(ids),
        SEQUENCES,
        LIFETIMES,
        st.lists(st.tuples(st.sampled_from(ids), COSTS), max_size=2),
        st.lists(NAMES, max_size=2),
    )


def datagrams(senders: list[str], ids: list[str]):
    """Bytes a neighbor (or someone posing as one) might send; most are well-formed."""
    hello = st.builds(
        lambda sender, intervals, listed: packet(
            sender,
            hello=dmsc_pb2.Hello(
                interface="eth0",
                hello_interval_ms=intervals[0],
                dead_interval_ms=intervals[1],
                neighbors=listed,
            ),
        ),
        st.sampled_from(senders),
        INTERVALS_MS,
        st.lists(st.sampled_from(ids), max_size=3),
    )
    flood = st.builds(
        lambda sender, lsas: update(sender, *lsas),
        st.sampled_from(senders),
        st.lists(lsas(ids), min_size=1, max_size=2),
    )
    header = st.builds(
        lambda originator, sequence, lifetime: dmsc_pb2.LsaHeader(
            originator=originator, sequence=sequence, lifetime_ms=lifetime
        ),
        st.sampled_from(ids),
        SEQUENCES,
        LIFETIMES,
    )
    ack = st.builds(
        lambda sender, headers: packet(sender, ack=dmsc_pb2.LinkStateAck(headers=headers)),
        st.sampled_from(senders),
        st.lists(header, max_size=3),
    )
    valid = st.one_of(hello, flood, flood, ack)
    mutated = st.builds(_flip, valid, st.integers(0, 10_000), st.integers(0, 255))
    return mostly(valid, st.one_of(mutated, st.binary(max_size=120)))


def _flip(data: bytes, index: int, value: int) -> bytes:
    if not data:
        return data
    data = bytearray(data)
    data[index % len(data)] = value
    return bytes(data)


def accepted_dead_interval_s(data: bytes) -> float:
    """The dead interval a datagram's hello makes a receiver keep its sender up, if any."""
    try:
        decoded = decode_packet(data)
    except DecodeError:
        return 0.0
    return decoded.hello.dead_interval_ms / 1000 if decoded.WhichOneof("body") == "hello" else 0.0


# ---------------------------------------------------------------------- one core, by hand

CORE = "me"
CORE_IDS = [CORE, "n1", "n2", STRANGER]


@st.composite
def core_steps(draw):
    kind = draw(st.sampled_from(["receive", "receive", "receive", "timer", "carrier"]))
    if kind == "receive":
        interface = draw(st.sampled_from(["eth0", "eth1", "eth9"]))
        return kind, interface, draw(datagrams(CORE_IDS, CORE_IDS))
    if kind == "timer":
        return kind, draw(st.sampled_from([0.0, 0.001, 0.05, 1.0, 5.0, 61.0, 700.0])), None
    return kind, draw(st.sampled_from(["eth0", "eth1"])), draw(st.booleans())


def check_core(router: LinkStateRouter, now: float) -> None:
    for _, data in router.datagrams_to_send():
        decode_packet(data)  # a neighbor accepts everything we send
    assert router.sequence <= MAX_SEQUENCE
    if any(interface.up for interface in router.interfaces.values()):
        assert router.get_timer() is not None


@HYPOTHESIS
@given(steps=st.lists(core_steps(), max_size=40))
def test_a_core_fed_anything_never_raises_and_keeps_a_deadline(spa, steps):
    now = DEFAULT_START
    router = LinkStateRouter(CORE, spa.verifier, TIMERS, now=now)
    router.add_interface("eth0", 10, now)
    router.add_interface("eth1", 10, now)
    router.announce_prefix("/me", spa.attest("/me", CORE, now), now)
    for interface, neighbor in (("eth0", "n1"), ("eth1", "n2")):  # two FULL neighbors
        hello = dmsc_pb2.Hello(hello_interval_ms=1000, dead_interval_ms=4000, neighbors=[CORE])
        router.receive(interface, packet(neighbor, hello=hello), now)
    for kind, what, value in steps:
        if kind == "receive":
            router.receive(what, value, now)
        elif kind == "carrier":
            router.set_interface_state(what, value, now)
        else:
            now += what
            router.handle_timer(now)
            deadline = router.get_timer()
            assert deadline is None or deadline > now, "a deadline handle_timer leaves due"
        check_core(router, now)
    for _ in range(50):  # then let its timers run: each must move time on
        deadline = router.get_timer()
        if deadline is None:
            break
        now = max(now, deadline)
        router.handle_timer(now)
        assert (router.get_timer() or now + 1) > now
        check_core(router, now)


# ---------------------------------------------------------------------- a network, attacked


@st.composite
def attacks(draw):
    kind = draw(st.sampled_from(["inject", "inject", "forge", "wait", "carrier"]))
    if kind == "wait":
        return kind, draw(st.sampled_from([0.0, 0.001, 0.05, 0.5, 3.0, 12.0])), None
    a, b = draw(st.sampled_from(LINKS))
    if kind == "carrier":
        return kind, (a, b), draw(st.booleans())
    victim, far = draw(st.permutations((a, b)))
    if kind == "forge":  # a real node's LSA near or at the top, posing as the real neighbor
        forged = draw(lsas([*NODES, STRANGER]))
        forged.originator = draw(st.sampled_from(NODES))
        forged.sequence = draw(st.sampled_from([MAX_SEQUENCE, MAX_SEQUENCE - 1, 2**40]))
        return "inject", (victim, far), update(far, forged)
    senders = [far, far, far, STRANGER, victim, *NODES]  # mostly posing as the real neighbor
    return kind, (victim, far), draw(datagrams(senders, [*NODES, STRANGER]))


@HYPOTHESIS
@given(attack=st.lists(attacks(), min_size=3, max_size=25))
def test_a_network_converges_back_once_the_attacker_stops(spa, attack):
    network = build(spa)
    longest_dead = 0.0
    for kind, where, value in attack:
        if kind == "wait":
            network.run_for(where)
        elif kind == "carrier":
            network.set_link_state(*where, value)
        else:
            victim, far = where
            network.inject(victim, interface_towards(network, victim, far), value)
            longest_dead = max(longest_dead, accepted_dead_interval_s(value))
        for router in network.routers.values():
            assert router.sequence <= MAX_SEQUENCE
            if any(interface.up for interface in router.interfaces.values()):
                assert router.get_timer() is not None
    for a, b in LINKS:
        network.set_link_state(a, b, True)
    network.run_for(recovery_bound(TIMERS, longest_dead))  # FIBs may not have reacted yet
    assert mismatches(network, ANNOUNCED) == {}
    wraps = sum(router.counters["sequence_wraps"] for router in network.routers.values())
    event(f"sequence wraps: {min(wraps, 2)}{'+' if wraps > 2 else ''}")  # see with
    # pytest --hypothesis-show-statistics: about a third of the examples wrap at least once
    for node, router in network.routers.items():  # every node holds each one's own LSA
        own = router.lsdb.get(node)
        assert not own.is_purge
        for other in network.routers.values():
            assert other.lsdb.get(node).lsa.sequence == own.lsa.sequence
