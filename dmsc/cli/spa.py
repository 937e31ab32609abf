"""``dmsc spa``: keys, policy checks, a standalone SPA server and hand-made claims."""

from __future__ import annotations

import argparse
import base64
import os
import signal
import threading
import time
from pathlib import Path

from dmsc.errors import ConfigError
from dmsc.spa.keys import (
    SEED_BYTES,
    generate_private_key,
    key_id,
    load_private_key,
    private_key_from_seed,
    public_key_to_text,
    save_private_key,
)

STOP_GRACE_S = 2.0
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "spa",
        help="service prefix authentication: keys, policies, server",
        description="Manage SPA keys and policies, run an SPA, sign claims by hand.",
    )
    commands = parser.add_subparsers(dest="spa_command", required=True, metavar="SPA_COMMAND")
    _add_key_commands(commands)
    _add_policy_commands(commands)


def _add_key_commands(commands) -> None:
    keygen = commands.add_parser("keygen", help="write a new Ed25519 private key (PEM, 0600)")
    keygen.add_argument("--out", required=True, type=Path, metavar="FILE")
    keygen.add_argument(
        "--seed", metavar="HEX", help=f"{SEED_BYTES}-byte seed as hex: same seed, same key (demos)"
    )
    keygen.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    keygen.set_defaults(func=run_keygen)

    pubkey = commands.add_parser("pubkey", help="print the public key and key id of a key file")
    pubkey.add_argument("keyfile", type=Path, metavar="KEYFILE")
    pubkey.set_defaults(func=run_pubkey)

    sign = commands.add_parser(
        "sign-claim",
        help="print a signed prefix claim as base64 (for manual experiments)",
        description="Sign a claim on NAME, timestamped now. NAME is not validated, so the SPA's "
        "rejections can be tried by hand.",
    )
    sign.add_argument("--pod-key", required=True, type=Path, metavar="FILE")
    sign.add_argument("--pod-id", required=True, metavar="ID")
    sign.add_argument("--sg", required=True, metavar="SG", help="node id of the pod's SG")
    sign.add_argument("name", metavar="NAME")
    sign.set_defaults(func=run_sign_claim)


def _add_policy_commands(commands) -> None:
    check = commands.add_parser("check-policy", help="validate an SPA policy file")
    check.add_argument("policy", type=Path, metavar="FILE")
    check.set_defaults(func=run_check_policy)

    serve = commands.add_parser("serve", help="run an SPA until SIGINT or SIGTERM")
    serve.add_argument("--policy", required=True, type=Path, metavar="FILE")
    serve.add_argument("--key", required=True, type=Path, metavar="FILE")
    serve.add_argument("--listen", default="[::]:50051", metavar="ADDR")
    serve.set_defaults(func=run_serve)


def _seed_from_hex(text: str) -> bytes:
    try:
        seed = bytes.fromhex(text)
    except ValueError:
        raise ConfigError(f"--seed {text!r} is not hexadecimal") from None
    if len(seed) != SEED_BYTES:
        raise ConfigError(
            f"--seed is {len(seed)} bytes; give exactly {SEED_BYTES} ({2 * SEED_BYTES} hex digits)"
        )
    return seed


def _print_public(key) -> None:
    public = key.public_key()
    print(f"public_key: {public_key_to_text(public)}")
    print(f"key_id: {key_id(public)}")


def run_keygen(args: argparse.Namespace) -> int:
    if args.out.exists() and not args.force:
        raise ConfigError(f"{args.out}: already exists; pass --force to overwrite it")
    key = private_key_from_seed(_seed_from_hex(args.seed)) if args.seed else generate_private_key()
    save_private_key(key, args.out)
    print(f"wrote {args.out} (Ed25519 private key, PEM, mode 0600)")
    _print_public(key)
    return 0


def run_pubkey(args: argparse.Namespace) -> int:
    _print_public(load_private_key(args.keyfile))
    return 0


def run_check_policy(args: argparse.Namespace) -> int:
    from dmsc.spa.policy import load_policy

    policy = load_policy(args.policy)
    print(
        f"{args.policy}: valid SPA policy: {len(policy.identities)} pods, attestation validity "
        f"{policy.attestation_validity_s:g} s, claim window {policy.claim_window_s:g} s"
    )
    for identity in policy.identities.values():
        allowed = ", ".join(identity.allowed) or "(nothing)"
        print(f"  {identity.pod_id:<16} key {key_id(identity.public_key)}  allowed {allowed}")
    return 0


def run_serve(args: argparse.Namespace) -> int:
    from dmsc.spa.authority import SpaAuthority
    from dmsc.spa.policy import load_policy
    from dmsc.spa.service import start_server

    # Check everything before starting anything.
    authority = SpaAuthority(load_policy(args.policy), load_private_key(args.key))
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in _STOP_SIGNALS}
    try:
        server, port = start_server(authority, args.listen)
        try:
            print(
                f"SPA key {authority.key_id} serving {args.policy} on {args.listen} (port {port})"
            )
            print(f"public_key: {public_key_to_text(authority.public_key)}", flush=True)
            stop.wait()
        finally:
            server.stop(STOP_GRACE_S).wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    outcomes = ", ".join(f"{k}={v}" for k, v in authority.counters.items() if v)
    print(f"SPA stopped; outcomes: {outcomes or 'no requests'}")
    return 0


def run_sign_claim(args: argparse.Namespace) -> int:
    from dmsc.spa.claims import sign_claim

    signed = sign_claim(
        load_private_key(args.pod_key), args.name, args.pod_id, args.sg, time.time(), os.urandom(16)
    )
    print(base64.b64encode(signed.SerializeToString()).decode("ascii"))
    return 0
