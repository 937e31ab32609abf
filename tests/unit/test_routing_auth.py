"""Enrolled routers and keyed links, attacked at the core: each forgery is refused and counted,
and the network keeps its routes."""

import os
import stat

import pytest

from dmsc.errors import ConfigError
from dmsc.proto import dmsc_pb2
from dmsc.routing import LinkStateRouter
from dmsc.routing.auth import (
    REPLAY_WINDOW,
    CertificateChecker,
    LsaVerifier,
    PacketAuthenticator,
    Refused,
    ReplayWindow,
    RouterCredentials,
    enrol_router,
)
from dmsc.routing.domain import LINK_KEY_ID, RoutingDomain, read_certificate, read_link_keys
from dmsc.sim import network_from_graph
from dmsc.sim.reference import fibs_match, mismatches
from dmsc.spa.keys import generate_private_key

from .test_sim_network import build, converge, twenty_nodes


def hello_from(sender: str, neighbors=()) -> bytes:
    return dmsc_pb2.LinkStatePacket(
        version=1,
        sender=sender,
        hello=dmsc_pb2.Hello(hello_interval_ms=1000, dead_interval_ms=4000, neighbors=neighbors),
    ).SerializeToString()


def sealed(domain: RoutingDomain, data: bytes, now: float) -> bytes:
    return PacketAuthenticator(domain.link_keys, LINK_KEY_ID).seal(data, now)


def update_from(sender: str, *lsas) -> bytes:
    return dmsc_pb2.LinkStatePacket(
        version=1, sender=sender, update=dmsc_pb2.LinkStateUpdate(lsas=lsas)
    ).SerializeToString()


def edge_of(network, node):
    """(neighbor id, our interface) of one FULL adjacency of ``node``."""
    neighbor = network.routers[node].full_neighbors()[0]
    return neighbor.node_id, neighbor.interface


# ---------------------------------------------------------------------- per-link packets


def test_hellos_without_the_link_key_form_no_adjacency(spa):
    network, announced = build(spa)
    converge(network, announced)
    victim = network.routers["r0"]
    _, interface = edge_of(network, "r0")
    for _ in range(5):  # a tenant speaking the protocol, listing the victim as if 2-way
        network.inject("r0", interface, hello_from("tenant", ["r0"]))
        network.run_for(0.5)
    assert "tenant" not in victim.neighbors[interface]
    assert victim.counters["rx_packet_refused"] == 5
    refusals = [e for e in victim.events if e.kind == "refused"]
    assert len(refusals) == 1 and "no authentication trailer" in refusals[0].detail  # rate-limited
    assert mismatches(network, announced) == {}


def test_a_wrong_link_key_or_a_flipped_bit_is_refused(spa):
    network, announced = build(spa)
    converge(network, announced)
    _, interface = edge_of(network, "r0")
    stranger = RoutingDomain.generate()  # its own link key
    network.inject("r0", interface, sealed(stranger, hello_from("x", ["r0"]), network.now))
    good = bytearray(sealed(network.domain, hello_from("x", ["r0"]), network.now + 1e-5))
    good[12] ^= 0x01
    network.inject("r0", interface, bytes(good))
    victim = network.routers["r0"]
    assert victim.counters["rx_packet_refused"] + victim.counters["rx_decode_errors"] == 2
    assert "x" not in victim.neighbors[interface]


def test_a_second_trailer_in_front_does_not_fool_the_check(spa):
    domain = RoutingDomain.from_seed(1)
    genuine = sealed(domain, hello_from("x"), 100.0)
    forged_body = hello_from("evil", ["r0"])
    packet = dmsc_pb2.LinkStatePacket.FromString(genuine)
    # the genuine trailer copied behind other bytes: the digest covers what precedes it
    forgery = (
        forged_body
        + dmsc_pb2.LinkStatePacket(authentication=packet.authentication).SerializeToString()
    )
    checker = PacketAuthenticator(domain.link_keys, LINK_KEY_ID)
    with pytest.raises(Refused, match="HMAC"):
        checker.check("eth0", forgery, dmsc_pb2.LinkStatePacket.FromString(forgery))


