import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from dmsc.lpm import PrefixTable


def net(text):
    return ipaddress.IPv6Network(text)


def test_longest_prefix_wins():
    table = PrefixTable()
    table.insert(net("fd00::/8"), "block")
    table.insert(net("fd00:1::/32"), "service")
    table.insert(net("fd00:1:0:4::/64"), "instance")
    assert table.lookup("fd00:1:0:4::1") == "instance"
    assert table.lookup("fd00:1:0:5::1") == "service"
    assert table.lookup("fd00:2::1") == "block"
    assert table.lookup("2001:db8::1") is None


def test_remove_falls_back_to_shorter_prefix():
    table = PrefixTable()
    table.insert(net("fd00::/16"), "short")
    table.insert(net("fd00::/64"), "long")
    assert table.remove(net("fd00::/64")) == "long"
    assert table.lookup("fd00::1") == "short"
    assert len(table) == 1
    assert net("fd00::/64") not in table


prefixes = st.builds(
    lambda value, length: ipaddress.IPv6Network(
        (value >> (128 - length) << (128 - length), length)
    ),
    st.integers(0, 2**128 - 1),
    st.integers(0, 128),
)


@given(st.lists(prefixes, max_size=30), st.lists(st.integers(0, 2**128 - 1), max_size=20))
def test_lookup_agrees_with_brute_force(table_prefixes, addresses):
    table = PrefixTable()
    for prefix in table_prefixes:
        table.insert(prefix, prefix)
    for value in addresses:
        address = ipaddress.IPv6Address(value)
        matching = [p for p in table_prefixes if address in p]
        expected = max(matching, key=lambda p: p.prefixlen) if matching else None
        assert table.lookup(address) == expected
