"""The emulated DMSC network: a TopologySpec as Mininet hosts running the node programs.

    with EmulatedNetwork(figure2.spec()) as net:     # always torn down, even on error
        net.wait_converged()
        net.hosts["pod2"].cmd(...)

No switches and no controller: every link is a veth pair between two hosts. Start order is
SPAs, then SGs and SRs, then pods, each waited for by polling (never a fixed sleep); stop is the
reverse, each program terminated, waited for, then killed. What was created is recorded in a
state file under ``/run/dmsc`` so that ``dmsc clean`` can remove what a crashed run left.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dmsc.errors import DmscError
from dmsc.names import ServiceName
from dmsc.nodes import admin
from dmsc.nodes import config as node_config
from dmsc.nodes.config import (
    EDGE_PEER_LINK_LOCAL,
    GATEWAY_LINK_LOCAL,
    SPA_PORT,
    CallsConfig,
    InstanceConfig,
    PodConfig,
    RouterConfig,
    RouterInterface,
)
from dmsc.routing import LinkStateTimers
from dmsc.routing.domain import RoutingDomain
from dmsc.sim.reference import directed, expected_routes_on, routes_from_fib_rows
from dmsc.spa.keys import (
    generate_private_key,
    load_private_key,
    public_key_to_text,
    save_private_key,
)
from dmsc.spa.policy import PodIdentity, SpaPolicy, dump_policy
from dmsc.topologies.spec import TopologySpec

log = logging.getLogger(__name__)
RUN_ROOT = Path("/run/dmsc")
HOST_SYSCTLS = (
    "net.ipv6.conf.all.disable_ipv6=0",
    "net.ipv6.conf.default.disable_ipv6=0",
    "net.ipv6.conf.all.accept_dad=0",
    "net.ipv6.conf.default.accept_dad=0",
    "net.ipv6.conf.all.forwarding=0",  # only the Python forwarder forwards
)
OFFLOADS_OFF = ("rx", "off", "tx", "off", "tso", "off", "gso", "off", "gro", "off")


def require_mininet():
    if os.geteuid() != 0:
        raise DmscError("the emulated network needs root (Mininet creates network namespaces)")
    try:
        import mininet.net  # noqa: F401  (Debian's python3-mininet)
    except ImportError:
        raise DmscError(
            "Mininet is not importable: install Debian's 'mininet' package and run "
            "from the project's virtualenv (./testbed setup)"
        ) from None


@dataclass
class Program:
    host: str
    role: str
    process: subprocess.Popen
    log_path: Path
    command: list[str]


SCSC_HOST = "scsc"
MGMT_BRIDGE = "mgmt"  # inside the SCSC's namespace: nothing is added to the host's
MGMT_INTERFACE = "mgmt0"  # every SG/SR's interface on the management network
MGMT_SCSC_ADDRESS = "10.255.0.1"
OPENFLOW_PORT = 6653  # the SCSC listens here (IANA's OpenFlow port)
OPENFLOW_LISTEN_PORT = 6634  # each node, for ovs-ofctl (as Open vSwitch's ptcp: default)


def mgmt_address(index: int) -> str:
    """The management address of the ``index``-th SG/SR (10.255.0.2 onwards; a /16)."""
    number = index + 2
    if number > 0xFFFE:
        raise DmscError("more than 65,533 nodes do not fit the management network")
    return f"10.255.{number >> 8}.{number & 0xFF}"


@dataclass(frozen=True)
class ScscOptions:
    """The Scheduling Center and the SGs' probing (docs/scheduling.md).

    ``thresholds`` and ``scheduler`` take the documented YAML shapes; ``probe_services`` maps an
    SG to the services it probes (default: every SG probes every service of the topology).
    """

    thresholds: dict = field(default_factory=dict)
    scheduler: dict = field(default_factory=dict)
    decision_interval_s: float = 0.2
    topology_settle_s: float = 6.0  # see dmsc/controllers/launcher.py
    probe_interval_ms: int = 100
    probe_timeout_ms: int = 1000
    probe_window: int = 10
    telemetry_interval_ms: int = 500
    probe_services: dict | None = None


@dataclass
class Edge:
    """An SG's link to a pod or an SPA: the SG side is fe80::1, the other side fe80::2."""

    sg: str
    sg_interface: str
    peer: str
    peer_interface: str


