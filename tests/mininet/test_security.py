"""The threat model of docs/security.md, attacked on a running network.

Each test is an attacker's attempt — a tenant pod, a host on a router link, a router that holds
the link key but was never enrolled — and checks that it is refused, counted and visible in the
victim's events, while routing stays what the reference SPF says.
"""

import sys
import textwrap

import pytest

from dmsc.names import name_address, node_address
from dmsc.nodes.emulation import MGMT_SCSC_ADDRESS, OPENFLOW_LISTEN_PORT, OPENFLOW_PORT, ScscOptions
from dmsc.proto.codec import ALL_DMSC_ROUTERS, LINK_STATE_UDP_PORT
from dmsc.topologies import figure2

#: what an attacker's script starts with: packets of the DMSC protocol, built with its code
PRELUDE = f"""
import socket, sys, time
from dmsc.proto import dmsc_pb2

GROUP, PORT = {ALL_DMSC_ROUTERS!r}, {LINK_STATE_UDP_PORT}

def hello(sender, heard):
    return dmsc_pb2.LinkStatePacket(version=1, sender=sender, hello=dmsc_pb2.Hello(
        hello_interval_ms=1000, dead_interval_ms=4000, neighbors=heard))

def update(sender, *lsas):
    return dmsc_pb2.LinkStatePacket(version=1, sender=sender,
                                    update=dmsc_pb2.LinkStateUpdate(lsas=lsas))

def link_socket(interface):
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    index = socket.if_nametoindex(interface)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
    return s, index
"""


def attack(network, host, tmp_path, script: str) -> str:
    """Run ``script`` (after PRELUDE) in ``host``'s namespace, as the attacker would."""
    path = tmp_path / f"attack-{host}.py"
    path.write_text(PRELUDE + textwrap.dedent(script))
    return network.hosts[host].cmd(sys.executable, str(path))


def counter(network, node, name):
    return network.ask(node, "counters").get(name, 0)


def refusals(network, node):
    return [e["detail"] for e in network.ask(node, "events", limit=1000) if e["kind"] == "refused"]


def nobody_knows(network, stranger):
    for node in (*network.spec.gateways, *network.spec.routers):
        assert stranger not in {n["node"] for n in network.ask(node, "neighbors")}, node
        assert stranger not in {e["originator"] for e in network.ask(node, "lsdb")}, node


def lsa_sequences(network, originator):
    return {
        node: next(
            e["sequence"] for e in network.ask(node, "lsdb") if e["originator"] == originator
        )
        for node in (*network.spec.gateways, *network.spec.routers)
    }


@pytest.fixture
def figure2_with_scsc(emulate):
    """Figure 2 with the SCSC: node addresses on every SG's lo, the management network up."""
    network = emulate(figure2.spec(), scsc=ScscOptions())
    network.wait_converged(timeout=40)
    return network


def test_a_tenant_cannot_become_a_router(figure2_with_scsc, tmp_path):
    """The issue's attack: hellos and an LSA from pod3, by unicast to sg1's node address, which
    the data plane delivers to sg1 on a router interface. The GTSM check refuses them there
    (routable source, unicast destination, hop limit below 255), before any decoding."""
    network = figure2_with_scsc
    before = counter(network, "sg1", "rx_arrival_refused")
    target = str(node_address("sg1"))
    attack(
        network,
        "pod3",
        tmp_path,
        f"""
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
        lsa = dmsc_pb2.LinkStateAdvertisement(originator="tenant", sequence=1,
            lifetime_ms=600000, adjacencies=[dmsc_pb2.Adjacency(neighbor="sg1", cost=1)])
        for _ in range(8):
            s.sendto(hello("tenant", ["sg1"]).SerializeToString(), ({target!r}, PORT))
            s.sendto(update("tenant", lsa).SerializeToString(), ({target!r}, PORT))
            time.sleep(0.25)
    """,
    )
    assert counter(network, "sg1", "rx_arrival_refused") >= before + 16
    assert any("not link-local" in detail for detail in refusals(network, "sg1"))
    nobody_knows(network, "tenant")
    network.wait_converged(timeout=10)
    # and the victim's tenants are still served through the data plane
    ping = network.hosts["pod2"].cmd(
        "ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", str(name_address("/A/1"))
    )
    assert " 0% packet loss" in ping, ping


