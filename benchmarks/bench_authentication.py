"""The price of authentication: LSA signatures and per-link HMAC, against the open protocol.

Every figure sits next to a baseline measured in the same rounds (see benchmarks/README.md):

1. per LSA: signing, and verifying with a cold verifier (certificate and signature checked) or
   with the certificates known (signature only), against decoding the same LSA; per packet:
   the HMAC trailer sealed and checked, against parsing the packet;
2. SPF + FIB on 1,000 and 10,000 nodes with every LSA of the LSDB verified first (a node that
   learns a whole database at once, the worst case), against SPF + FIB alone; and one LSA
   verified against one SPF + FIB (the steady state: one LSA changed);
3. convergence on Geant2012 in the simulator, signed against open, same seed and failures.

    PYTHONPATH=. python -m benchmarks.bench_authentication [--quick] [--json FILE] [--seed N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.bench_routing import (
    DEFAULT_TOPOLOGY,
    BenchmarkError,
    ConvergenceBench,
    Timing,
    bench_convergence,
    load_topology,
    measure,
    pack_updates,
    parse_only,
    ratio,
    realistic_lsas,
    service_plan,
    spf_inputs,
    to_json,
)
from dmsc.errors import DmscError
from dmsc.proto import dmsc_pb2
from dmsc.routing.auth import CertificateChecker, LsaVerifier, PacketAuthenticator, Refused
from dmsc.routing.domain import LINK_KEY_ID, RoutingDomain
from dmsc.routing.rib import AttestationCache
from dmsc.sim import DEFAULT_START


@dataclass(frozen=True)
class Config:
    lsas: int
    sizes: tuple[int, ...]
    reps: int
    failures: int
    seed: int


def config_for(quick: bool, seed: int) -> Config:
    if quick:
        return Config(200, (1_000,), 3, 3, seed)
    return Config(1_000, (1_000, 10_000), 7, 10, seed)


def signed(lsas, domain: RoutingDomain, seed: int) -> list[dmsc_pb2.LinkStateAdvertisement]:
    """Each LSA signed by its own originator, enrolled in ``domain``."""
    for lsa in lsas:
        domain.enrol(lsa.originator, "sg", DEFAULT_START, seed).sign(lsa)
    return list(lsas)


def anchors(domain: RoutingDomain):
    return [domain.anchor.public_key()]


def verify_all(lsas, checker: CertificateChecker) -> None:
    verifier = LsaVerifier(checker)  # an empty signature memo
    try:
        for lsa in lsas:
            verifier.check(lsa, DEFAULT_START)
    except Refused as refusal:  # a figure over refused LSAs would measure the wrong path
        raise BenchmarkError(f"a correctly signed LSA was refused: {refusal}") from None


# ---------------------------------------------------------------------- 1. per LSA, per packet


@dataclass(frozen=True)
class PerLsaBench:
    lsas: int
    mean_signed_lsa_bytes: float
    mean_unsigned_lsa_bytes: float
    packets: int
    mean_packet_bytes: float
    timings: dict[str, Timing]  # each over every LSA (or packet)
    per_item_us: dict[str, float]  # from the medians
    ratios: dict[str, dict[str, float]]  # against decoding (LSAs) or parsing (packets)


def bench_per_lsa(count: int, reps: int, seed: int) -> PerLsaBench:
    domain = RoutingDomain.from_seed(seed)
    plain = realistic_lsas(count, seed)
    unsigned_bytes = statistics.fmean(lsa.ByteSize() for lsa in plain)
    lsas = signed(realistic_lsas(count, seed), domain, seed)
    datas = [lsa.SerializeToString() for lsa in lsas]
    credentials = {lsa.originator: domain.enrol(lsa.originator, "sg", DEFAULT_START, seed)
                   for lsa in lsas}  # fmt: skip
    known = CertificateChecker(anchors(domain))
    verify_all(lsas, known)  # every verification must pass before anything is timed
    packets = [p.SerializeToString() for p in pack_updates(lsas, sender="sr-bench")]
    sealer = PacketAuthenticator(domain.link_keys, LINK_KEY_ID)
    sealed = [sealer.seal(data, DEFAULT_START + i) for i, data in enumerate(packets)]

    def check_packets() -> None:
        checker = PacketAuthenticator(domain.link_keys, LINK_KEY_ID)  # an empty replay window
        for data in sealed:
            checker.check("eth0", data, parse_only(data))

    lsa_timings = measure(
        {
            "decode": lambda: [dmsc_pb2.LinkStateAdvertisement.FromString(d) for d in datas],
            "sign": lambda: [credentials[lsa.originator].sign(lsa) for lsa in lsas],
            "verify_cold": lambda: verify_all(lsas, CertificateChecker(anchors(domain))),
            "verify_known_certificates": lambda: verify_all(lsas, known),
        },
        reps,
    )
    packet_timings = measure(
        {
            "parse_packet": lambda: [parse_only(d) for d in sealed],
            "seal_packet": lambda: [sealer.seal(d, time.time()) for d in packets],
            "parse_and_check_packet": check_packets,
        },
        reps,
    )
    timings = lsa_timings | packet_timings
    per_item = {
        name: timing.median_s / (len(sealed) if name.endswith("packet") else count) * 1e6
        for name, timing in timings.items()
    }
    ratios = {
        name: ratio(timings[name], lsa_timings["decode"])
        for name in lsa_timings
        if name != "decode"
    } | {
        name: ratio(timings[name], packet_timings["parse_packet"])
        for name in packet_timings
        if name != "parse_packet"
    }
    return PerLsaBench(
        lsas=count,
        mean_signed_lsa_bytes=statistics.fmean(len(d) for d in datas),
        mean_unsigned_lsa_bytes=unsigned_bytes,
        packets=len(sealed),
        mean_packet_bytes=statistics.fmean(len(d) for d in sealed),
        timings=timings,
        per_item_us=per_item,
        ratios=ratios,
    )


# ---------------------------------------------------------------------- 2. SPF + FIB, signed


@dataclass(frozen=True)
class SignedRouteBench:
    nodes: int
    unsigned: Timing  # SPF + RIB + FIB, attestations cached (bench_routing's route_warm)
    signed: Timing  # every LSA of the LSDB verified (fresh verifier), then the same
    one_lsa: Timing  # one LSA verified, certificate known: the steady-state cost of a change
    signed_vs_unsigned: dict[str, float]
    one_lsa_vs_unsigned: dict[str, float]


def bench_signed_route(nodes: int, reps: int, seed: int) -> SignedRouteBench:
    inputs = spf_inputs(nodes, seed)
    domain = RoutingDomain.from_seed(seed)
    lsas = signed(inputs.lsas, domain, seed)
    warm = AttestationCache(inputs.verifier)
    known = CertificateChecker(anchors(domain))
    verify_all(lsas, known)
    changed = lsas[len(lsas) // 2]

    def signed_route():
        verify_all(lsas, CertificateChecker(anchors(domain)))
        return inputs.route(warm)

    timings = measure(
        {
            "unsigned": lambda: inputs.route(warm),
            "signed": signed_route,
            "one_lsa": lambda: LsaVerifier(known).check(changed, DEFAULT_START),
        },
        reps,
    )
    return SignedRouteBench(
        nodes=nodes,
        **timings,
        signed_vs_unsigned=ratio(timings["signed"], timings["unsigned"]),
        one_lsa_vs_unsigned=ratio(timings["one_lsa"], timings["unsigned"]),
    )


# ---------------------------------------------------------------------- 3. convergence


@dataclass(frozen=True)
class ConvergencePair:
    secure: ConvergenceBench
    open: ConvergenceBench
    wall_ratio: float  # secure / open wall-clock: what signing costs in CPU


def bench_convergence_pair(source: str, failures: int, seed: int) -> ConvergencePair:
    import random

    graph = load_topology(source)
    plan = service_plan(graph.nodes, random.Random(seed))
    name = source.rsplit("/", 1)[-1]
    secure = bench_convergence(graph, name, plan, failures, seed, secure=True)
    baseline = bench_convergence(graph, name, plan, failures, seed, secure=False)
    if [t.link for t in secure.trials] != [t.link for t in baseline.trials]:
        raise BenchmarkError("the secure and open runs failed different links")
    return ConvergencePair(secure, baseline, secure.wall_s / baseline.wall_s)


# ---------------------------------------------------------------------- report


def versus(ratios: dict[str, float]) -> str:
    return f"x{ratios['median']:7.2f} (x{ratios['min']:.2f} of the minimums)"


PER_LSA_ROWS = (
    ("decode", "decode one LSA (baseline)"),
    ("sign", "sign one LSA"),
    ("verify_cold", "verify: certificate and signature"),
    ("verify_known_certificates", "verify: signature, certificate known"),
    ("parse_packet", "parse one packet (baseline)"),
    ("seal_packet", "HMAC trailer: seal one packet"),
    ("parse_and_check_packet", "HMAC trailer: parse + check"),
)


def format_per_lsa(result: PerLsaBench) -> str:
    lines = [
        f"1. Per LSA ({result.lsas} LSAs of 4 adjacencies and 2 attested prefixes: "
        f"{result.mean_unsigned_lsa_bytes:.0f} B open, {result.mean_signed_lsa_bytes:.0f} B "
        f"signed with its certificate) and per packet ({result.packets} packets, "
        f"{result.mean_packet_bytes:.0f} B on average)",
        f"    {'step':<40}{'median per item':>18}   vs its baseline (median of rounds)",
    ]
    for key, label in PER_LSA_ROWS:
        tail = versus(result.ratios[key]) if key in result.ratios else "(baseline)"
        per_second = 1e6 / result.per_item_us[key]
        lines.append(
            f"    {label:<40}{result.per_item_us[key]:10.1f} us {per_second:9,.0f}/s   {tail}"
        )
    return "\n".join(lines)


def format_signed_route(results: Sequence[SignedRouteBench]) -> str:
    lines = ["2. SPF + FIB with every LSA signature checked (median of the rounds)"]
    for result in results:
        lines.append(
            f"    {result.nodes:>6} nodes: unsigned {result.unsigned.median_s * 1e3:9.1f} ms, "
            f"signed {result.signed.median_s * 1e3:9.1f} ms, {versus(result.signed_vs_unsigned)}"
            f"; one LSA verified: {result.one_lsa.median_s * 1e6:.0f} us, "
            f"x{result.one_lsa_vs_unsigned['median']:.4f} of one SPF + FIB"
        )
    return "\n".join(lines)


def format_convergence(pair: ConvergencePair) -> str:
    def row(label: str, bench: ConvergenceBench) -> str:
        return (
            f"    {label:<7} initial {bench.initial_s * 1e3:6.1f} ms; link down median "
            f"{bench.down_median_s * 1e3:6.1f} ms (max {bench.down_max_s * 1e3:6.1f}); up median "
            f"{bench.up_median_s * 1e3:6.1f} ms (max {bench.up_max_s * 1e3:6.1f}); "
            f"wall {bench.wall_s:6.2f} s"
        )

    secure = pair.secure
    return "\n".join(
        [
            f"3. Convergence on {secure.topology} ({secure.nodes} routers, {secure.links} links, "
            f"{len(secure.trials)} link failures), virtual time; the simulator has no CPU model,",
            "   so virtual times show the protocol's behaviour and the wall-clock ratio what "
            "signing costs in CPU",
            row("signed", secure),
            row("open", pair.open),
            f"    wall clock signed / open: x{pair.wall_ratio:.2f}",
        ]
    )


def run(config: Config, emit: Callable[[str], None]) -> dict:
    per_lsa = bench_per_lsa(config.lsas, config.reps, config.seed)
    emit(format_per_lsa(per_lsa))
    routes = [bench_signed_route(n, config.reps, config.seed) for n in config.sizes]
    emit(format_signed_route(routes))
    pair = bench_convergence_pair(DEFAULT_TOPOLOGY, config.failures, config.seed)
    emit(format_convergence(pair))
    return {"config": config, "per_lsa": per_lsa, "signed_route": routes, "convergence": pair}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 nodes only, few reps")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write results as JSON")
    parser.add_argument("--seed", type=int, default=1, help="seed of every random choice")
    args = parser.parse_args(argv)
    try:
        results = run(config_for(args.quick, args.seed), lambda text: print(text, flush=True))
    except (BenchmarkError, DmscError) as error:
        print(f"bench_authentication: error: {error}", file=sys.stderr)
        return 1
    if args.json is not None:
        try:
            args.json.write_text(json.dumps(to_json(results), indent=2) + "\n")
        except OSError as error:
            print(f"bench_authentication: cannot write {args.json}: {error}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
