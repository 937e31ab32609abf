"""Run the SCSC: its configuration, the os-ken application manager, the admin socket.

os-ken 4.x ships no ``osken-manager``; this is the project's own, doing what ryu-manager did
(``AppManager.load_apps``, ``create_contexts``, ``instantiate_apps``) with the configuration
checked first and a clean stop on SIGTERM/SIGINT::

    config = load_config("scsc.json")      # ConfigError naming the file and the field
    code = run(config)                     # blocks until SIGTERM/SIGINT (0) or a failure (1)

The configuration (JSON; only the three paths are required)::

    {"admin_socket": "/tmp/dmsc/scsc.sock",
     "decisions_log": "results/decisions.jsonl", "telemetry_log": "results/telemetry.jsonl",
     "listen_host": "0.0.0.0", "listen_port": 6653, "decision_interval_s": 0.2,
     "startup_settle_s": 2.0, "topology_settle_s": 6.0, "node_id": "scsc",
     "thresholds": {"default": {"max_delay_ms": 50}}, "scheduler": {"hold_down_s": 10}}

Readiness, for callers: the TCP port listens and the admin socket answers ``status``.

os-ken 4.x runs on native threads by default (``OSKEN_HUB_TYPE`` unset or ``native``), and so
does the SCSC: its threads come from ``os_ken.lib.hub`` and share state under a lock. The
eventlet hub is refused: it would need monkey-patching before any import, and a real lock
taken in a green thread would stall every other one.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import math
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from dmsc.controllers.decision import SchedulerConfig
from dmsc.controllers.thresholds import ThresholdTable
from dmsc.errors import ConfigError, DmscError
from dmsc.nodes.admin import MAX_REQUEST, Handler, answer
from dmsc.nodes.config import read_json

log = logging.getLogger(__name__)

APP_MODULE = "dmsc.controllers.scsc_app"
APP_NAME = "ScscApp"
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})
#: os-ken's datapath threads only notice a closed connection when they next send something, so
#: the controller sends an ECHO_REQUEST every second; five unanswered ones end the session.
ECHO_REQUEST_INTERVAL_S = 1.0
MAX_UNREPLIED_ECHOES = 5
WATCH_INTERVAL_S = 0.5


# ---------------------------------------------------------------- configuration


@dataclass(frozen=True)
class ScscConfig:
    """The SCSC's configuration; every value checked on construction, refused by name."""

    admin_socket: str
    decisions_log: str  # JSON lines, one DecisionRecord each
    telemetry_log: str  # JSON lines, one accepted QoS sample each
    node_id: str = "scsc"  # the name in its log lines
    listen_host: str = "0.0.0.0"
    listen_port: int = 6653
    decision_interval_s: float = 0.2
    #: no decision for this long after start: a restarted SCSC first hears every switch's LSA
    #: copy and reads its table back, so it never decides on half a topology
    startup_settle_s: float = 2.0
    #: no decision until the topology (LSA copies) has been still this long: routing
    #: reconverges first (its SPF back-off can hold a change up to spf_max_hold, 5 s), and the
    #: probes lost meanwhile expire (1 s) and leave the SGs' windows
    topology_settle_s: float = 6.0
    thresholds: Mapping[str, Any] = field(default_factory=dict)  # ThresholdTable's YAML shape
    scheduler: Mapping[str, Any] = field(default_factory=dict)  # SchedulerConfig's fields

    def __post_init__(self) -> None:
        for name in ("admin_socket", "decisions_log", "telemetry_log", "node_id"):
            if not getattr(self, name):
                raise ConfigError(f"{name}: must not be empty")
        try:
            ipaddress.ip_address(self.listen_host)
        except ValueError:
            raise ConfigError(
                f"listen_host: {self.listen_host!r} is not an IPv4 or IPv6 address"
            ) from None
        if not 0 < self.listen_port < 65536:
            raise ConfigError(f"listen_port: {self.listen_port} is not in 1..65535")
        if not self.decision_interval_s > 0:
            raise ConfigError(f"decision_interval_s: must be > 0, got {self.decision_interval_s}")
        for name in ("startup_settle_s", "topology_settle_s"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name}: must be >= 0, got {getattr(self, name)}")
        self.threshold_table()
        self.scheduler_config()

    def threshold_table(self) -> ThresholdTable:
        return ThresholdTable.from_mapping(self.thresholds, "thresholds")

    def scheduler_config(self) -> SchedulerConfig:
        return SchedulerConfig.from_mapping(self.scheduler, "scheduler")


_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "Mapping[str, Any]": (dict,),
}


