import ipaddress
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dmsc.errors import InvalidName, NameCollision
from dmsc.names import (
    DEFAULT_BLOCK,
    HASH_BASE,
    NameRegistry,
    ServiceName,
    address_fields,
    component_field,
    name_address,
    name_prefix,
    node_address,
)

components = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,11}", fullmatch=True)
names = st.lists(components, min_size=1, max_size=4).map(lambda c: ServiceName(tuple(c)))


@pytest.mark.parametrize("text", ["/B", "/B/4", "/shop/cart/3", "/a/b/c/d", "/x-1.y_z"])
def test_valid_names_round_trip(text):
    assert str(ServiceName.parse(text)) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("B", "must start with '/'"),
        ("/", "empty component"),
        ("/B/", "empty component"),
        ("/B//4", "empty component"),
        ("/a/b/c/d/e", "at most 4"),
        ("/B/ 4", "must start with a letter or digit"),
        ("/B/ä", "ASCII"),
        ("/-B", "must start with a letter or digit"),
        ("/" + "x" * 64, "longer than 63"),
    ],
)
def test_invalid_names_say_why(text, message):
    with pytest.raises(InvalidName, match=message):
        ServiceName.parse(text)


def test_non_string_name_is_refused():
    with pytest.raises(InvalidName, match="must be a string"):
        ServiceName.parse(4)


def test_layout_matches_the_documented_example():
    b = component_field("B")
    assert name_prefix("/B") == ipaddress.IPv6Network(f"fd64:6d73:63:{b:x}::/64")
    assert name_prefix("/B/4") == ipaddress.IPv6Network(f"fd64:6d73:63:{b:x}:4::/80")
    assert name_address("/B/4") == ipaddress.IPv6Address(f"fd64:6d73:63:{b:x}:4::1")
    assert name_address("/B") == ipaddress.IPv6Address(f"fd64:6d73:63:{b:x}::1")


def test_mapping_is_stable_across_releases():
    # Addresses appear in papers and captures: a change here breaks them, so it must be deliberate.
    assert str(name_address("/B/4")) == "fd64:6d73:63:92eb:4::1"
    assert str(name_prefix("/shop/cart/3")) == "fd64:6d73:63:aaa6:d749:3::/96"


def test_numbers_are_literal_only_in_canonical_form():
    assert component_field("4") == 4
    assert component_field("32767") == 0x7FFF
    for text in ("04", "0", "32768", "٣"):  # leading zero, zero, too large, non-ASCII digit
        if text == "٣":
            with pytest.raises(InvalidName):
                ServiceName.parse(f"/B/{text}")
            continue
        assert component_field(text) >= HASH_BASE


def test_service_address_lies_outside_every_instance_prefix():
    service = name_address("/B")
    for instance in range(1, 50):
        assert service not in name_prefix(f"/B/{instance}")


@given(names)
def test_address_nests_inside_every_ancestor_prefix(name):
    address = name_address(name)
    for depth in range(1, name.depth + 1):
        assert address in name_prefix(ServiceName(name.components[:depth]))
    assert name_prefix(name).prefixlen == 48 + 16 * name.depth
    assert address in DEFAULT_BLOCK


@given(names)
def test_address_fields_invert_the_mapping(name):
    fields, host = address_fields(name_address(name))
    assert fields == tuple(component_field(c) for c in name.components)
    assert host == 1


def test_node_addresses_are_outside_the_name_space():
    address = node_address("sr1")
    assert address in DEFAULT_BLOCK
    assert address_fields(address) is None
    assert node_address("sr1") == address != node_address("sr2")


def test_display_uses_known_names_and_shows_unknown_fields():
    registry = NameRegistry()
    registry.register("/shop/cart/3")
    assert registry.display(name_address("/shop/cart/3")) == "/shop/cart/3"
    assert registry.display(name_address("/shop")) == "/shop"
    assert registry.display(name_address("/shop/cart/7")) == "/shop/cart/7"
    unknown = component_field("basket")
    assert registry.display(name_address("/shop/basket")) == f"/shop/#{unknown:04x}"
    host2 = name_prefix("/shop/cart/3").network_address + 2
    assert registry.display(host2) == "/shop/cart/3 (host 0x2)"
    assert registry.display("2001:db8::1") == "2001:db8::1"


def colliding_components() -> tuple[str, str]:
    seen: dict[int, str] = {}
    for i in itertools.count():
        text = f"svc{i}"
        field = component_field(text)
        if field in seen:
            return seen[field], text
        seen[field] = text


def test_registry_refuses_a_colliding_name():
    first, second = colliding_components()
    assert component_field(first) == component_field(second)
    registry = NameRegistry()
    registry.register(f"/{first}")
    with pytest.raises(NameCollision, match=f"/{second} maps to .* already held by /{first}"):
        registry.register(f"/{second}")
    assert f"/{second}" not in registry
    registry.register(f"/{first}")  # re-registering the owner is fine
    assert len(registry) == 1


def test_collision_below_a_shared_parent_is_refused_too():
    first, second = colliding_components()
    registry = NameRegistry()
    registry.register(f"/B/{first}")
    with pytest.raises(NameCollision):
        registry.register(f"/B/{second}")
    registry.register(f"/C/{second}")  # other parent, other prefix: no collision
