"""The Mininet CLI with DMSC commands: look inside nodes, call services by name, break things.

mininet> fib sr1                  the FIB of a node (also: rib, lsdb, neighbors, counters,
                                  events, leases)
mininet> names                    every service name, its address and who serves it
mininet> where /B                 the SGs advertising a name, and the route each SG uses
mininet> call pod2 http /B        call a service by name from a pod (ping, udp, tcp, http)
mininet> pod2 traceroute -6 /B/4  any command: service names become their addresses
mininet> linkdown sg4 sr2         take a link down (linkup to restore)
mininet> nodedown sg4             crash a node's program (nodeup to restart it)
mininet> converged                wait until every FIB matches an independent SPF

With the SCSC (`dmsc cli --scsc`):

mininet> telemetry [SG...]        what the SGs measure (delay, jitter, loss per instance)
mininet> decisions [N]            the SCSC's last N decision records; `choices`: its current ones
mininet> policies NODE...         a node's OpenFlow policy table, with counters
mininet> ofctl sr2 dump-flows     ovs-ofctl -O OpenFlow13 ... against the node's agent
mininet> thresholds /B max_delay_ms=20 max_jitter_ms=off     change thresholds at run time
mininet> nodedown scsc            stop the SCSC (fail-static); nodeup scsc resynchronises
"""

from __future__ import annotations

import json
import sys

from mininet.cli import CLI

from dmsc.errors import DmscError, InvalidName
from dmsc.names import ServiceName, name_address
from dmsc.nodes.emulation import OPENFLOW_LISTEN_PORT, SCSC_HOST, EmulatedNetwork

QUERIES = ("fib", "rib", "lsdb", "neighbors", "counters", "events", "leases", "status")


def substitute_names(line: str) -> str:
    """Replace each word that is a service name (``/B/4``) by its address."""
    words = []
    for word in line.split(" "):
        try:
            words.append(
                str(name_address(ServiceName.parse(word))) if word.startswith("/") else word
            )
        except InvalidName:
            words.append(word)
    return " ".join(words)


def format_rows(rows) -> str:
    if isinstance(rows, dict):
        return "\n".join(f"  {key}: {json.dumps(value)}" for key, value in sorted(rows.items()))
    return "\n".join("  " + json.dumps(row) for row in rows) or "  (empty)"


def with_threshold_changes(current: dict, scope: str, assignments: list[str]) -> dict:
    """The threshold table ``current`` (its documented shape) with ``KEY=VALUE`` applied to
    ``scope`` ("default" or a service name). The SCSC validates the result."""
    if not assignments:
        raise ValueError("give at least one KEY=VALUE (e.g. max_delay_ms=20, or =off)")
    services = current.get("services") or {}
    table = {
        "default": dict(current.get("default") or {}),
        "services": {name: dict(limits) for name, limits in services.items()},
    }
    section = table["default"] if scope == "default" else table["services"].setdefault(scope, {})
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep or not key:
            raise ValueError(f"{assignment!r}: expected KEY=VALUE")
        if value in ("off", "null", "none"):
            section[key] = None
            continue
        try:
            section[key] = float(value)
        except ValueError:
            raise ValueError(f"{assignment!r}: {value!r} is not a number or off") from None
    return table