def test_replay_window_accepts_reordering_and_refuses_repeats():
    window = ReplayWindow()
    for sequence in (10, 12, 11, 9):
        window.accept(sequence)
    for repeat in (10, 11, 12, 9):
        with pytest.raises(Refused, match="replayed"):
            window.accept(repeat)
    window.accept(10 + REPLAY_WINDOW + 5)
    with pytest.raises(Refused, match="older than the replay window"):
        window.accept(8)
    window.accept(10**15)  # a jump (a restarted sender's clock-based sequence)
    with pytest.raises(Refused):
        window.accept(10**15)


# ---------------------------------------------------------------------- enrolment and LSAs


def test_a_router_with_the_link_key_but_no_enrolment_never_enters_spf(spa):
    """An adjacency is not trust: the rogue's own LSA is refused, so no path leads through it
    (SPF needs both ends of an edge to advertise it)."""
    network, announced = build(spa)
    converge(network, announced)
    rogue = LinkStateRouter("rogue", spa.verifier, now=network.now)  # open: signs nothing
    network.routers["rogue"] = rogue
    network._interface_count["rogue"] = 0
    network.add_link("rogue", "r0")
    network.add_link("rogue", "r10")
    # the rogue holds the link key: seal what it sends (the simulator hands its bytes on)
    sealer = PacketAuthenticator(network.domain.link_keys, LINK_KEY_ID)
    rogue._emit = lambda interface, packet, now: rogue._outbox.append(
        (interface, sealer.seal(packet.SerializeToString(), now))
    )
    network.run_for(10.0)
    assert any(n.node_id == "rogue" for n in network.routers["r0"].full_neighbors())
    for node, router in network.routers.items():
        if node == "rogue":
            continue
        assert router.lsdb.get("rogue") is None
        assert all(
            "rogue" not in hop for entry in router.routes.values() for hop in entry.next_hops
        )
    assert network.routers["r0"].counters["rx_lsa_refused"] >= 1


def test_an_lsa_forged_in_another_routers_name_is_refused_everywhere(spa):
    """The issue's attack: "sg3" with the highest sequence number and no prefixes, sent by an
    enrolled router (r0 holds its own key and the link key, not r3's key)."""
    network, announced = build(spa)
    converge(network, announced)
    current = network.routers["r0"].lsdb.get("r3").lsa
    forged = dmsc_pb2.LinkStateAdvertisement(
        originator="r3",
        sequence=2**63 - 1,
        lifetime_ms=600_000,
        adjacencies=current.adjacencies,
    )
    r0_credentials = network.routers["r0"].security.credentials
    forged.certificate.CopyFrom(r0_credentials.certificate)  # its own, valid certificate
    forged.signature = r0_credentials.private_key.sign(b"anything")
    neighbor, _ = edge_of(network, "r0")
    data = sealed(network.domain, update_from("r0", forged), network.now + 1e-5)
    network.inject(neighbor, network.link_between("r0", neighbor).far_end("r0")[1], data)
    network.run_for(3.0)
    assert network.routers[neighbor].counters["rx_lsa_refused"] == 1
    detail = next(e.detail for e in network.routers[neighbor].events if e.kind == "refused")
    assert "enrols 'r0', not 'r3'" in detail
    assert all(r.lsdb.get("r3").lsa.sequence == current.sequence for r in network.routers.values())
    assert mismatches(network, announced) == {}


def test_nobody_but_the_originator_can_purge_its_lsa(spa):
    network, announced = build(spa)
    converge(network, announced)
    neighbor, _ = edge_of(network, "r0")
    purge = dmsc_pb2.LinkStateAdvertisement()
    purge.CopyFrom(network.routers["r0"].lsdb.get("r3").lsa)  # validly signed, live
    purge.lifetime_ms = 0  # a purge beats a live copy of the same sequence number
    far_interface = network.link_between("r0", neighbor).far_end("r0")[1]
    network.inject(
        neighbor,
        far_interface,
        sealed(network.domain, update_from("r0", purge), network.now + 1e-5),
    )
    network.run_for(3.0)
    assert network.routers[neighbor].counters["rx_lsa_refused"] == 1
    assert mismatches(network, announced) == {}