def test_a_host_on_a_router_link_without_the_link_key_is_not_heard(emulate, tmp_path):
    """From sr1's namespace, as a box plugged into the sg1-sr1 link would: link-local, hop
    limit 255, to the DMSC group, but no valid authentication trailer."""
    network = emulate(figure2.spec(), forward=False)
    network.wait_converged(timeout=30)
    interface = network.link_ends[("sg1", "sr1")][1]
    before = counter(network, "sg1", "rx_packet_refused")
    attack(
        network,
        "sr1",
        tmp_path,
        f"""
        s, index = link_socket({interface!r})
        for _ in range(6):
            s.sendto(hello("intruder", ["sg1"]).SerializeToString(), (GROUP, PORT, 0, index))
            time.sleep(0.25)
    """,
    )
    assert counter(network, "sg1", "rx_packet_refused") >= before + 6
    assert any("no authentication trailer" in d for d in refusals(network, "sg1"))
    nobody_knows(network, "intruder")
    network.wait_converged(timeout=10)


def test_a_router_with_the_stolen_link_key_but_no_enrolment_injects_nothing(emulate, tmp_path):
    """The attacker holds the link key (it forms an adjacency: the link key is the weaker
    secret) and its own key, certified by an anchor of its own. It floods its own LSA and one
    forged in sg3's name with a near-maximal sequence number and no prefixes: both refused,
    and /C/3 stays in every FIB."""
    network = emulate(figure2.spec(), forward=False)
    network.wait_converged(timeout=30)
    interface = network.link_ends[("sg1", "sr1")][1]
    sequences = lsa_sequences(network, "sg3")
    link_key = network.keys / "link.key"
    attack(
        network,
        "sr1",
        tmp_path,
        f"""
        from dmsc.routing.auth import PacketAuthenticator, RouterCredentials, enrol_router
        from dmsc.routing.domain import read_link_keys
        from dmsc.spa.keys import generate_private_key
        from pathlib import Path
        keys = read_link_keys(Path({str(link_key)!r}))
        sealer = PacketAuthenticator(keys, max(keys))
        anchor, key = generate_private_key(), generate_private_key()
        me = RouterCredentials("rogue", key,
            enrol_router(anchor, "rogue", "sr", key.public_key(), time.time(), 3600))
        own = me.sign(dmsc_pb2.LinkStateAdvertisement(originator="rogue", sequence=1,
            lifetime_ms=600000, adjacencies=[dmsc_pb2.Adjacency(neighbor="sg1", cost=1)]))
        forged = dmsc_pb2.LinkStateAdvertisement(originator="sg3", sequence=2**62,
            lifetime_ms=600000)
        forged.certificate.CopyFrom(me.certificate)
        forged.signature = key.sign(forged.SerializeToString())
        s, index = link_socket({interface!r})
        send = lambda p: s.sendto(sealer.seal(p.SerializeToString(), time.time()),
                                  (GROUP, PORT, 0, index))
        for _ in range(12):  # 3 s: hellos bring sg1 to FULL, then the updates
            send(hello("rogue", ["sg1"]))
            send(update("rogue", own, forged))
            time.sleep(0.25)
    """,
    )
    details = refusals(network, "sg1")
    assert counter(network, "sg1", "rx_lsa_refused") >= 2, network.ask("sg1", "counters")
    assert any("unknown anchor" in d for d in details), details
    assert not [e for e in network.ask("sg1", "lsdb") if e["originator"] == "rogue"]
    assert lsa_sequences(network, "sg3") == sequences
    network.wait_converged(timeout=10)  # the reference: /C/3 at sg3, nothing through rogue


