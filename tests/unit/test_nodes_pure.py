"""The pure parts of the node programs: leases, configuration, netlink parsing, peers, names."""

import json
import socket
import struct

import pytest

from dmsc.errors import ConfigError
from dmsc.nodes import config as node_config
from dmsc.nodes.config import InstanceConfig, PodConfig, RouterConfig
from dmsc.nodes.gateway import peer_interface
from dmsc.nodes.leases import Lease, LeaseTable
from dmsc.nodes.linkio import (
    IFF_LOWER_UP,
    IFF_UP,
    RTM_DELLINK,
    RTM_NEWLINK,
    arrival_of,
    parse_link_changes,
    signalling_refusal,
)
from dmsc.proto import dmsc_pb2


def lease(name, pod, expires, interface="sg1-eth1"):
    return Lease(
        name, pod, interface, b"\x02" * 6, dmsc_pb2.Attestation(body=pod.encode()), expires
    )


def test_a_name_is_advertised_while_any_pod_holds_it():
    table = LeaseTable()
    assert table.grant(lease("/B", "pod1", 10.0)) is True  # new: advertise
    assert table.grant(lease("/B", "pod2", 20.0)) is False  # already advertised
    assert table.latest_attestation("/B").body == b"pod2"
    assert table.expire(15.0) == []  # pod2 still holds /B
    assert [h.pod_id for h in table.holders("/B")] == ["pod2"]
    assert table.expire(25.0) == ["/B"]  # nobody left: withdraw


def test_release_and_renewal():
    table = LeaseTable()
    table.grant(lease("/B/4", "pod4", 10.0))
    table.grant(lease("/B/4", "pod4", 30.0))  # renewal
    assert table.next_expiry() == 30.0
    assert table.names_of("pod4") == ["/B/4"]
    assert table.release("/B/4", "pod4") is True
    assert table.next_expiry() is None


def router_config(**changes):
    data = {
        "node_id": "sg1",
        "role": "sg",
        "interfaces": [{"name": "sg1-eth0", "cost": 10}],
        "admin_socket": "/run/x.sock",
        "trust_anchors": [],
        "pod_interfaces": ["sg1-eth1"],
        "spa_target": "ipv6:[fe80::2%25sg1-eth2]:50051",
        "router_key_file": "/run/keys/sg1.key",
        "certificate_file": "/run/keys/sg1.cert",
        "link_key_file": "/run/keys/link.key",
        "routing_anchors": ["AAAA"],
    }
    data.update(changes)
    return data


def test_router_config_round_trips_through_json(tmp_path):
    config = node_config.from_mapping(RouterConfig, router_config(), "sg1.json")
    path = node_config.write(config, tmp_path / "sg1.json")
    assert node_config.load(RouterConfig, path) == config


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"colour": "red"}, r"unknown key\(s\) \['colour'\]"),
        ({"role": "switch"}, "role must be 'sg' or 'sr'"),
        ({"interfaces": [{"name": "x", "cost": "ten"}]}, "interfaces\\[0\\]: cost: expected int"),
        ({"spa_target": ""}, "an SG with pods needs spa_target"),
        ({"certificate_file": ""}, "certificate_file is missing; a router speaks only once"),
        ({"pod_links": {"sg1-eth7": "pod1"}}, r"pod_links names links that are no pod_int"),
        ({"timers": {"hello_interval": 5, "dead_interval": 1}}, "hello_interval < dead_interval"),
        ({"timers": {"hello": 1}}, "unknown timer"),
        ({"forward": "yes"}, "forward: expected bool"),
        ({"controller": "10.255.0.1"}, "controller: '10.255.0.1' is not HOST:PORT"),
        ({"controller": "10.255.0.1:99999"}, "is not HOST:PORT"),
        ({"openflow_listen": "0.0.0.0:6634"}, "need a controller"),
        ({"controller": "h:1", "probe_services": ["B"]}, "probe_services: .*'B'"),
        ({"controller": "h:1", "probe_services": ["/B"], "forward": False}, "needs the forwarder"),
        ({"controller": "h:1", "probe_interval_ms": 0}, "probe_interval_ms must be > 0"),
    ],
)
def test_bad_router_config_names_the_field(changes, message):
    with pytest.raises(ConfigError, match=message):
        node_config.from_mapping(RouterConfig, router_config(**changes), "sg1.json")