def test_certificate_checks_name_what_is_wrong():
    anchor, other_anchor = generate_private_key(), generate_private_key()
    router_key = generate_private_key()
    checker = CertificateChecker([anchor.public_key()])
    good = enrol_router(anchor, "sg1", "sg", router_key.public_key(), 100.0, 50.0)
    assert checker.router_key(good, "sg1", 120.0) is not None
    with pytest.raises(Refused, match="enrols 'sg1', not 'sg2'"):
        checker.router_key(good, "sg2", 120.0)
    with pytest.raises(Refused, match=r"valid 100\.\.150, not at 151"):
        checker.router_key(good, "sg1", 151.0)
    unknown = enrol_router(other_anchor, "sg1", "sg", router_key.public_key(), 100.0, 50.0)
    with pytest.raises(Refused, match="unknown anchor"):
        checker.router_key(unknown, "sg1", 120.0)
    tampered = dmsc_pb2.RouterCertificate(body=good.body, signature=bytes(64))
    with pytest.raises(Refused, match="does not verify"):
        checker.router_key(tampered, "sg1", 120.0)
    with pytest.raises(Refused, match="not enrolled"):
        checker.router_key(dmsc_pb2.RouterCertificate(), "sg1", 120.0)


def test_a_signed_lsa_verifies_whatever_its_remaining_lifetime():
    anchor, key = generate_private_key(), generate_private_key()
    credentials = RouterCredentials(
        "sg1", key, enrol_router(anchor, "sg1", "sg", key.public_key(), 0.0, 1e9)
    )
    lsa = credentials.sign(
        dmsc_pb2.LinkStateAdvertisement(originator="sg1", sequence=3, lifetime_ms=1_800_000)
    )
    verifier = LsaVerifier(CertificateChecker([anchor.public_key()]))
    lsa.lifetime_ms = 17  # aged in flight
    verifier.check(lsa, 10.0)
    lsa.sequence = 4
    with pytest.raises(Refused, match="not signed"):
        verifier.check(lsa, 10.0)


def test_signed_network_converges_like_an_open_one(spa):
    """Authentication changes who is heard, not what is computed."""
    for secure in (True, False):
        network = network_from_graph(twenty_nodes(), spa.verifier, secure=secure)
        network.run_until_true(lambda n=network: fibs_match(n, {}), timeout=30.0)
        assert all(
            r.counters["rx_packet_refused"] == 0 and r.counters["rx_lsa_refused"] == 0
            for r in network.routers.values()
        )


# ---------------------------------------------------------------------- keys on disk


def test_a_domain_directory_keeps_what_exists_and_creates_the_rest(tmp_path):
    domain = RoutingDomain.open_directory(tmp_path)
    domain.write_router(tmp_path, "sg1", "sg", 100.0)
    assert stat.S_IMODE(os.stat(tmp_path / "link.key").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "sg1.key").st_mode) == 0o600
    again = RoutingDomain.open_directory(tmp_path)
    assert again.anchor_text == domain.anchor_text
    assert again.link_keys == domain.link_keys
    certificate = read_certificate(tmp_path / "sg1.cert")
    checker = CertificateChecker([again.anchor.public_key()])
    enrolled = checker.router_key(certificate, "sg1", 200.0)
    assert enrolled.public_bytes_raw() == again.router_key("sg1").public_key().public_bytes_raw()
    assert RoutingDomain.generate().link_keys != domain.link_keys  # fresh per run


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "no link key"),
        ("1 abcd\n", "at least 32 bytes"),
        ("x y\n", "expected 'KEY_ID"),
        ("0 " + "00" * 32, "key id must be"),
    ],
)
def test_bad_link_key_files_are_refused_with_the_line(tmp_path, text, message):
    path = tmp_path / "link.key"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        read_link_keys(path)


def test_neighbours_per_link_stop_at_what_a_hello_can_list(spa):
    from dmsc.proto.codec import MAX_NEIGHBORS_PER_HELLO, decode_packet

    router = LinkStateRouter("a", spa.verifier, now=1000.0)  # open: the bound, not the key
    router.add_interface("eth0", 10, 1000.0)
    for index in range(MAX_NEIGHBORS_PER_HELLO + 5):
        router.receive("eth0", hello_from(f"n{index}"), 1000.0)
    assert len(router.neighbors["eth0"]) == MAX_NEIGHBORS_PER_HELLO
    assert router.counters["rx_neighbor_refused"] == 5
    router.handle_timer(1001.0)
    for _, data in router.datagrams_to_send():
        decode_packet(data)  # our own hellos stay decodable by every neighbour
