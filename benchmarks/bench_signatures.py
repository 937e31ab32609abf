"""Signature benchmarks: what signed LSAs and the per-link HMAC cost, against the open protocol.

Each figure is printed next to a baseline measured in the same rounds (see benchmarks/README.md;
the timing, inputs and convergence harness are bench_routing's):

1. per LSA, on the LSDB of a 1,000-node graph, each LSA signed by its own enrolled router key:
   signing; verifying cold (certificate and LSA signature each checked) and with the
   certificate known (LSA signature checked); against decoding the same LSA from bytes. Per
   update packet: the HMAC-SHA-256 trailer sealed and checked, against parsing the packet;
2. SPF + FIB on 1,000 and 10,000 nodes, unsigned (bench_routing's warm route computation) and
   signed (every LSA of the LSDB verified by a fresh LsaVerifier first: the worst case, a node
   that learns a whole LSDB at once); and the steady state, one LSA verified against one
   SPF + FIB;
3. convergence on Geant2012 in the simulator, secure against open, same seed and failures:
   virtual convergence times (the simulator has no CPU model: they show the protocol's
   behaviour) and the wall clock of the whole simulation (what signing costs in CPU).

    PYTHONPATH=. python -m benchmarks.bench_signatures [--quick] [--json FILE] [--seed N]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import random
import statistics
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cryptography
from google.protobuf.internal import api_implementation

from benchmarks.bench_routing import (
    DEFAULT_TOPOLOGY,
    BenchmarkError,
    ConvergenceBench,
    Timing,
    bench_convergence,
    checked_spf,
    load_topology,
    measure,
    pack_updates,
    parse_only,
    ratio,
    seconds,
    service_plan,
    spf_inputs,
    table_head,
    timing_row,
    to_json,
    versus,
)
from dmsc.errors import DmscError
from dmsc.proto import dmsc_pb2
from dmsc.routing.auth import (
    CertificateChecker,
    LsaVerifier,
    PacketAuthenticator,
    Refused,
    RouterCredentials,
)
from dmsc.routing.domain import LINK_KEY_ID, RoutingDomain
from dmsc.routing.rib import AttestationCache
from dmsc.routing.router import MAX_PACKET_BYTES
from dmsc.sim import DEFAULT_START

Lsa = dmsc_pb2.LinkStateAdvertisement


@dataclass(frozen=True)
class Config:
    lsa_nodes: int  # the graph whose LSDB section 1 signs
    sizes: tuple[int, ...]  # graphs of section 2
    reps: int  # rounds of section 1 and of section 2 below 10,000 nodes
    large_reps: int  # rounds of section 2 from 10,000 nodes
    steady_lsas: int  # distinct LSAs verified per round for the one-LSA figure
    failures: int
    convergence_rounds: int  # secure and open simulations timed, one of each per round
    seed: int
    topology: str = DEFAULT_TOPOLOGY


def config_for(quick: bool, seed: int, topology: str = DEFAULT_TOPOLOGY) -> Config:
    if quick:
        return Config(1_000, (1_000,), 3, 3, 50, 3, 1, seed, topology)
    return Config(1_000, (1_000, 10_000), 15, 7, 100, 10, 3, seed, topology)


# ---------------------------------------------------------------------- signing


def credentials_for(
    lsas: Sequence[Lsa], plan: Mapping[str, list[str]], domain: RoutingDomain, seed: int
) -> dict[str, RouterCredentials]:
    """Every originator enrolled in ``domain`` with its own key (derived from the seed); the
    nodes that announce prefixes as SGs, the others as SRs."""
    return {
        lsa.originator: domain.enrol(
            lsa.originator, "sg" if lsa.originator in plan else "sr", DEFAULT_START, seed
        )
        for lsa in lsas
    }


def signed_copies(lsas: Sequence[Lsa], credentials: Mapping[str, RouterCredentials]) -> list[Lsa]:
    """A signed copy of each LSA (signature and certificate added); the originals untouched."""
    copies = []
    for lsa in lsas:
        copy = Lsa()
        copy.CopyFrom(lsa)
        copies.append(credentials[lsa.originator].sign(copy))
    return copies


def anchors_of(domain: RoutingDomain) -> list:
    return [domain.anchor.public_key()]


def verify_all(lsas: Sequence[Lsa], verifier: LsaVerifier) -> None:
    """``verifier.check`` on every LSA; a refusal is a BenchmarkError (a figure over refused
    LSAs would time the wrong path)."""
    try:
        for lsa in lsas:
            verifier.check(lsa, DEFAULT_START)
    except Refused as refusal:
        raise BenchmarkError(f"a correctly signed LSA was refused: {refusal}") from None


def cold_verifier(domain: RoutingDomain) -> LsaVerifier:
    """No memo, no certificate known: every certificate and every LSA signature is checked."""
    return LsaVerifier(CertificateChecker(anchors_of(domain)))


def require_refused(check: Callable[[], object], what: str) -> None:
    """A check that accepts anything would give a fast, worthless figure."""
    try:
        check()
    except Refused:
        return
    raise BenchmarkError(f"{what} was accepted")


def tampered(lsa: Lsa) -> Lsa:
    copy = Lsa()
    copy.CopyFrom(lsa)
    copy.sequence += 1
    return copy


# ---------------------------------------------------------------------- 1. per LSA, per packet

PER_LSA_ROWS = (
    ("decode", "decode the signed LSA from bytes (baseline)"),
    ("sign", "sign (Ed25519, certificate attached)"),
    ("verify_cold", "verify cold: certificate + LSA signature"),
    ("verify_known", "verify: certificate known, LSA signature"),
    ("verify_repeat", "verify a copy seen before (memo, no Ed25519)"),
)
PACKET_ROWS = (
    ("parse", "parse the packet (baseline)"),
    ("seal", "HMAC trailer: seal"),
    ("check", "HMAC trailer: parse + check"),
    ("seal_check", "HMAC trailer: seal, then parse + check"),
)


@dataclass(frozen=True)
class PerLsaBench:
    nodes: int
    lsas: int
    announcing_nodes: int
    mean_open_lsa_bytes: float
    mean_signed_lsa_bytes: float
    packets: int
    mean_packet_bytes: float  # sealed: body (at most MAX_PACKET_BYTES of LSAs) + trailer
    timings: dict[str, Timing]  # each over the whole batch of LSAs or packets
    per_item_us: dict[str, float]  # from the medians
    per_second: dict[str, float]
    ratios: dict[str, dict[str, float]]  # against decode (LSAs) or parse (packets)


def bench_per_lsa(nodes: int, reps: int, seed: int) -> PerLsaBench:
    inputs = spf_inputs(nodes, seed)
    domain = RoutingDomain.from_seed(seed)
    credentials = credentials_for(inputs.lsas, inputs.plan, domain, seed)
    lsas = signed_copies(inputs.lsas, credentials)
    datas = [lsa.SerializeToString() for lsa in lsas]
    if [Lsa.FromString(d) for d in datas] != lsas:
        raise BenchmarkError("a signed LSA does not decode to itself")
    known = CertificateChecker(anchors_of(domain))
    verify_all(lsas, LsaVerifier(known))  # every check passes before anything is timed
    require_refused(lambda: cold_verifier(domain).check(tampered(lsas[0]), DEFAULT_START),
                    "an LSA changed after signing")  # fmt: skip
    repeat = LsaVerifier(known)
    verify_all(lsas, repeat)  # its memo now holds every signature

    bodies = [p.SerializeToString() for p in pack_updates(lsas, sender="sr-bench")]
    sealer = PacketAuthenticator(domain.link_keys, LINK_KEY_ID)
    sealed = [sealer.seal(body, DEFAULT_START) for body in bodies]

    def check_packets(packets: Sequence[bytes]) -> None:
        checker = PacketAuthenticator(domain.link_keys, LINK_KEY_ID)  # an empty replay window
        for data in packets:
            checker.check("eth0", data, parse_only(data))

    try:
        check_packets(sealed)
    except Refused as refusal:
        raise BenchmarkError(f"a correctly sealed packet was refused: {refusal}") from None
    flipped = bytearray(sealed[0])
    flipped[len(flipped) // 3] ^= 0x01
    require_refused(lambda: check_packets([bytes(flipped)]), "a packet changed after sealing")

    lsa_timings = measure(
        {
            "decode": lambda: [Lsa.FromString(d) for d in datas],
            "sign": lambda: [credentials[lsa.originator].sign(lsa) for lsa in lsas],
            "verify_cold": lambda: verify_all(lsas, cold_verifier(domain)),
            "verify_known": lambda: verify_all(lsas, LsaVerifier(known)),
            "verify_repeat": lambda: verify_all(lsas, repeat),
        },
        reps,
    )
    packet_timings = measure(
        {
            "parse": lambda: [parse_only(d) for d in sealed],
            "seal": lambda: [sealer.seal(body, DEFAULT_START) for body in bodies],
            "check": lambda: check_packets(sealed),
            "seal_check": lambda: check_packets(
                [sealer.seal(body, DEFAULT_START) for body in bodies]
            ),
        },
        reps,
    )
    verify_all(lsas, cold_verifier(domain))  # re-signing in place changed nothing
    timings = lsa_timings | packet_timings
    counts = {name: len(lsas) for name in lsa_timings} | {name: len(sealed) for name in
                                                          packet_timings}  # fmt: skip
    ratios = {
        name: ratio(timing, lsa_timings["decode"])
        for name, timing in lsa_timings.items()
        if name != "decode"
    } | {
        name: ratio(timing, packet_timings["parse"])
        for name, timing in packet_timings.items()
        if name != "parse"
    }
    return PerLsaBench(
        nodes=nodes,
        lsas=len(lsas),
        announcing_nodes=len(inputs.plan),
        mean_open_lsa_bytes=statistics.fmean(lsa.ByteSize() for lsa in inputs.lsas),
        mean_signed_lsa_bytes=statistics.fmean(len(d) for d in datas),
        packets=len(sealed),
        mean_packet_bytes=statistics.fmean(len(d) for d in sealed),
        timings=timings,
        per_item_us={n: t.median_s / counts[n] * 1e6 for n, t in timings.items()},
        per_second={n: counts[n] / t.median_s for n, t in timings.items()},
        ratios=ratios,
    )


# ---------------------------------------------------------------------- 2. SPF + FIB, signed


@dataclass(frozen=True)
class SignedRouteBench:
    nodes: int
    edges: int
    lsas: int
    rib_routes: int
    unsigned: Timing  # SPF + RIB + FIB, attestation verdicts cached (bench_routing's route_warm)
    signed: Timing  # every LSA verified by a fresh LsaVerifier, then the same route computation
    one_lsa: Timing  # per LSA: one verification, certificate known (the steady state)
    signed_vs_unsigned: dict[str, float]
    one_lsa_vs_unsigned: dict[str, float]


def bench_signed_route(nodes: int, reps: int, steady_lsas: int, seed: int) -> SignedRouteBench:
    inputs = spf_inputs(nodes, seed)
    checked_spf(inputs)  # our SPF against networkx, every attested prefix accepted
    domain = RoutingDomain.from_seed(seed)
    lsas = signed_copies(inputs.lsas, credentials_for(inputs.lsas, inputs.plan, domain, seed))
    known = CertificateChecker(anchors_of(domain))
    verify_all(lsas, LsaVerifier(known))
    changed = lsas[:: max(1, len(lsas) // steady_lsas)][:steady_lsas]  # spread over the LSDB
    warm = AttestationCache(inputs.verifier)  # filled by measure's warm-up call
    results = {}

    def signed_route() -> None:
        verify_all(lsas, cold_verifier(domain))
        results["signed"] = inputs.route(warm)

    def unsigned_route() -> None:
        results["unsigned"] = inputs.route(warm)

    timings = measure(
        {
            "unsigned": unsigned_route,
            "signed": signed_route,
            "steady": lambda: verify_all(changed, LsaVerifier(known)),
        },
        reps,
    )
    build = results["unsigned"][0]
    if build.rejections or build.routes != results["signed"][0].routes:
        raise BenchmarkError(f"{nodes} nodes: the signed and unsigned runs built other RIBs")
    one = Timing.of([s / len(changed) for s in timings["steady"].samples_s])
    return SignedRouteBench(
        nodes=nodes,
        edges=inputs.graph.number_of_edges(),
        lsas=len(lsas),
        rib_routes=len(build.routes),
        unsigned=timings["unsigned"],
        signed=timings["signed"],
        one_lsa=one,
        signed_vs_unsigned=ratio(timings["signed"], timings["unsigned"]),
        one_lsa_vs_unsigned=ratio(one, timings["unsigned"]),
    )


# ---------------------------------------------------------------------- 3. convergence


@dataclass(frozen=True)
class ConvergencePair:
    secure: ConvergenceBench  # virtual figures: every round gave the same (checked)
    open: ConvergenceBench
    rounds: int
    wall_secure: Timing  # wall clock of one whole simulation
    wall_open: Timing
    wall_ratio: dict[str, float]  # secure / open
    max_virtual_difference_s: float  # largest |secure - open| over every down and up time
    same_fib_changes: bool  # each failure changed the same number of FIBs in both


def trial_signature(bench: ConvergenceBench) -> tuple:
    return (bench.initial_s, bench.virtual_s, bench.trials)


def bench_convergence_pair(topology: str, failures: int, rounds: int, seed: int):
    """Secure and open simulations of the same failures, one of each per round; every one
    must settle to a fresh SPF after every change (bench_routing.wait_settled)."""
    graph = load_topology(topology)
    plan = service_plan(graph.nodes, random.Random(seed))
    name = graph.graph.get("name") or topology.rsplit("/", 1)[-1]
    runs: dict[str, list[ConvergenceBench]] = {"secure": [], "open": []}

    def simulate(secure: bool) -> None:
        bench = bench_convergence(graph, name, plan, failures, seed, secure=secure)
        runs["secure" if secure else "open"].append(bench)

    wall = measure({"secure": lambda: simulate(True), "open": lambda: simulate(False)}, rounds)
    for mode, benches in runs.items():  # the warm-up call's run included
        if len({trial_signature(b) for b in benches}) != 1:
            raise BenchmarkError(f"the {mode} simulation gave other virtual times on a rerun")
    secure, baseline = runs["secure"][0], runs["open"][0]
    if [t.link for t in secure.trials] != [t.link for t in baseline.trials]:
        raise BenchmarkError("the secure and open runs failed different links")
    # Both settled to the same fresh SPF of the same working graph after every change, so their
    # routes are equal to each other; what may differ is only when the FIBs changed.
    differences = [abs(secure.initial_s - baseline.initial_s)] + [
        abs(getattr(s, f) - getattr(o, f))
        for s, o in zip(secure.trials, baseline.trials, strict=True)
        for f in ("down_s", "up_s")
    ]
    return ConvergencePair(
        secure=secure,
        open=baseline,
        rounds=rounds,
        wall_secure=wall["secure"],
        wall_open=wall["open"],
        wall_ratio=ratio(wall["secure"], wall["open"]),
        max_virtual_difference_s=max(differences),
        same_fib_changes=[t.routers_changed for t in secure.trials]
        == [t.routers_changed for t in baseline.trials],
    )


# ---------------------------------------------------------------------- report


def per_item_row(label: str, result: PerLsaBench, key: str) -> str:
    tail = versus(result.ratios.get(key))
    return (
        f"    {label:<46}{result.timings[key].reps:>4}  {result.per_item_us[key]:9.2f} us"
        f" {result.per_second[key]:11,.0f}/s   {tail}"
    )


def format_per_lsa(result: PerLsaBench) -> str:
    head = f"    {'step':<46}{'reps':>4}  {'per item':>12} {'rate':>13}   x baseline: median, min"
    lines = [
        f"  {result.lsas:,} LSAs, one per node of the {result.nodes:,}-node graph of section 2"
        f" ({result.announcing_nodes} with attested prefixes):",
        f"  {result.mean_open_lsa_bytes:.0f} B open, {result.mean_signed_lsa_bytes:.0f} B signed"
        " (Ed25519 signature + RouterCertificate) on average; each signed by its own router key",
        head,
    ]
    lines += [per_item_row(label, result, key) for key, label in PER_LSA_ROWS]
    lines += [
        f"  {result.packets} LinkStateUpdate packets of these signed LSAs (at most"
        f" {MAX_PACKET_BYTES} B of LSAs each, as routers pack floods): {result.mean_packet_bytes:.0f}"
        " B on average with the trailer",
        head,
    ]
    lines += [per_item_row(label, result, key) for key, label in PACKET_ROWS]
    return "\n".join(lines)


def format_signed_route(result: SignedRouteBench) -> str:
    one = result.one_lsa_vs_unsigned
    return "\n".join(
        [
            f"  {result.nodes:,} nodes, {result.edges:,} links; {result.lsas:,} signed LSAs;"
            f" RIB of n0: {result.rib_routes:,} routes",
            table_head("step", "signed/unsigned: median, min"),
            timing_row("unsigned: SPF + RIB + FIB (warm cache)", result.unsigned, "(baseline)"),
            timing_row(
                "signed: verify every LSA, then the same",
                result.signed,
                versus(result.signed_vs_unsigned),
            ),
            timing_row("steady state: verify one LSA (cert. known)", result.one_lsa,
                       f"x{one['median']:.4f}  x{one['min']:.4f}"),  # fmt: skip
            f"    in steady state one changed LSA costs one verification and one SPF + FIB:"
            f" {100 * one['median']:.2f}% on top of the route computation",
        ]
    )


def format_convergence(pair: ConvergencePair) -> str:
    secure, baseline = pair.secure, pair.open

    def ms(value: float) -> str:
        return f"{value * 1e3:8.1f} ms"

    lines = [
        f"  {secure.topology}: {secure.nodes} routers, {secure.links} links,"
        f" {secure.prefixes} attested prefixes; {len(secure.trials)} link failures,"
        " the same seed and links in both runs",
        f"    {'virtual time':<30}{'secure':>14}{'open':>14}",
        f"    {'cold start: last FIB change':<30}{ms(secure.initial_s):>14}"
        f"{ms(baseline.initial_s):>14}",
        f"    {'link down: median':<30}{ms(secure.down_median_s):>14}"
        f"{ms(baseline.down_median_s):>14}",
        f"    {'link down: max':<30}{ms(secure.down_max_s):>14}{ms(baseline.down_max_s):>14}",
        f"    {'link up: median':<30}{ms(secure.up_median_s):>14}{ms(baseline.up_median_s):>14}",
        f"    {'link up: max':<30}{ms(secure.up_max_s):>14}{ms(baseline.up_max_s):>14}",
        f"    largest difference of any convergence time, secure - open:"
        f" {seconds(pair.max_virtual_difference_s).strip()};"
        f" FIBs changed per failure {'the same' if pair.same_fib_changes else 'DIFFERENT'}",
        "    after every change, every router's routes equalled a fresh SPF (networkx), in both"
        " runs: the secure and open routes are the same",
        table_head(
            f"wall clock of the whole simulation ({secure.virtual_s:.0f} virtual s)",
            "secure/open: median, min",
        ),
        timing_row("open (baseline)", pair.wall_open, "(baseline)"),
        timing_row("secure: signed LSAs, HMAC on every packet", pair.wall_secure,
                   versus(pair.wall_ratio)),  # fmt: skip
    ]
    return "\n".join(lines)


def load_average() -> tuple[float, float, float] | None:
    try:
        return os.getloadavg()
    except OSError:
        return None


def header(config: Config, quick: bool) -> str:
    load = load_average()
    load_text = "unknown" if load is None else " ".join(f"{x:.2f}" for x in load)
    return (
        f"DMSC signature benchmark ({'quick' if quick else 'full'}), seed {config.seed}\n"
        f"  Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs,"
        f" load average {load_text}; cryptography {cryptography.__version__},"
        f" protobuf backend {api_implementation.Type()}\n"
        "  times: min / median / max over N rounds (time.perf_counter, gc paused), after one"
        " warm-up;\n  ratios: ours / the baseline of the same rounds (> 1 = slower), the median"
        " of the per-round ratios and the ratio of the minimums"
    )


PER_LSA_NOTE = (
    "1. LSA signing and verification; the HMAC-SHA-256 trailer of type 2 packets. 'verify cold'\n"
    "   uses a new LsaVerifier and CertificateChecker per round: each LSA's certificate and its\n"
    "   signature are checked (two Ed25519 verifications). 'certificate known' keeps the\n"
    "   CertificateChecker (it caches good certificates, as a router does) and starts with an\n"
    "   empty signature memo: one Ed25519 verification per LSA."
)
ROUTE_NOTE = (
    "2. SPF + FIB with every LSA signature checked, source n0 (bench_routing's graphs and LSAs).\n"
    "   'signed' is the worst case: a node that learns a whole LSDB at once verifies every LSA\n"
    "   (cold: certificates and signatures). In steady state a node verifies only the LSA that\n"
    "   changed (its originator's certificate known), then runs one SPF + FIB."
)
CONVERGENCE_NOTE = (
    "3. Convergence after single link failures in the simulator, secure against open (default\n"
    "   LinkStateTimers; settled = no SPF and no FIB change for 2 x spf_max_hold). The\n"
    "   simulator has no CPU model: virtual times show the protocol's behaviour and should be\n"
    "   nearly identical (signatures and trailers change only packet contents); the wall-clock\n"
    "   ratio is what signing and the HMAC cost in CPU (the harness's own route checks included,\n"
    "   the same in both)."
)


# ---------------------------------------------------------------------- shell


def run(config: Config, quick: bool, emit: Callable[[str], None]) -> dict:
    """Run every section, handing each one's text to ``emit`` as it completes."""
    load_topology(config.topology)  # refused before any timing
    emit(header(config, quick))
    results: dict = {"config": dataclasses.asdict(config), "load_average_start": load_average()}
    emit("\n" + PER_LSA_NOTE)
    results["per_lsa"] = bench_per_lsa(config.lsa_nodes, config.reps, config.seed)
    emit(format_per_lsa(results["per_lsa"]))
    emit("\n" + ROUTE_NOTE)
    results["signed_route"] = []
    for size in config.sizes:
        reps = config.reps if size < 10_000 else config.large_reps
        result = bench_signed_route(size, reps, config.steady_lsas, config.seed)
        results["signed_route"].append(result)
        emit(format_signed_route(result))
    emit("\n" + CONVERGENCE_NOTE)
    results["convergence"] = bench_convergence_pair(
        config.topology, config.failures, config.convergence_rounds, config.seed
    )
    emit(format_convergence(results["convergence"]))
    results["load_average_end"] = load_average()
    return results


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="1,000 nodes only, 3 rounds, 3 failures (~10 s)"
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write results as JSON")
    parser.add_argument("--seed", type=int, default=1, help="seed of every random choice")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    config = config_for(args.quick, args.seed)
    try:
        results = run(config, args.quick, lambda text: print(text, flush=True))
    except (BenchmarkError, DmscError) as error:
        print(f"bench_signatures: error: {error}", file=sys.stderr)
        return 1
    if args.json is not None:
        try:
            args.json.write_text(json.dumps(to_json(results), indent=2) + "\n")
        except OSError as error:
            print(f"bench_signatures: error: cannot write {args.json}: {error}", file=sys.stderr)
            return 1
        print(f"\nresults written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
