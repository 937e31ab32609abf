"""The SPA policy file: parsing, loud validation, wildcard semantics (dmsc.spa.policy)."""

from __future__ import annotations

import argparse
import copy
import hashlib
import re
from pathlib import Path

import pytest
import yaml

from dmsc.cli import spa as spa_cli
from dmsc.errors import ConfigError
from dmsc.names import ServiceName
from dmsc.spa.keys import (
    DEMO_SEED_LABEL,
    demo_private_key,
    key_id,
    private_key_from_seed,
    public_key_to_text,
)
from dmsc.spa.policy import (
    DEFAULT_ATTESTATION_VALIDITY_S,
    DEFAULT_CLAIM_WINDOW_S,
    PodIdentity,
    dump_policy,
    load_policy,
    parse_policy,
)

REPO = Path(__file__).resolve().parents[2]
FIGURE2 = REPO / "experiments" / "policies" / "figure2-spa.yaml"
KEY1 = public_key_to_text(private_key_from_seed(b"\x01" * 32).public_key())
KEY2 = public_key_to_text(private_key_from_seed(b"\x02" * 32).public_key())


def good_data() -> dict:
    return {
        "attestation_validity_s": 120,
        "claim_window_s": 5.5,
        "pods": [
            {"pod_id": "pod1", "public_key": KEY1, "allowed": ["/A", "/A/*"]},
            {"pod_id": "pod2", "public_key": KEY2, "allowed": ["/shop/cart/*", "/B/4"]},
        ],
    }


def test_good_policy_parses():
    policy = parse_policy(good_data())
    assert policy.attestation_validity_s == 120.0 and policy.claim_window_s == 5.5
    assert list(policy.identities) == ["pod1", "pod2"]
    pod1 = policy.identities["pod1"]
    assert pod1.allowed == ("/A", "/A/*")
    assert public_key_to_text(pod1.public_key) == KEY1


def test_defaults_apply_only_to_the_optional_numbers():
    data = good_data()
    del data["attestation_validity_s"], data["claim_window_s"]
    policy = parse_policy(data)
    assert policy.attestation_validity_s == DEFAULT_ATTESTATION_VALIDITY_S == 3600
    assert policy.claim_window_s == DEFAULT_CLAIM_WINDOW_S == 30


def test_dump_then_parse_round_trips():
    policy = parse_policy(good_data())
    dumped = dump_policy(policy)
    assert dumped == {**good_data(), "attestation_validity_s": 120.0}
    assert dump_policy(parse_policy(yaml.safe_load(yaml.safe_dump(dumped)))) == dumped


def test_policy_is_immutable():
    policy = parse_policy(good_data())
    with pytest.raises(TypeError):
        policy.identities["pod3"] = policy.identities["pod1"]


def test_load_good_file(tmp_path):
    path = tmp_path / "spa.yaml"
    path.write_text(yaml.safe_dump(good_data()))
    assert set(load_policy(path).identities) == {"pod1", "pod2"}


# ---------------------------------------------------------------- wildcard semantics


@pytest.mark.parametrize(
    ("allowed", "name", "expected"),
    [
        ("/A/*", "/A/1", True),
        ("/A/*", "/A/x-y", True),
        ("/A/*", "/A", False),  # the service itself is not its own child
        ("/A/*", "/A/1/2", False),  # only direct children
        ("/A/*", "/B/1", False),
        ("/A/*", "/AB/1", False),
        ("/shop/cart/*", "/shop/cart/3", True),
        ("/shop/cart/*", "/shop/3", False),
        ("/A", "/A", True),
        ("/A", "/A/1", False),  # an exact name gives nothing below it
        ("/B/4", "/B/4", True),
        ("/B/4", "/B/5", False),
    ],
)
def test_wildcard_semantics(allowed, name, expected):
    policy = parse_policy({"pods": [{"pod_id": "p", "public_key": KEY1, "allowed": [allowed]}]})
    assert policy.allows("p", ServiceName.parse(name)) is expected
    assert policy.allows("p", name) is expected  # text works too


def test_unknown_pod_is_allowed_nothing():
    assert not parse_policy(good_data()).allows("nobody", "/A")