@dataclass
class EmulatedNetwork:
    spec: TopologySpec
    timers: LinkStateTimers = field(default_factory=LinkStateTimers)
    forward: bool = True
    run_dir: Path | None = None  # configs, logs, sockets; a temporary one is removed at stop
    #: Seconds each program gets to be ready (listening, answering, announced). The default
    #: suits a host; under software emulation (the VM's TCG) every start is ~5x slower.
    ready_timeout_s: float = 20.0
    scsc: ScscOptions | None = None  # None: no SCSC, routing alone
    #: Where the keys live: the routing domain's (operator, link, routers), the SPAs' and the
    #: pods'. None: fresh random keys for this run, in the run directory. A directory a user
    #: gives keeps the keys it holds; the missing ones are created there (docs/security.md).
    keys_dir: Path | None = None
    #: the call graph: the pods offering each service make its calls before they answer
    calls: tuple[CallsConfig, ...] = ()

    def __post_init__(self) -> None:
        self.net = None
        self.hosts: dict = {}
        self.router_interfaces: dict[str, list[str]] = {}
        self.link_ends: dict[tuple[str, str], tuple[str, str]] = {}  # (a, b) -> their interfaces
        self.links_down: set[tuple[str, str]] = set()
        self.nodes_down: set[str] = set()
        self.edges: dict[str, Edge] = {}  # pod or SPA name -> its edge
        self.mgmt_addresses: dict[str, str] = {}  # SG/SR -> its management address
        self.programs: dict[str, Program] = {}
        self._cleanups: list[Callable[[], object]] = []

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> EmulatedNetwork:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> None:
        require_mininet()
        if self.run_dir is None:
            self.run_dir = RUN_ROOT / f"{self.spec.name}-{os.getpid()}"
            self._cleanups.append(lambda: shutil.rmtree(self.run_dir, ignore_errors=True))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._cleanups.append(lambda: shutil.rmtree(self.run_dir / "sock", ignore_errors=True))
        self._make_keys()
        self._build_hosts_and_links()
        self._write_state()
        self._start_spas()
        if self.scsc is not None:
            self._start_scsc()
        self._start_routers()
        self._start_pods()

    def stop(self) -> None:
        """Reverse order: pods, routers, SCSC, SPAs, then Mininet; safe to call twice."""
        for role in ("pod", "router", "scsc", "spa"):
            names = [n for n, p in self.programs.items() if p.role == role]
            self._terminate_all([self.programs.pop(name) for name in names])
        while self._cleanups:
            try:
                self._cleanups.pop()()
            except Exception as error:  # teardown goes on: report, never mask the first error
                log.warning("teardown step failed: %s", error)
        if self.run_dir is not None and self.run_dir.exists():
            (self.run_dir / "state.json").unlink(missing_ok=True)

    def log_tails(self, size: int = 3000) -> dict[str, str]:
        """The end of every program's log, for a failure report."""
        tails = {}
        for path in sorted(self.run_dir.glob("*.log")) if self.run_dir else []:
            tails[path.stem] = path.read_text(errors="replace")[-size:]
        return tails

    # ------------------------------------------------------------------ building

    def _build_hosts_and_links(self) -> None:
        from mininet.net import Mininet

        self.net = Mininet(topo=None, build=False, controller=None, cleanup=False)
        self._cleanups.append(self.net.stop)
        spec = self.spec
        for name in (*spec.gateways, *spec.routers, *spec.spas, *(p.name for p in spec.pods)):
            host = self.net.addHost(name, ip=None)
            for setting in HOST_SYSCTLS:
                host.cmd("sysctl", "-qw", setting)
            host.cmd("ip", "link", "set", "lo", "up")
            self.hosts[name] = host
        for link in spec.links:
            ends = self._add_link(link.a, link.b, link.bandwidth_mbps)
            self.link_ends[(link.a, link.b)] = ends
            self.router_interfaces.setdefault(link.a, []).append(ends[0])
            self.router_interfaces.setdefault(link.b, []).append(ends[1])
        for peer, sg in [*spec.spas.items(), *((p.name, p.gateway) for p in spec.pods)]:
            sg_interface, peer_interface = self._add_link(sg, peer, None)
            self.edges[peer] = Edge(sg, sg_interface, peer, peer_interface)
            self._address(sg, sg_interface, GATEWAY_LINK_LOCAL)
            self._address(peer, peer_interface, EDGE_PEER_LINK_LOCAL)
        if self.scsc is not None:
            self._build_management_network()

    def _build_management_network(self) -> None:
        """The out-of-band network of the SCSC: a Linux bridge in the SCSC's namespace, one
        veth to every SG/SR. IPv4, so it never mixes with the DMSC's IPv6 data plane."""
        from mininet.link import Link

        if SCSC_HOST in self.hosts:
            raise DmscError(f"a topology node is called {SCSC_HOST!r}, the SCSC's host name")
        scsc = self.net.addHost(SCSC_HOST, ip=None)
        self.hosts[SCSC_HOST] = scsc
        scsc.cmd("ip", "link", "set", "lo", "up")
        scsc.cmd("ip", "link", "add", MGMT_BRIDGE, "type", "bridge")
        scsc.cmd("ip", "addr", "add", f"{MGMT_SCSC_ADDRESS}/16", "dev", MGMT_BRIDGE)
        scsc.cmd("ip", "link", "set", MGMT_BRIDGE, "up")
        for index, name in enumerate((*self.spec.gateways, *self.spec.routers)):
            port = f"m{index}"
            self.net.addLink(self.hosts[name], scsc, cls=Link, intfName1=MGMT_INTERFACE,
                             intfName2=port)  # fmt: skip
            scsc.cmd("ip", "link", "set", port, "master", MGMT_BRIDGE, "up")
            address = mgmt_address(index)
            self.hosts[name].cmd("ip", "addr", "add", f"{address}/16", "dev", MGMT_INTERFACE)
            self.hosts[name].cmd("ip", "link", "set", MGMT_INTERFACE, "up")
            self.mgmt_addresses[name] = address

    def _add_link(self, a: str, b: str, bandwidth_mbps: float | None) -> tuple[str, str]:
        from mininet.link import Link, TCLink

        options = {"cls": TCLink, "bw": bandwidth_mbps} if bandwidth_mbps else {"cls": Link}
        link = self.net.addLink(self.hosts[a], self.hosts[b], **options)
        for interface in (link.intf1, link.intf2):
            interface.node.cmd("ethtool", "-K", interface.name, *OFFLOADS_OFF)
            interface.node.cmd("ip", "link", "set", interface.name, "up")
        return link.intf1.name, link.intf2.name

    def _address(self, host: str, interface: str, address: str) -> None:
        self.hosts[host].cmd("ip", "-6", "addr", "add", f"{address}/64", "dev", interface, "nodad")

    def _write_state(self) -> None:
        """What `dmsc clean` needs if this process dies: host shell pids and link names."""
        state = {
            "pid": os.getpid(),
            "shells": {name: host.pid for name, host in self.hosts.items()},
            "links": sorted(
                {i for ends in self.link_ends.values() for i in ends}
                | {e.sg_interface for e in self.edges.values()}
            ),
        }
        (self.run_dir / "state.json").write_text(json.dumps(state, indent=2))

    # ------------------------------------------------------------------ programs

    def _popen(self, host: str, role: str, command: list[str]) -> Program:
        log_path = self.run_dir / f"{host}.log"
        with open(log_path, "ab") as log_file:
            # Mininet runs it through `mnexec -da`, which already makes it a session leader
            process = self.hosts[host].popen(command, stdout=log_file, stderr=subprocess.STDOUT)
        program = Program(host, role, process, log_path, command)
        self.programs[host] = program
        return program

    def _terminate_all(self, programs: list[Program], grace: float = 3.0) -> None:
        """SIGTERM them all at once, wait up to ``grace`` (more for many: they share two
        cores while they shut down), then SIGKILL the rest."""
        running = [p for p in programs if p.process.poll() is None]
        grace = max(grace, 0.05 * len(running))
        for program in running:
            program.process.send_signal(signal.SIGCONT)  # in case a test froze it
            program.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for program in running:
            try:
                program.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %.1f s: killing it", program.host, grace)
                program.process.kill()
                program.process.wait()

    def _make_keys(self) -> None:
        """Enrol every router and give every SPA and pod a key, before anything starts."""
        keys = self.keys_dir or self.run_dir / "keys"
        keys.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.domain = RoutingDomain.open_directory(keys)
        now = time.time()
        for name in (*self.spec.gateways, *self.spec.routers):
            role = "sg" if name in self.spec.gateways else "sr"
            self.domain.write_router(keys, name, role, now)
        for name in (*self.spec.spas, *(pod.name for pod in self.spec.pods)):
            if not (keys / f"{name}.key").exists():
                save_private_key(generate_private_key(), keys / f"{name}.key")
        self.keys = keys

    def key_path(self, name: str) -> Path:
        """The private key of router, SPA or pod ``name``."""
        return self.keys / f"{name}.key"

    def public_key_text(self, name: str) -> str:
        return public_key_to_text(load_private_key(self.key_path(name)).public_key())

    def _config_path(self, name: str) -> Path:
        return self.run_dir / f"{name}.json"

    def admin_socket(self, name: str) -> str:
        return str(self.run_dir / "sock" / f"{name}.sock")

    def _start_spas(self) -> None:
        for spa, sg in self.spec.spas.items():
            key_path = self.key_path(spa)
            policy_path = self.run_dir / f"{spa}-policy.yaml"
            policy_path.write_text(json.dumps(dump_policy(self._policy_for(sg))))
            command = [
                sys.executable,
                "-m",
                "dmsc",
                "spa",
                "serve",
                "--policy",
                str(policy_path),
                "--key",
                str(key_path),
                "--listen",
                f"[::]:{SPA_PORT}",
            ]
            self._popen(spa, "spa", command)
        for spa in self.spec.spas:
            self._wait(
                lambda spa=spa: self.listening(spa, SPA_PORT),
                f"SPA {spa} listening",
                self.ready_timeout_s,
            )

    def _start_scsc(self) -> None:
        options = self.scsc
        config = {
            "listen_host": MGMT_SCSC_ADDRESS,
            "listen_port": OPENFLOW_PORT,
            "admin_socket": self.admin_socket(SCSC_HOST),
            "decisions_log": str(self.run_dir / "scsc-decisions.jsonl"),
            "telemetry_log": str(self.run_dir / "scsc-telemetry.jsonl"),
            "decision_interval_s": options.decision_interval_s,
            "topology_settle_s": options.topology_settle_s,
            "thresholds": options.thresholds,
            "scheduler": options.scheduler,
        }
        self._config_path(SCSC_HOST).write_text(json.dumps(config, indent=2) + "\n")
        command = [sys.executable, "-m", "dmsc", "scsc", "--config",
                   str(self._config_path(SCSC_HOST))]  # fmt: skip
        self._popen(SCSC_HOST, "scsc", command)
        self._wait_scsc_ready()

    def _wait_scsc_ready(self) -> None:
        """Ready only once it listens and answers (os-ken imports take a while)."""
        self._wait(
            lambda: self.listening(SCSC_HOST, OPENFLOW_PORT) and self._answers(SCSC_HOST),
            "the SCSC listening",
            self.ready_timeout_s,
        )

    def _probe_services(self, sg: str) -> tuple[str, ...]:
        options = self.scsc
        if options.probe_services is not None:
            return tuple(options.probe_services.get(sg, ()))
        return tuple(sorted({s for pod in self.spec.pods for s in pod.services}))

    def _policy_for(self, sg: str) -> SpaPolicy:
        pods = [p for p in self.spec.pods if p.gateway == sg]
        return SpaPolicy(
            {
                p.name: PodIdentity(
                    p.name, load_private_key(self.key_path(p.name)).public_key(), p.prefixes
                )
                for p in pods
            }
        )

    def listening(self, host: str, port: int) -> bool:
        """Whether a TCP socket listens on ``port`` in ``host``."""
        output = self.hosts[host].cmd("ss", "-Hltn", f"sport = :{port}")
        return str(port) in output

    def _start_routers(self) -> None:
        anchors = tuple(self.public_key_text(spa) for spa in self.spec.spas)
        for name in (*self.spec.gateways, *self.spec.routers):
            config = self._router_config(name, anchors)
            node_config.write(config, self._config_path(name))
            command = [
                sys.executable,
                "-m",
                "dmsc.nodes",
                "router",
                "--config",
                str(self._config_path(name)),
            ]
            self._popen(name, "router", command)
        for name in (*self.spec.gateways, *self.spec.routers):
            self._wait(
                lambda name=name: self._answers(name), f"{name} admin socket", self.ready_timeout_s
            )

    def _router_config(self, name: str, anchors: tuple[str, ...]) -> RouterConfig:
        is_sg = name in self.spec.gateways
        interfaces = []
        for link in self.spec.links:
            for end, interface in zip(
                (link.a, link.b), self.link_ends[(link.a, link.b)], strict=True
            ):
                if end == name:
                    capacity = int((link.bandwidth_mbps or 0) * 1_000_000)
                    interfaces.append(RouterInterface(interface, link.cost, capacity))
        spa_edges = [e for e in self.edges.values() if e.sg == name and e.peer in self.spec.spas]
        return RouterConfig(
            node_id=name,
            role="sg" if is_sg else "sr",
            interfaces=tuple(interfaces),
            admin_socket=self.admin_socket(name),
            trust_anchors=anchors,
            router_key_file=str(self.key_path(name)),
            certificate_file=str(self.keys / f"{name}.cert"),
            link_key_file=str(self.keys / "link.key"),
            routing_anchors=(self.domain.anchor_text,),
            timers={k: v for k, v in vars(self.timers).items()},
            pod_interfaces=tuple(
                e.sg_interface
                for e in self.edges.values()
                if e.sg == name and e.peer not in self.spec.spas
            ),
            pod_links={
                e.sg_interface: e.peer
                for e in self.edges.values()
                if e.sg == name and e.peer not in self.spec.spas
            },
            spa_target=(
                f"ipv6:[{EDGE_PEER_LINK_LOCAL}%25{spa_edges[0].sg_interface}]:{SPA_PORT}"
                if spa_edges
                else ""
            ),
            forward=self.forward,
            **self._scsc_settings(name, is_sg),
        )

    def _scsc_settings(self, name: str, is_sg: bool) -> dict:
        options = self.scsc
        if options is None:
            return {}
        return {
            "controller": f"{MGMT_SCSC_ADDRESS}:{OPENFLOW_PORT}",
            # loopback only: ovs-ofctl in the node's own namespace, never a peer or a pod
            "openflow_listen": f"127.0.0.1:{OPENFLOW_LISTEN_PORT}",
            "probe_services": self._probe_services(name) if is_sg else (),
            "probe_interval_ms": options.probe_interval_ms,
            "probe_timeout_ms": options.probe_timeout_ms,
            "probe_window": options.probe_window,
            "telemetry_interval_ms": options.telemetry_interval_ms,
        }

    def _start_pods(self) -> None:
        for pod in self.spec.pods:
            config = PodConfig(
                pod_id=pod.name,
                interface=self.edges[pod.name].peer_interface,
                gateway_node_id=pod.gateway,
                instances=tuple(InstanceConfig(i) for i in pod.instances),
                key_file=str(self.key_path(pod.name)),
                admin_socket=self.admin_socket(pod.name),
                extra_claims=pod.unauthorized,
                calls=self._calls_of(pod),
                hop_log=str(self.hop_log(pod.name)),
            )
            node_config.write(config, self._config_path(pod.name))
            command = [
                sys.executable,
                "-m",
                "dmsc.nodes",
                "pod",
                "--config",
                str(self._config_path(pod.name)),
            ]
            self._popen(pod.name, "pod", command)
        for pod in self.spec.pods:
            self._wait(
                lambda pod=pod: self._pod_announced(pod.name),
                f"{pod.name} announced",
                self.ready_timeout_s,
            )

    def _calls_of(self, pod) -> tuple[CallsConfig, ...]:
        services = {str(ServiceName.parse(i).parent) for i in pod.instances}
        return tuple(plan for plan in self.calls if plan.service in services)

    def hop_log(self, pod: str) -> Path:
        """Where ``pod`` logs the calls its services make (JSON lines, appended)."""
        return self.run_dir / f"hops-{pod}.jsonl"

    def _pod_announced(self, name: str) -> bool:
        try:
            status = self.ask(name, "status")
        except DmscError:
            return False
        return status["last_renewal"] is not None

    def _answers(self, name: str) -> bool:
        try:
            self.ask(name, "status")
        except DmscError:
            return False
        return True

    # ------------------------------------------------------------------ observing

    def ask(self, node: str, query: str, **arguments):
        return admin.ask(self.admin_socket(node), query, **arguments)

    def _wait(self, condition: Callable[[], bool], what: str, timeout: float) -> float:
        """Poll ``condition`` until true; raise naming ``what`` (and any dead program)."""
        start = time.monotonic()
        while not condition():
            self._check_programs_alive()
            if time.monotonic() - start > timeout:
                raise DmscError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(0.05)
        return time.monotonic() - start

    def _check_programs_alive(self) -> None:
        for program in self.programs.values():
            if program.host in self.nodes_down:
                continue
            code = program.process.poll()
            if code is not None:
                tail = program.log_path.read_text(errors="replace")[-2000:]
                raise DmscError(f"{program.host} ({program.role}) exited with {code}:\n{tail}")

    def working_graph(self):
        """The router graph without the links and nodes taken down through this object."""
        graph = self.spec.router_graph()
        graph.remove_edges_from(self.links_down)
        graph.remove_nodes_from(self.nodes_down)
        return graph

    def kill_node(self, name: str) -> None:
        """Crash a node program (SIGKILL): no goodbye, its neighbors must notice."""
        program = self.programs[name]
        program.process.kill()
        program.process.wait()
        self.nodes_down.add(name)

    def restart_node(self, name: str, wait: bool = True) -> None:
        """Start a crashed node's program again, with its configuration (a fresh process);
        with ``wait``, return once it is ready (the experiment runner does not wait: its
        timeline must keep its times even when a start is slow, as in the VM)."""
        old = self.programs[name]
        if old.process.poll() is None:
            raise DmscError(f"{name} is still running")
        self._popen(name, old.role, old.command)
        self.nodes_down.discard(name)
        if not wait:
            return
        if old.role == "scsc":
            self._wait_scsc_ready()
        else:
            self._wait(lambda: self._answers(name), f"{name} admin socket", self.ready_timeout_s)

    def signal_program(self, name: str, signum: int) -> None:
        """Send a signal to a running program (SIGSTOP freezes a pod: it stops renewing)."""
        self.programs[name].process.send_signal(signum)

    def set_link(self, a: str, b: str, up: bool) -> None:
        """Take a router link down or up (both ends, as a cable pull would)."""
        key = (a, b) if (a, b) in self.link_ends else (b, a)
        if key not in self.link_ends:
            raise DmscError(f"no link between {a} and {b}")
        state = "up" if up else "down"
        for node, interface in zip(key, self.link_ends[key], strict=True):
            self.hosts[node].cmd("ip", "link", "set", interface, state)
        if up:
            self.links_down.discard(key)
        else:
            self.links_down.add(key)

    def interface_toward(self, node: str, neighbor: str) -> str:
        """``node``'s interface on its link to ``neighbor`` (where its egress qdisc goes)."""
        for (a, b), ends in self.link_ends.items():
            if (a, b) == (node, neighbor):
                return ends[0]
            if (b, a) == (node, neighbor):
                return ends[1]
        raise DmscError(f"no link between {node} and {neighbor}")

    def expected_announced(self) -> dict[str, set[str]]:
        """name -> SGs that should advertise it, given the pods and SGs taken down here."""
        return self.spec.announced(down=self.nodes_down)

    def fibs_match_reference(self, announced: dict[str, set[str]] | None = None) -> bool:
        announced = self.expected_announced() if announced is None else announced
        expected = expected_routes_on(directed(self.working_graph()), announced)
        for node, routes in expected.items():
            try:
                actual = routes_from_fib_rows(self.ask(node, "fib"))
            except DmscError:
                return False
            if actual != routes:
                return False
        return True

    def wait_converged(self, timeout: float = 30.0, announced=None) -> float:
        return self._wait(lambda: self.fibs_match_reference(announced), "convergence", timeout)
