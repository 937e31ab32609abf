"""Many link-state cores on fake links with a virtual clock (issue: protocol core, item 6)."""

import random

import networkx as nx
import pytest

from dmsc.names import ServiceName, name_address
from dmsc.proto import dmsc_pb2
from dmsc.routing import LinkStateTimers
from dmsc.routing.auth import PacketAuthenticator
from dmsc.routing.domain import LINK_KEY_ID
from dmsc.sim import Delivery, network_from_graph
from dmsc.sim.reference import actual_routes, fibs_match, mismatches

CONVERGE = 30.0  # virtual seconds: generous next to the default timers


def twenty_nodes(seed: int = 7) -> nx.Graph:
    graph = nx.connected_watts_strogatz_graph(20, 4, 0.3, seed=seed)
    rng = random.Random(seed)
    for u, v in graph.edges:
        graph[u][v]["cost"] = rng.randint(1, 6)
    return nx.relabel_nodes(graph, {n: f"r{n}" for n in graph})


def build(spa, graph=None, **link_options):
    network = network_from_graph(graph or twenty_nodes(), spa.verifier, **link_options)
    announced = {"/B": {"r3", "r15"}, "/B/4": {"r3"}, "/B/7": {"r15"}, "/shop/cart": {"r9"}}
    for name, origins in announced.items():
        for origin in origins:
            network.announce(origin, name, spa.attest(name, origin, network.now))
    return network, announced


def converge(network, announced):
    network.run_until_true(lambda: fibs_match(network, announced), timeout=CONVERGE)
    assert mismatches(network, announced) == {}


def test_twenty_nodes_converge_to_the_independent_spf(spa):
    network, announced = build(spa)
    converge(network, announced)
    # anycast: every node routes /B toward the nearer of r3 and r15 (checked by the reference);
    # and both origins really are used by someone
    toward = {n: actual_routes(r)["/B"] for n, r in network.routers.items()}
    assert toward["r3"] == (frozenset(), True) and toward["r15"] == (frozenset(), True)


def test_fib_lookup_resolves_instance_and_service_addresses(spa):
    network, announced = build(spa)
    converge(network, announced)
    router = network.routers["r0"]
    instance = router.fib.lookup(name_address("/B/4"))
    service = router.fib.lookup(name_address("/B"))
    assert instance.label == "/B/4" and service.label == "/B"
    assert router.fib.lookup(name_address("/B/9")).label == "/B"  # unknown instance: the service


def test_link_failure_reconverges_and_restores(spa):
    network, announced = build(spa)
    converge(network, announced)
    graph = network.graph().to_undirected()
    a, b = next(
        (u, v) for u, v in graph.edges if nx.is_connected(nx.restricted_view(graph, [], [(u, v)]))
    )
    network.set_link_state(a, b, False)
    failed_at = network.now
    converge(network, announced)
    assert max(network.fib_changed_at.values()) - failed_at < 1.0  # carrier loss: no dead wait
    network.set_link_state(a, b, True)
    converge(network, announced)


def test_crashed_node_is_routed_around_and_its_prefixes_vanish(spa):
    network, announced = build(spa)
    converge(network, announced)
    network.crash_node("r15")  # silent: neighbors find out by the dead interval
    remaining = {name: origins - {"r15"} for name, origins in announced.items()}
    network.run_until_true(lambda: fibs_match(network, remaining), timeout=CONVERGE)
    for router in network.live_routers().values():
        labels = actual_routes(router)
        assert "/B/7" not in labels and "r15" not in labels
        assert labels["/B"] == actual_routes(router)["/B"]  # still served, by r3