def test_pod_identity_allows_directly():
    identity = PodIdentity("p", private_key_from_seed(b"\x01" * 32).public_key(), ("/A/*",))
    assert identity.allows("/A/2") and not identity.allows("/A")


# ---------------------------------------------------------------- every bad input, loudly


DELETE = object()


def mutate(path: tuple, value) -> dict:
    """good_data() with the item at ``path`` set to ``value`` (or deleted for DELETE)."""
    data = copy.deepcopy(good_data())
    target = data
    for step in path[:-1]:
        target = target[step]
    if value is DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


BAD_INPUTS = [
    # (path to change, new value, regex the message must contain: the field and the reason)
    (("pod",), [], r"top level: unknown key 'pod'.*did you mean 'pods'"),
    (("pods", 0, "alowed"), ["/A"], r"pods\[0\]: unknown key 'alowed'.*did you mean 'allowed'"),
    (("pods",), DELETE, r"top level: missing required key 'pods'"),
    (("pods", 1, "public_key"), DELETE, r"pods\[1\]: missing required key 'public_key'"),
    (("pods", 0, "allowed"), DELETE, r"pods\[0\]: missing required key 'allowed'"),
    (("pods", 0, "pod_id"), DELETE, r"pods\[0\]: missing required key 'pod_id'"),
    (("pods",), {"pod1": {}}, r"pods: expected list, got dict"),
    (("pods", 0), "pod1", r"pods\[0\]: expected a mapping, got str"),
    (("pods", 0, "pod_id"), 7, r"pods\[0\]\.pod_id: expected str, got int"),
    (("pods", 0, "pod_id"), "has space", r"pods\[0\]\.pod_id: 'has space' is not a pod id"),
    (("pods", 0, "pod_id"), "", r"pods\[0\]\.pod_id: '' is not a pod id"),
    (("pods", 0, "allowed"), "/A", r"pods\[0\]\.allowed: expected list, got str"),
    (("pods", 0, "allowed"), None, r"pods\[0\]\.allowed: expected list, got nothing"),
    (("pods", 0, "allowed", 1), 5, r"pods\[0\]\.allowed\[1\]: expected str, got int"),
    (("pods", 0, "public_key"), 12, r"pods\[0\]\.public_key: expected str, got int"),
    (("pods", 0, "public_key"), "not*base64", r"pods\[0\]\.public_key \(pod pod1\):.*base64"),
    (("pods", 0, "public_key"), "AAAA", r"pods\[0\]\.public_key \(pod pod1\):.*3 bytes"),
    (("pods", 1, "pod_id"), "pod1", r"pods\[1\]\.pod_id: duplicate pod id 'pod1'"),
    (("pods", 0, "allowed", 0), "A", r"pods\[0\]\.allowed\[0\]:.*must start with '/'"),
    (("pods", 0, "allowed", 0), "/A//B", r"pods\[0\]\.allowed\[0\]:.*empty component"),
    (("pods", 0, "allowed", 0), "/A/*/1", r"pods\[0\]\.allowed\[0\]:.*'\*'"),
    (("pods", 0, "allowed", 0), "/A/b*", r"pods\[0\]\.allowed\[0\]:.*'b\*'"),
    (("pods", 0, "allowed", 0), "/*", r"pods\[0\]\.allowed\[0\]: '/\*' would give away"),
    (("pods", 0, "allowed", 0), "/a/b/c/d/*", r"pods\[0\]\.allowed\[0\]:.*can match nothing"),
    (("pods", 0, "allowed", 0), "/a/b/c/d/e", r"pods\[0\]\.allowed\[0\]:.*at most 4"),
    (("claim_window_s",), "30", r"claim_window_s: expected a number of seconds, got str"),
    (("claim_window_s",), True, r"claim_window_s: expected a number of seconds, got bool"),
    (("claim_window_s",), 0, r"claim_window_s: must be a positive number"),
    (("attestation_validity_s",), -5, r"attestation_validity_s: must be a positive number"),
    (("attestation_validity_s",), float("nan"), r"attestation_validity_s: must be a positive"),
    (("attestation_validity_s",), float("inf"), r"attestation_validity_s: must be a positive"),
]