def config_from_mapping(data: Any, where: str = "scsc config") -> ScscConfig:
    """An ScscConfig from parsed JSON; unknown, missing or mistyped keys are errors."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    known = {each.name: each for each in fields(ScscConfig)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    missing = [
        name
        for name, each in known.items()
        if name not in data and each.default is MISSING and each.default_factory is MISSING
    ]
    if missing:
        raise ConfigError(f"{where}: missing key(s) {missing}")
    for name, value in data.items():
        _check_type(name, str(known[name].type), value, where)
    try:
        return ScscConfig(**data)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None


def _check_type(name: str, kind: str, value: Any, where: str) -> None:
    expected = _TYPES[kind]
    wrong = not isinstance(value, expected) or isinstance(value, bool)
    if not wrong and kind == "float" and not math.isfinite(value):
        wrong = True
    if wrong:
        what = {"str": "a string", "int": "an integer", "float": "a number"}.get(kind, "a mapping")
        raise ConfigError(f"{where}: {name}: expected {what}, got {value!r}")


def load_config(path: str | Path) -> ScscConfig:
    return config_from_mapping(read_json(path), str(path))


# ---------------------------------------------------------------- the admin socket


class AdminServer:
    """``dmsc.nodes.admin``'s protocol (one JSON request per line, one reply per line) on a
    unix socket, served by os-ken hub threads instead of asyncio (os-ken owns the process)."""

    def __init__(self, path: str, handlers: Mapping[str, Handler]) -> None:
        from os_ken.lib import hub

        self._hub = hub
        self.path = path
        self._handlers = dict(handlers)
        self._stopping = threading.Event()
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            if os.path.exists(path):
                os.unlink(path)  # a stale socket of a crashed run
            self._server = hub.listen(path, family=socket.AF_UNIX)
        except OSError as error:
            raise DmscError(f"admin_socket {path}: cannot listen ({error})") from None
        self._server.settimeout(WATCH_INTERVAL_S)  # so the accept loop sees stop()
        self._thread = hub.spawn(self._serve)

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                raise
            self._hub.spawn(self._client, connection)

    def _client(self, connection: socket.socket) -> None:
        connection.settimeout(60.0)  # a client that went quiet does not hold a thread forever
        with connection, connection.makefile("rb") as reader:
            try:
                while line := reader.readline(MAX_REQUEST + 1):
                    if len(line) > MAX_REQUEST:
                        return  # a huge line: drop the client, as the asyncio server does
                    reply = answer(line, self._handlers)
                    connection.sendall(json.dumps(reply, default=str).encode() + b"\n")
            except OSError:
                pass  # a client that vanished; the SCSC carries on

    def close(self) -> None:
        self._stopping.set()
        self._server.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


# ---------------------------------------------------------------- running


def setup_logging(node_id: str, level: str = "INFO") -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=level,
        format=f"%(asctime)s {node_id} %(levelname)s %(name)s: %(message)s",
    )


def check_listen_address(host: str, port: int) -> None:
    """Refuse to start when the OpenFlow port is taken: os-ken would only log it in a thread."""
    family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise DmscError(f"cannot listen on {host} port {port}: {error.strerror}") from None


def configure_os_ken(config: ScscConfig) -> None:
    from os_ken import cfg
    from os_ken.base import app_manager  # noqa: F401 -- registers the ofp_* options

    conf = cfg.CONF
    conf(args=[], project="os_ken", default_config_files=[])  # no /etc/os_ken/os_ken.conf
    conf.set_override("ofp_listen_host", config.listen_host)
    conf.set_override("ofp_tcp_listen_port", config.listen_port)
    conf.set_override("echo_request_interval", ECHO_REQUEST_INTERVAL_S)
    conf.set_override("maximum_unreplied_echo_requests", MAX_UNREPLIED_ECHOES)


def run(config: ScscConfig) -> int:
    """Run the SCSC until SIGTERM/SIGINT (0) or until its OpenFlow listener fails (1).

    The stop signals are blocked in every thread and taken synchronously by this one, so no
    handler ever runs in the middle of a decision round. os-ken's own threads (listener,
    datapath loops) cannot be stopped in the native hub: the caller exits the process after
    this returns (``dmsc scsc`` does, with ``os._exit``)."""
    hub_type = os.environ.get("OSKEN_HUB_TYPE", "native")
    if hub_type != "native":
        raise DmscError(f"OSKEN_HUB_TYPE={hub_type}: the SCSC runs on os-ken's native hub only")
    check_listen_address(config.listen_host, config.listen_port)
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)  # before any thread starts
    configure_os_ken(config)
    from os_ken.base.app_manager import AppManager

    manager = AppManager.get_instance()
    manager.load_apps([APP_MODULE])
    contexts = manager.create_contexts()
    services = manager.instantiate_apps(**contexts, scsc_config=config)
    app = manager.applications[APP_NAME]
    admin: AdminServer | None = None
    try:
        admin = AdminServer(config.admin_socket, app.admin_handlers())
        log.info(
            "SCSC listening on %s port %d (OpenFlow 1.3), admin socket %s",
            config.listen_host, config.listen_port, config.admin_socket,
        )  # fmt: skip
        return _wait_for_stop(lambda: all(thread.is_alive() for thread in services))
    finally:
        if admin is not None:
            admin.close()
        app.shutdown()


def _wait_for_stop(alive: Callable[[], bool]) -> int:
    while True:
        received = signal.sigtimedwait(STOP_SIGNALS, WATCH_INTERVAL_S)
        # After SIGSTOP/SIGCONT the wait can return a record without a stop signal (seen:
        # si_signo -1814973648): only SIGTERM and SIGINT stop the SCSC.
        if received is not None and received.si_signo in STOP_SIGNALS:
            log.info("%s received: stopping", signal.Signals(received.si_signo).name)
            return 0
        if not alive():
            log.error("the OpenFlow listener stopped (see the error above): stopping")
            return 1
