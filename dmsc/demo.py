"""The demo scenario: Figure 2 simulated in memory on a virtual clock.

Pods authenticate their prefixes at their SG's SPA, the SGs flood them, and a timeline of
faults (a rogue claim, a link failure, an SG crash and restart) shows the network converge,
refuse, reroute and recover. Every route change, authentication and convergence time is
recorded as a table. The emulated network (Mininet) replaces this simulation in the main job
once it exists; the protocol code is the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dmsc import results
from dmsc.proto import dmsc_pb2
from dmsc.routing import LinkStateTimers
from dmsc.sim import SimNetwork, network_from_graph
from dmsc.sim.reference import fibs_match
from dmsc.spa.authority import SpaAuthority
from dmsc.spa.claims import AttestationVerifier, sign_claim
from dmsc.spa.keys import demo_private_key
from dmsc.spa.policy import PodIdentity, SpaPolicy
from dmsc.topologies import figure2

SAMPLE_STEP = 0.01  # virtual seconds between route samples
WATCHED = "/B"  # the anycast service whose route the figure follows


@dataclass(frozen=True)
class Step:
    at: float
    kind: str
    target: str
    action: Callable[[DemoRun], None]


@dataclass
class DemoRun:
    network: SimNetwork
    authorities: dict[str, SpaAuthority]
    announced: dict[str, set[str]] = field(default_factory=dict)
    authentications: list[dict] = field(default_factory=list)
    route_changes: list[dict] = field(default_factory=list)
    protocol_events: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)

    def announce_pod(self, pod: figure2.PodSpec, claimed: tuple[str, ...] | None = None) -> None:
        """The pod signs a claim per prefix; its SG asks its SPA and advertises what is accepted."""
        sg, now = pod.gateway, self.network.now
        spa_name = next(s for s, g in figure2.SPAS.items() if g == sg)
        for name in claimed or pod.prefixes:
            claim = sign_claim(demo_private_key(pod.name), name, pod.name, sg, now)
            request = dmsc_pb2.AuthRequest(claim=claim, sg_node_id=sg)
            reply = self.authorities[spa_name].authenticate(request, now)
            self.authentications.append(
                {
                    "time": now,
                    "pod": pod.name,
                    "sg": sg,
                    "spa": spa_name,
                    "name": name,
                    "accepted": reply.accepted,
                    "code": dmsc_pb2.RejectCode.Name(reply.code),
                    "reason": reply.reason,
                }
            )
            if reply.accepted:
                self.network.announce(sg, name, reply.attestation)
                self.announced.setdefault(name, set()).add(sg)


def build_authorities() -> dict[str, SpaAuthority]:
    """One SPA per SG; each knows the pods behind its SG and the prefixes they may own."""
    authorities = {}
    for spa_name, sg in figure2.SPAS.items():
        pods = [p for p in figure2.PODS if p.gateway == sg]
        identities = {
            p.name: PodIdentity(p.name, demo_private_key(p.name).public_key(), p.prefixes)
            for p in pods
        }
        authorities[spa_name] = SpaAuthority(SpaPolicy(identities), demo_private_key(spa_name))
    return authorities


def _pod(name: str) -> figure2.PodSpec:
    return next(p for p in figure2.PODS if p.name == name)


def _restart_sg4(run: DemoRun) -> None:
    run.network.restart_node("sg4")
    run.announce_pod(_pod("pod4"))


def _crash_sg4(run: DemoRun) -> None:
    run.network.crash_node("sg4")
    for origins in run.announced.values():
        origins.discard("sg4")


TIMELINE = (
    Step(0.0, "announce", "all pods", lambda r: [r.announce_pod(p) for p in figure2.PODS]),
    Step(5.0, "rogue-claim", "pod3 claims /B/4", lambda r: r.announce_pod(_pod("pod3"), ("/B/4",))),
    Step(10.0, "link-down", "sg4-sr2", lambda r: r.network.set_link_state("sg4", "sr2", False)),
    Step(20.0, "link-up", "sg4-sr2", lambda r: r.network.set_link_state("sg4", "sr2", True)),
    Step(30.0, "node-crash", "sg4", _crash_sg4),
    Step(45.0, "node-restart", "sg4", _restart_sg4),
)
DURATION = 60.0


def _sample_routes(run: DemoRun, last: dict[str, tuple]) -> None:
    for node, router in run.network.live_routers().items():
        for event in router.pop_events():
            if event.kind in ("fib", "reject", "neighbor"):
                run.protocol_events.append(
                    {"time": event.time, "node": node, "kind": event.kind, "detail": event.detail}
                )
        route = next((r for r in router.routes.values() if r.label == WATCHED), None)
        state = (route.origins, tuple(sorted(h for _, h in route.next_hops))) if route else ((), ())
        _record_route(run, last, node, state)
    for node in run.network.crashed:
        _record_route(run, last, node, (("(node down)",), ()))


def _record_route(run: DemoRun, last: dict[str, tuple], node: str, state: tuple) -> None:
    if last.get(node) != state:
        last[node] = state
        run.route_changes.append(
            {
                "time": run.network.now,
                "node": node,
                "prefix": WATCHED,
                "origins": " ".join(state[0]) or "-",
                "next_hops": " ".join(state[1]) or "-",
            }
        )


def _converged_time(run: DemoRun, since: float) -> float | None:
    changes = [t for t in run.network.fib_changed_at.values() if t >= since]
    return max(changes) - since if changes else None


def run_demo(
    seed: int = 1, timers: LinkStateTimers | None = None, pcap: Path | None = None
) -> DemoRun:
    """Run the timeline; with ``pcap``, every signalling datagram delivered is recorded there."""
    authorities = build_authorities()
    verifier = AttestationVerifier.from_public_keys(a.public_key for a in authorities.values())
    network = network_from_graph(figure2.router_graph(), verifier, timers, seed, delay=0.001)
    run = DemoRun(network, authorities)
    if pcap is None:
        _run_timeline(run)
        return run
    from dmsc.wire.pcap_from_sim import record_simulation_pcap  # scapy: only when asked

    with record_simulation_pcap(network, pcap):
        _run_timeline(run)
    return run


def _run_timeline(run: DemoRun) -> None:
    network = run.network
    start, last = network.now, {}
    steps = list(TIMELINE)
    while network.now < start + DURATION:
        while steps and network.now >= start + steps[0].at:
            step = steps.pop(0)
            step.action(run)
            run.events.append({"time": network.now, "kind": step.kind, "target": step.target})
        next_step = start + steps[0].at if steps else start + DURATION
        network.run_until(min(network.now + SAMPLE_STEP, next_step))
        _sample_routes(run, last)
        _mark_convergence(run)


def _mark_convergence(run: DemoRun) -> None:
    """When the network matches the reference SPF, note how long the last event took."""
    if not run.events or "converged_after_s" in run.events[-1]:
        return
    if fibs_match(run.network, run.announced):
        event = run.events[-1]
        event["converged_after_s"] = _converged_time(run, event["time"]) or 0.0
        event["matches_reference_spf"] = True


def tables(run: DemoRun) -> dict[str, pd.DataFrame]:
    """The run as tidy tables, times relative to the start of the scenario."""
    start = run.events[0]["time"]
    frames = {
        "events": pd.DataFrame(run.events),
        "authentications": pd.DataFrame(run.authentications),
        "route_changes": pd.DataFrame(run.route_changes),
        "protocol_events": pd.DataFrame(run.protocol_events),
    }
    for frame in frames.values():
        if "time" in frame:
            frame["time"] = (frame["time"] - start).round(4)
    return frames


def plot(frames: dict[str, pd.DataFrame]):
    """Who serves /B for each SG over time, and every FIB change, with the timeline marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    routes = frames["route_changes"]
    gateways = [n for n in figure2.SERVICE_GATEWAYS if n in set(routes["node"])]
    served = {label: i for i, label in enumerate(sorted(set(routes["origins"])))}
    for node in gateways:
        rows = routes[routes["node"] == node]
        times = [*rows["time"], DURATION]
        values = [served[o] for o in rows["origins"]] + [served[rows["origins"].iloc[-1]]]
        top.step(times, values, where="post", label=node, linewidth=1.5)
    top.set_yticks(list(served.values()), list(served.keys()))
    top.set_ylabel(f"{WATCHED} served by")
    top.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title="route at")
    changes = frames["protocol_events"]
    results.plot_fib_changes(bottom, changes[changes["kind"] == "fib"], "virtual time (s)")
    results.mark_events((top, bottom), frames["events"])
    figure.suptitle("DMSC Figure 2 (simulated): anycast routing through faults", y=0.99)
    figure.tight_layout()
    return figure