@pytest.mark.parametrize(("path", "value", "message"), BAD_INPUTS)
def test_bad_policy_is_a_config_error_naming_source_and_field(path, value, message):
    with pytest.raises(ConfigError, match=r"^spa\.yaml: " + message):
        parse_policy(mutate(path, value), source="spa.yaml")


@pytest.mark.parametrize("data", [None, [], "pods", 3])
def test_top_level_must_be_a_mapping(data):
    with pytest.raises(ConfigError, match=r"^<policy>: (empty SPA policy|top level: expected)"):
        parse_policy(data)


def test_load_errors_name_the_file(tmp_path):
    missing = tmp_path / "none.yaml"
    with pytest.raises(ConfigError, match=re.escape(f"{missing}: cannot read SPA policy")):
        load_policy(missing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("pods: [\n")
    with pytest.raises(ConfigError, match=re.escape(f"{broken}: not valid YAML: line 2")):
        load_policy(broken)
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    with pytest.raises(ConfigError, match=re.escape(f"{empty}: empty SPA policy")):
        load_policy(empty)


def test_field_errors_from_a_file_name_the_file(tmp_path):
    path = tmp_path / "spa.yaml"
    path.write_text(yaml.safe_dump(mutate(("pods", 0, "public_key"), "AAAA")))
    with pytest.raises(ConfigError, match=re.escape(f"{path}: pods[0].public_key")):
        load_policy(path)


def test_duplicate_yaml_keys_are_refused_not_silently_overwritten(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text(
        f"claim_window_s: 30\nclaim_window_s: 3000\npods:\n"
        f"  - {{pod_id: p, public_key: '{KEY1}', allowed: [/A]}}\n"
    )
    with pytest.raises(
        ConfigError,
        match=r"dup\.yaml: not valid YAML: line 2, column 1: duplicate key 'claim_window_s'$",
    ):
        load_policy(path)


def test_yaml_merge_keys_still_work(tmp_path):
    path = tmp_path / "merge.yaml"
    path.write_text(
        f"pods:\n  - &p1 {{pod_id: p1, public_key: '{KEY1}', allowed: [/A]}}\n"
        "  - {<<: *p1, pod_id: p2}\n"
    )
    policy = load_policy(path)
    assert list(policy.identities) == ["p1", "p2"]
    assert policy.identities["p2"].allowed == ("/A",)


# ---------------------------------------------------------------- the shipped example


def test_shipped_figure2_policy_loads_and_uses_the_documented_demo_keys():
    policy = load_policy(FIGURE2)
    text = FIGURE2.read_text()
    assert "DEMO-ONLY" in text
    assert list(policy.identities) == ["pod1", "pod2", "pod3", "pod4"]
    for pod_id, identity in policy.identities.items():
        demo = demo_private_key(pod_id).public_key()
        assert public_key_to_text(identity.public_key) == public_key_to_text(demo)
        assert key_id(demo) in text
    # The keygen seeds printed in the comments rebuild the same keys.
    seeds = dict(re.findall(r"--out (\w+)\.pem --seed ([0-9a-f]{64})", text))
    assert set(seeds) == {"spa1", "pod1", "pod2", "pod3", "pod4"}
    for label, seed in seeds.items():
        assert seed == hashlib.sha256(DEMO_SEED_LABEL + label.encode()).hexdigest()
        assert key_id(private_key_from_seed(bytes.fromhex(seed)).public_key()) == key_id(
            demo_private_key(label).public_key()
        )


def test_shipped_policy_gives_each_service_to_two_pods():
    policy = load_policy(FIGURE2)
    for service in "ABCD":
        owners = [p for p in policy.identities if policy.allows(p, f"/{service}/1")]
        assert len(owners) == 2, service
        assert all(policy.allows(p, f"/{service}") for p in owners)


def test_cli_check_policy_prints_a_summary(capsys):
    parser = argparse.ArgumentParser(prog="dmsc")
    spa_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["spa", "check-policy", str(FIGURE2)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "valid SPA policy: 4 pods" in out
    assert "pod1" in out and "/A/*" in out and key_id(demo_private_key("pod1").public_key()) in out