def test_a_pod_reaches_neither_the_scsc_nor_a_nodes_openflow_endpoint(figure2_with_scsc, tmp_path):
    """The management network and each node's ovs-ofctl listener are out of the tenants'
    reach, even for a pod that gives itself an address in the management subnet."""
    network = figure2_with_scsc
    pod_interface = network.edges["pod1"].peer_interface
    network.hosts["pod1"].cmd("ip", "addr", "add", "10.255.200.1/16", "dev", pod_interface)
    network.hosts["pod1"].cmd("ip", "route", "add", "default", "dev", pod_interface)
    targets = [
        (MGMT_SCSC_ADDRESS, OPENFLOW_PORT),
        (network.mgmt_addresses["sg1"], OPENFLOW_LISTEN_PORT),
        (str(node_address("sg1")), OPENFLOW_LISTEN_PORT),
        (str(node_address("sg1")), OPENFLOW_PORT),
    ]
    output = attack(
        network,
        "pod1",
        tmp_path,
        f"""
        for host, port in {targets!r}:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            s = socket.socket(family, socket.SOCK_STREAM)
            s.settimeout(2.0)
            try:
                s.connect((host, port))
                print("REACHED", host, port)
            except OSError as error:
                print("refused", host, port, type(error).__name__)
            finally:
                s.close()
    """,
    )
    assert "REACHED" not in output, output
    assert output.count("refused") == len(targets), output
    network.wait_converged(timeout=10)


def test_a_pod_cannot_withdraw_another_pods_prefixes(emulate, tmp_path):
    """A tenant program on pod1's link, without pod1's key: it withdraws pod1's prefixes under
    pod1's id (its own signature), then sends the SG bytes that are no request at all. The SG
    answers PERMISSION_DENIED and INVALID_ARGUMENT, counts both, and pod1's prefixes stay."""
    network = emulate(figure2.spec(), forward=False)
    network.wait_converged(timeout=30)
    interface = network.edges["pod1"].peer_interface
    output = attack(
        network,
        "pod1",
        tmp_path,
        f"""
        import os, grpc
        from dmsc.proto import dmsc_pb2_grpc
        from dmsc.spa.claims import sign_withdrawal
        from dmsc.spa.keys import generate_private_key
        target = "ipv6:[fe80::1%25{interface}]:50061"
        with grpc.insecure_channel(target) as channel:
            stub = dmsc_pb2_grpc.PodGatewayStub(channel)
            request = sign_withdrawal(generate_private_key(), "pod1", ["/A/1", "/B/1"], "sg1",
                                      time.time(), os.urandom(16))
            try:
                stub.Withdraw(request, timeout=5)
                print("WITHDRAWN")
            except grpc.RpcError as error:
                print(error.code().name, error.details())
            raw = channel.unary_unary("/dmsc.v1.PodGateway/Withdraw",
                                      request_serializer=None, response_deserializer=None)
            try:
                raw(b"\\xff\\x01garbage", timeout=5)
                print("ANSWERED")
            except grpc.RpcError as error:
                print(error.code().name, error.details())
    """,
    )
    assert "WITHDRAWN" not in output and "ANSWERED" not in output, output
    assert "PERMISSION_DENIED bad signature" in output, output
    assert "INVALID_ARGUMENT" in output, output
    counters = network.ask("sg1", "counters")
    assert counters.get("pod_refused_bad_signature", 0) >= 1, counters
    assert counters.get("pod_rx_undecodable", 0) >= 1, counters
    assert any(e["kind"] == "pod-refused" for e in network.ask("sg1", "events", limit=1000))
    assert {"/A/1", "/B/1"} <= {lease["name"] for lease in network.ask("sg1", "leases")}
    network.wait_converged(timeout=10)  # /A/1 and /B/1 still routed to sg1 everywhere