def test_restarted_node_jumps_past_its_old_sequence_numbers(spa):
    network, announced = build(spa)
    converge(network, announced)
    for _ in range(3):  # r4 originates a few times: its sequence runs ahead of a fresh start
        network.announce("r4", "/tmp", spa.attest("/tmp", "r4", network.now))
        network.run_for(1.0)
        network.withdraw("r4", "/tmp")
        network.run_for(1.0)
    converge(network, announced)
    old_sequence = network.routers["r4"].sequence
    network.crash_node("r4")
    network.run_for(1.0)
    restarted = network.restart_node("r4")
    network.run_until_true(
        lambda: restarted.sequence > old_sequence and fibs_match(network, announced), CONVERGE
    )
    assert restarted.counters["rx_own_lsa_newer"] >= 1
    for router in network.live_routers().values():
        assert router.lsdb.get("r4").lsa.sequence == restarted.sequence


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_lossy_duplicating_reordering_links_still_converge(spa, seed):
    network, announced = build(spa, loss=0.2, duplicate=0.1, jitter=0.02, delay=0.005)
    network.seed = seed
    converge(network, announced)
    assert sum(r.counters["tx_retransmissions"] for r in network.routers.values()) > 0


def capture_updates(network):
    captured: list[Delivery] = []

    def tap(delivery: Delivery) -> None:
        packet = dmsc_pb2.LinkStatePacket.FromString(delivery.data)
        if packet.WhichOneof("body") == "update":
            captured.append(delivery)

    network.taps.append(tap)
    return captured


def test_replayed_old_lsa_changes_nothing_and_is_answered(spa):
    network, announced = build(spa)
    captured = capture_updates(network)
    converge(network, announced)
    old = next(d for d in captured if _originators(d) == {"r3"})
    network.withdraw("r3", "/B/4")  # r3 moves on: new sequence
    del announced["/B/4"]
    converge(network, announced)
    victim = network.routers[old.destination]
    before = dict(victim.routes), victim.lsdb.get("r3").lsa.sequence
    network.inject(old.destination, old.interface, old.data)  # the datagram as captured
    assert victim.counters["rx_packet_refused"] == 1  # caught by the link's replay window
    # a router on the link, holding the link key, replays the old (validly signed) LSA
    network.inject(old.destination, old.interface, resealed(network, old.data))
    assert victim.counters["rx_lsa_older"] >= 1
    network.run_for(2.0)
    assert (dict(victim.routes), victim.lsdb.get("r3").lsa.sequence) == before
    assert mismatches(network, announced) == {}


def resealed(network, data: bytes) -> bytes:
    """``data`` with a fresh authentication trailer, as a holder of the link key can make."""
    packet = dmsc_pb2.LinkStatePacket.FromString(data)
    packet.ClearField("authentication")
    sealer = PacketAuthenticator(network.domain.link_keys, LINK_KEY_ID)
    return sealer.seal(packet.SerializeToString(), network.now + 1e-5)


def test_duplicated_update_is_acknowledged_not_reinstalled(spa):
    network, announced = build(spa)
    captured = capture_updates(network)
    converge(network, announced)
    latest = captured[-1]
    victim = network.routers[latest.destination]
    version = victim.fib_version
    network.inject(latest.destination, latest.interface, latest.data)  # a link-level duplicate
    assert victim.counters["rx_packet_refused"] == 1
    for _ in range(3):  # the same LSA again, in fresh packets
        network.inject(latest.destination, latest.interface, resealed(network, latest.data))
        network.run_for(1e-4)
    assert victim.counters["rx_lsa_duplicate"] >= 3
    network.run_for(1.0)
    assert victim.fib_version == version


def _originators(delivery: Delivery) -> set[str]:
    packet = dmsc_pb2.LinkStatePacket.FromString(delivery.data)
    return {lsa.originator for lsa in packet.update.lsas}


