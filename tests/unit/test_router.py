"""One or two link-state cores, driven by hand."""

import pytest

from dmsc.proto import dmsc_pb2
from dmsc.routing import LinkStateRouter, LinkStateTimers
from dmsc.routing.auth import PacketAuthenticator
from dmsc.routing.domain import LINK_KEY_ID
from dmsc.routing.neighbor import State
from dmsc.sim import SimNetwork

T0 = 1_750_000_000.0


def pair(spa, **timers):
    network = SimNetwork(spa.verifier, LinkStateTimers(**timers))
    network.add_node("a")
    network.add_node("b")
    network.add_link("a", "b")
    network.run_for(3.0)
    return network


def test_three_way_handshake_makes_both_sides_full(spa):
    network = pair(spa)
    for node, other in (("a", "b"), ("b", "a")):
        [neighbor] = network.routers[node].full_neighbors()
        assert neighbor.node_id == other and neighbor.state is State.FULL


def test_one_way_hello_leaves_the_neighbor_in_init(spa):
    router = LinkStateRouter("a", spa.verifier, now=T0)
    router.add_interface("eth0", 10, T0)
    hello = dmsc_pb2.LinkStatePacket(
        version=1,
        sender="b",
        hello=dmsc_pb2.Hello(hello_interval_ms=1000, dead_interval_ms=4000, neighbors=["x"]),
    )
    router.receive("eth0", hello.SerializeToString(), T0)
    assert router.neighbors["eth0"]["b"].state is State.INIT
    sent = [dmsc_pb2.LinkStatePacket.FromString(d) for _, d in router.datagrams_to_send()]
    assert any(p.hello.neighbors == ["b"] for p in sent)  # answers at once, listing b


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff" * 40,
        b"\x08\x01\x12\x01a",
        dmsc_pb2.LinkStatePacket(version=7, sender="b").SerializeToString(),
    ],
)
def test_malformed_datagrams_are_counted_and_the_router_keeps_working(spa, data):
    network = pair(spa)
    router = network.routers["a"]
    network.inject("a", "eth0", data)
    assert router.counters["rx_decode_errors"] == 1
    assert any(e.kind == "decode-error" for e in router.events)
    network.announce("b", "/B", spa.attest("/B", "b", network.now))
    network.run_for(2.0)
    assert "/B" in {entry.label for _, entry in router.fib.items()}


def test_datagram_on_an_unknown_interface_is_counted(spa):
    router = LinkStateRouter("a", spa.verifier, now=T0)
    router.receive("eth9", b"whatever", T0)
    assert router.counters["rx_on_unknown_or_down_interface"] == 1


def test_update_from_a_stranger_is_ignored(spa):
    network = pair(spa)
    lsa = dmsc_pb2.LinkStateAdvertisement(originator="z", sequence=5, lifetime_ms=60_000)
    packet = dmsc_pb2.LinkStatePacket(
        version=1, sender="z", update=dmsc_pb2.LinkStateUpdate(lsas=[lsa])
    )
    # even holding the link key, a node with no adjacency cannot push LSAs
    sealer = PacketAuthenticator(network.domain.link_keys, LINK_KEY_ID)
    network.inject("a", "eth0", sealer.seal(packet.SerializeToString(), network.now))
    assert network.routers["a"].lsdb.get("z") is None
    assert network.routers["a"].counters["rx_update_without_adjacency"] == 1


def test_carrier_loss_drops_the_adjacency_at_once(spa):
    network = pair(spa)
    network.set_link_state("a", "b", False)
    assert network.routers["a"].full_neighbors() == []
    network.run_for(0.5)
    labels = {entry.label for _, entry in network.routers["a"].fib.items()}
    assert labels == {"a"}


def test_graceful_shutdown_purges_the_lsa_everywhere(spa):
    network = pair(spa)
    network.stop_node("b")
    network.run_for(0.5)
    stored = network.routers["a"].lsdb.get("b")
    assert stored is not None and stored.is_purge
    assert "b" not in {entry.label for _, entry in network.routers["a"].fib.items()}


def test_lsa_of_a_silent_originator_is_dropped_by_every_node_as_it_runs_out(spa):
    # only c could sign a purge of its LSA: each node ages it out by itself, at the same time
    network = pair(spa, lsa_lifetime=20.0, lsa_refresh=10.0, purge_hold=5.0)
    network.add_node("c")
    network.add_link("b", "c")
    network.run_for(3.0)
    network.crash_node("c")
    network.set_link_state("b", "c", False)  # c's LSA now has nobody to refresh it
    routers = [network.routers["a"], network.routers["b"]]
    ends = [router.lsdb.get("c").expires_at for router in routers]
    assert max(ends) - min(ends) < 0.01  # the remaining lifetime travels with each copy
    network.run_until(min(ends) - 0.01)
    assert all(router.lsdb.get("c") is not None for router in routers)
    network.run_until(max(ends) + 0.01)
    for router in routers:
        assert router.lsdb.get("c") is None and router.counters["lsa_expired"] == 1
        assert any(e.kind == "expire" and e.detail.startswith("LSA c ") for e in router.events)
        assert not any(e.kind == "purge" and e.detail.startswith("LSA c ") for e in router.events)
        assert "c" not in {entry.label for _, entry in router.fib.items()}


def test_refresh_keeps_a_quiet_network_alive_past_the_lifetime(spa):
    network = pair(spa, lsa_lifetime=20.0, lsa_refresh=10.0)
    network.run_for(60.0)
    assert {e.label for _, e in network.routers["a"].fib.items()} == {"a", "b"}
    assert network.routers["b"].sequence >= 6