class DmscCLI(CLI):
    prompt = "dmsc> "

    def __init__(self, network: EmulatedNetwork, stdin=sys.stdin, script=None) -> None:
        self.network = network
        super().__init__(network.net, stdin=stdin, script=script)

    def _say(self, text: str) -> None:
        self.stdout.write(text + "\n")

    def _ask(self, node: str, query: str):
        try:
            return self.network.ask(node, query)
        except DmscError as error:
            self._say(f"*** {node}: {error}")
            return None

    def _query(self, query: str, line: str) -> None:
        nodes = line.split()
        if not nodes:
            self._say(f"usage: {query} NODE...")
        for node in nodes:
            rows = self._ask(node, query)
            if rows is not None:
                self._say(f"{node} {query}:\n{format_rows(rows)}")

    def do_fib(self, line: str) -> None:
        """fib NODE...: the forwarding table (prefix, name, next hops)."""
        self._query("fib", line)

    def do_rib(self, line: str) -> None:
        """rib NODE...: routes with distances and origins."""
        self._query("rib", line)

    def do_lsdb(self, line: str) -> None:
        """lsdb NODE...: the link-state database."""
        self._query("lsdb", line)

    def do_neighbors(self, line: str) -> None:
        """neighbors NODE...: adjacencies and their states."""
        self._query("neighbors", line)

    def do_counters(self, line: str) -> None:
        """counters NODE...: protocol counters (packets, errors, SPF runs, ...)."""
        self._query("counters", line)

    def do_events(self, line: str) -> None:
        """events NODE...: the node's recent protocol events."""
        self._query("events", line)

    def do_leases(self, line: str) -> None:
        """leases SG...: the prefixes the SG's pods hold, and how long they have left."""
        self._query("leases", line)

    def do_names(self, _line: str) -> None:
        """names: every advertised service name, its address and the SGs advertising it."""
        for name, origins in sorted(self._advertised().items()):
            self._say(f"  {name:<16} {name_address(name)!s:<28} at {', '.join(sorted(origins))}")

    def do_where(self, line: str) -> None:
        """where NAME: the SGs advertising NAME, and the route every SG uses toward it."""
        name = line.strip()
        origins = self._advertised().get(name)
        if not origins:
            self._say(f"*** nobody advertises {name!r}")
            return
        self._say(f"{name} [{name_address(name)}] advertised by {', '.join(sorted(origins))}")
        for sg in self.network.spec.gateways:
            if sg in self.network.nodes_down:
                self._say(f"  {sg}: (down)")
                continue
            fib = {row["label"]: row for row in self._ask(sg, "fib") or []}
            row = fib.get(name)
            hops = (
                "local"
                if row and row["local"]
                else (", ".join(h["node"] for h in row["next_hops"]) if row else "no route")
            )
            self._say(f"  {sg}: {hops}")

    def _advertised(self) -> dict[str, set[str]]:
        anyone = next(n for n in self.network.spec.gateways if n not in self.network.nodes_down)
        advertised: dict[str, set[str]] = {}
        for entry in self._ask(anyone, "lsdb") or []:
            for name in entry["prefixes"]:
                advertised.setdefault(name, set()).add(entry["originator"])
        return advertised

    def do_call(self, line: str) -> None:
        """call POD PROTOCOL NAME [COUNT]: ping/udp/tcp/http to a service by name from a pod."""
        parts = line.split()
        if len(parts) not in (3, 4) or parts[1] not in ("ping", "udp", "tcp", "http"):
            self._say("usage: call POD {ping,udp,tcp,http} NAME [COUNT]")
            return
        pod, protocol, name = parts[:3]
        count = parts[3] if len(parts) == 4 else "3"
        if protocol == "ping":
            command = ["ping", "-6", "-c", count, "-i", "0.2", substitute_names(name)]
        else:
            command = [sys.executable, "-m", "dmsc.nodes.client", protocol, name, "--count", count]
        self._say(self.mn[pod].cmd(*command).rstrip())

    def do_linkdown(self, line: str) -> None:
        """linkdown A B: take the link between two routers down."""
        self._link(line, False)

    def do_linkup(self, line: str) -> None:
        """linkup A B: bring the link between two routers back up."""
        self._link(line, True)

    def _link(self, line: str, up: bool) -> None:
        ends = line.split()
        if len(ends) != 2:
            self._say(f"usage: {'linkup' if up else 'linkdown'} A B")
            return
        try:
            self.network.set_link(*ends, up)
        except DmscError as error:
            self._say(f"*** {error}")

    def do_nodedown(self, line: str) -> None:
        """nodedown NODE: crash a node's program (SIGKILL)."""
        try:
            self.network.kill_node(line.strip())
        except KeyError:
            self._say(f"*** no program on {line.strip()!r}")

    def do_nodeup(self, line: str) -> None:
        """nodeup NODE: restart a crashed node's program."""
        try:
            self.network.restart_node(line.strip())
        except (KeyError, DmscError) as error:
            self._say(f"*** {error}")

    def do_converged(self, line: str) -> None:
        """converged [TIMEOUT]: wait until every FIB matches an independent SPF."""
        try:
            waited = self.network.wait_converged(float(line or 30))
            self._say(f"converged (waited {waited:.2f} s)")
        except (DmscError, ValueError) as error:
            self._say(f"*** {error}")

    # ------------------------------------------------------------------ the SCSC

    def _scsc(self, query: str, **arguments):
        if self.network.scsc is None:
            self._say("*** no SCSC in this network (start with: dmsc cli --scsc)")
            return None
        try:
            return self.network.ask(SCSC_HOST, query, **arguments)
        except DmscError as error:
            self._say(f"*** scsc: {error}")
            return None

    def do_telemetry(self, line: str) -> None:
        """telemetry [SG...]: each SG's probe results per instance; without SG, what the
        SCSC has received."""
        if line.split():
            self._query("telemetry", line)
            return
        rows = self._scsc("telemetry")
        if rows is not None:
            self._say(f"scsc telemetry:\n{format_rows(rows)}")

    def do_decisions(self, line: str) -> None:
        """decisions [N]: the SCSC's last N decision records (default 20)."""
        limit = int(line) if line.strip().isdigit() else 20
        rows = self._scsc("decisions", limit=limit)
        if rows is not None:
            self._say(format_rows(rows))

    def do_choices(self, _line: str) -> None:
        """choices: the instance and path the SCSC chose for each (SG, service) it manages."""
        rows = self._scsc("choices")
        if rows is not None:
            self._say(format_rows(rows))

    def do_policies(self, line: str) -> None:
        """policies NODE...: the node's policy (OpenFlow) table, with packet counters."""
        self._query("policies", line)

    def do_ofctl(self, line: str) -> None:
        """ofctl NODE COMMAND [ARGS]: ovs-ofctl -O OpenFlow13 COMMAND tcp:127.0.0.1:6634 ARGS
        in the node (e.g. ofctl sr2 dump-flows; ofctl sg2 dump-ports)."""
        parts = line.split()
        if len(parts) < 2:
            self._say("usage: ofctl NODE COMMAND [ARGS...]  (e.g. ofctl sr2 dump-flows)")
            return
        node, command, *rest = parts
        target = f"tcp:127.0.0.1:{OPENFLOW_LISTEN_PORT}"
        self._say(self.mn[node].cmd("ovs-ofctl", "-O", "OpenFlow13", command, target,
                                    *rest).rstrip())  # fmt: skip

    def do_thresholds(self, line: str) -> None:
        """thresholds [default|SERVICE KEY=VALUE...]: show the SCSC's thresholds, or change
        some (VALUE a number, or off), e.g. thresholds /B max_delay_ms=20 max_jitter_ms=off."""
        parts = line.split()
        current = self._scsc("thresholds")
        if current is None or not parts:
            if current is not None:
                self._say(format_rows(current))
            return
        try:
            table = with_threshold_changes(current, parts[0], parts[1:])
        except ValueError as error:
            self._say(f"*** {error}")
            return
        if self._scsc("set_thresholds", thresholds=table) is not None:
            self._say(format_rows(self._scsc("thresholds") or {}))

    def default(self, line: str) -> None:
        """NODE COMMAND: run a command on a host, with service names turned into addresses."""
        super().default(substitute_names(line))