def test_forged_old_sequence_number_is_ignored(spa):
    network, announced = build(spa)
    converge(network, announced)
    victim = network.routers["r0"]
    neighbor = victim.full_neighbors()[0]
    current = victim.lsdb.get("r3").lsa
    forged = dmsc_pb2.LinkStateAdvertisement()
    forged.CopyFrom(current)
    forged.sequence = current.sequence - 1
    del forged.prefixes[:]  # an old copy that would withdraw r3's prefixes
    packet = dmsc_pb2.LinkStatePacket(
        version=1, sender=neighbor.node_id, update=dmsc_pb2.LinkStateUpdate(lsas=[forged])
    )
    # sent by a router on the link (it holds the link key) but not signed by r3
    network.inject("r0", neighbor.interface, resealed(network, packet.SerializeToString()))
    assert victim.counters["rx_lsa_refused"] == 1
    network.run_for(2.0)
    assert victim.lsdb.get("r3").lsa.sequence == current.sequence
    assert mismatches(network, announced) == {}


def test_prefix_with_a_rogue_or_replayed_attestation_is_never_installed(spa):
    from dmsc.spa.claims import issue_attestation
    from dmsc.spa.keys import demo_private_key

    network, announced = build(spa)
    rogue_key = demo_private_key("rogue")
    rogue = issue_attestation(rogue_key, "/pay", "pod-x", "r5", network.now, 3600)
    network.announce("r5", "/pay", rogue)
    stolen = spa.attest("/B/4", "r3", network.now)  # valid, but issued for r3
    network.announce("r6", "/B/4", stolen)
    converge(network, announced)
    for router in network.routers.values():
        assert "/pay" not in actual_routes(router)
        assert router.counters["prefixes_rejected"] == 2
        reasons = " ".join(e.detail for e in router.events if e.kind == "reject")
        assert "r5" in reasons and "r6" in reasons


def test_expired_attestation_is_withdrawn_from_every_fib(spa):
    network, announced = build(spa)
    network.announce("r8", "/short", spa.attest("/short", "r8", network.now, 20.0))
    with_short = {**announced, "/short": {"r8"}}
    converge(network, with_short)
    network.run_until_true(lambda: fibs_match(network, announced), timeout=30.0)
    assert all("/short" not in actual_routes(r) for r in network.routers.values())


def colliding_names() -> tuple[str, str]:
    from dmsc.names import component_field

    seen = {}
    for i in range(100_000):
        field = component_field(f"svc{i}")
        if field in seen:
            return f"/{seen[field]}", f"/svc{i}"
        seen[field] = f"svc{i}"
    raise AssertionError("no collision found")


def test_colliding_names_are_refused_the_same_way_everywhere(spa):
    first, second = colliding_names()
    network, announced = build(spa)
    for name, origin in ((first, "r1"), (second, "r2")):
        network.announce(origin, name, spa.attest(name, origin, network.now))
    kept = min(first, second, key=ServiceName.parse)  # the RIB keeps the first in name order
    converge(network, {**announced, kept: {"r1" if kept == first else "r2"}})
    refused = second if kept == first else first
    for router in network.routers.values():
        assert refused not in actual_routes(router)
        assert any(e.kind == "reject" and refused in e.detail for e in router.events)


def test_slow_timers_are_honoured_a_crash_waits_for_the_dead_interval(spa):
    slow = LinkStateTimers(hello_interval=10.0, dead_interval=40.0)
    network = network_from_graph(twenty_nodes(), spa.verifier, timers=slow)
    network.run_until_true(lambda: fibs_match(network, {}), timeout=120.0)
    network.crash_node("r11")
    crashed_at = network.now
    network.run_until_true(lambda: fibs_match(network, {}), timeout=120.0)
    detected = min(network.fib_changed_at[n] for n in network.live_routers()) - crashed_at
    assert 30.0 <= detected <= 40.0 + 1.0  # last hello up to 10 s before the crash


def test_attestation_not_valid_yet_is_installed_once_it_becomes_valid(spa):
    network, announced = build(spa)
    early = spa.attest("/later", "r2", network.now + 10.0)  # issued ahead of the nodes' clocks
    network.announce("r2", "/later", early)
    converge(network, announced)
    assert all("/later" not in actual_routes(r) for r in network.routers.values())
    network.run_until_true(
        lambda: fibs_match(network, {**announced, "/later": {"r2"}}), timeout=CONVERGE
    )