def test_missing_key_and_bad_json_are_reported(tmp_path):
    with pytest.raises(ConfigError, match=r"missing key\(s\) \['admin_socket'\]"):
        data = router_config()
        del data["admin_socket"]
        node_config.from_mapping(RouterConfig, data, "sg1.json")
    path = tmp_path / "bad.json"
    path.write_text("{nope")
    with pytest.raises(ConfigError, match=r"bad\.json: not JSON"):
        node_config.load(RouterConfig, path)


@pytest.mark.parametrize(
    ("instance", "message"),
    [("/B", "needs a service and an instance"), ("B/4", "must start with '/'")],
)
def test_pod_instances_are_checked(instance, message):
    with pytest.raises(ConfigError, match=message):
        InstanceConfig(instance)
    with pytest.raises(ConfigError, match="unknown services"):
        InstanceConfig("/B/4", ("telnet",))


def test_pod_needs_exactly_one_key_source():
    with pytest.raises(ConfigError, match="exactly one of key_label and key_file"):
        PodConfig("pod1", "pod1-eth0", "sg1", (InstanceConfig("/B/1"),))


def netlink(kind, index, flags):
    body = struct.pack("=BxHiII", 10, 1, index, flags, 0)
    return struct.pack("=IHHII", 16 + len(body), kind, 0, 0, 0) + body


def test_netlink_link_messages_are_parsed():
    data = (
        netlink(RTM_NEWLINK, 3, IFF_UP | IFF_LOWER_UP)
        + netlink(RTM_NEWLINK, 4, IFF_UP)
        + netlink(RTM_DELLINK, 5, IFF_UP | IFF_LOWER_UP)
    )
    assert [(c.index, c.up) for c in parse_link_changes(data)] == [
        (3, True),
        (4, False),
        (5, False),
    ]
    assert list(parse_link_changes(b"\x01\x02")) == []  # truncated: nothing, no exception


def test_peer_interface_comes_from_the_link_local_scope():
    assert peer_interface("ipv6:%5Bfe80::1%251%5D:4242") == "lo"  # index 1 is lo everywhere
    assert peer_interface("ipv4:127.0.0.1:5000") is None
    assert peer_interface("ipv6:%5Bfe80::1%25999999%5D:1") is None


def test_config_files_are_plain_json(tmp_path):
    config = PodConfig("pod1", "pod1-eth0", "sg1", (InstanceConfig("/B/1"),), key_label="pod1")
    path = node_config.write(config, tmp_path / "pod1.json")
    assert json.loads(path.read_text())["instances"][0]["name"] == "/B/1"


def test_probe_outages_are_runs_of_lost_echoes_including_one_still_open():
    from dmsc.nodes.udpprobe import outages

    sent = [i * 0.01 for i in range(20)]
    received = {str(i): sent[i] + 0.001 for i in range(20) if not 5 <= i < 10 and i < 16}
    runs = outages({"interval": 0.01, "sent": sent, "received": received})
    assert [(round(s, 3), round(d, 3)) for s, d in runs] == [(0.05, 0.05), (0.16, 0.04)]
    assert outages({"interval": 0.01, "sent": sent, "received": received}, after=0.11) == [runs[1]]


def pktinfo(address: str) -> tuple[int, int, bytes]:
    return (socket.IPPROTO_IPV6, socket.IPV6_PKTINFO,
            socket.inet_pton(socket.AF_INET6, address) + struct.pack("@I", 3))  # fmt: skip


def hop_limit(value: int) -> tuple[int, int, bytes]:
    return (socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT, struct.pack("@i", value))


@pytest.mark.parametrize(
    ("source", "destination", "hops", "refusal"),
    [
        ("fe80::1%sg1-eth0", "ff02::d5c", 255, None),
        ("fe80::1%sg1-eth0", "fe80::2", 255, None),
        # a tenant's packet routed to a node address: wrong on every count; each named
        ("fd00:b::4", "ff02::d5c", 255, "source fd00:b::4 is not link-local"),
        ("fe80::1", "fd00:ff::3", 255, "destination fd00:ff::3 is neither ff02::d5c nor link"),
        ("fe80::1", "ff02::d5c", 254, "hop limit 254, not 255 (crossed a router)"),
        ("fe80::1", "ff02::1", 255, "destination ff02::1 is neither"),
    ],
)
def test_signalling_arrives_only_from_the_link_with_hop_limit_255(
    source, destination, hops, refusal
):
    arrival = arrival_of((source, 6464, 0, 3), [pktinfo(destination), hop_limit(hops)])
    found = signalling_refusal(arrival)
    assert (found is None) if refusal is None else found.startswith(refusal)


def test_arrival_without_ancillary_data_is_refused():
    assert "unreadable" in signalling_refusal(arrival_of(("fe80::1", 6464, 0, 3), []))
