"""Experiment files (docs/experiments.md): read one, check all of it, resolve its variants.

    experiment = load_experiment("experiments/delay.yaml")   # ConfigError if anything is off
    print(describe(experiment))
    for variant in experiment.variants:                       # every setting fully resolved
        for repetition in range(variant.repetitions):
            ...  # variant.topology, .scsc, .timers, .workload, .timeline, .duration_s, .seed

Nothing here starts anything. A bad file is refused before the network exists, with the file,
the field path and the reason: ``delay.yaml: timeline[2].link: sr9 is not a node of figure2
(nodes: sg1, ...)``. The only I/O is reading the file and, when an impairment needs it, asking
whether the kernel has ``sch_netem`` (:func:`detect_netem`).

Where docs/experiments.md leaves room, this module decides:

- ``null`` for a key of the experiment format means "absent": the default (for ``scsc``: no
  SCSC; for ``pods``: the topology's own placement). Inside ``scsc.thresholds``,
  ``scsc.scheduler`` and ``timers`` null keeps the meaning those owners give it (a limit off,
  telemetry never stale), and in a ``thresholds`` event a null limit switches it off.
- A variant may change ``topology``, ``pods``, ``workload``, ``calls``, ``scsc``, ``timers``
  and ``timeline``; ``duration_s``, ``repetitions`` and ``seed`` are the experiment's, so that
  variants are compared on the same footing (``Variant`` repeats them). It is a deep
  merge: mappings merge key by key, anything else (lists, numbers, null) replaces. The base is
  checked too, and errors in a variant are reported under ``variants[i].`` followed by the
  path in the merged settings.
- ``scsc_*`` and ``thresholds`` events need an SCSC. The base refuses them without one; so does
  a variant whose own ``timeline`` has them. A variant that turns the SCSC off and inherits the
  base's timeline leaves them out (``Variant.dropped``): they do not apply there.
- The timeline must make sense in time order: ``link_up``/``node_restart``/``scsc_start``/
  ``clear`` need the matching ``link_down``/``node_crash``/``scsc_stop``/``impair`` before
  them, nothing is taken down twice, and ``thresholds`` is refused while the SCSC is stopped.
- ``correlation`` needs ``jitter_ms`` or ``loss`` (netem correlates only those); any non-null
  delay, jitter or loss, even 0, needs netem.
- ``pods`` on an imported topology (TopoHub or GraphML) may put a pod behind any node: the SGs
  become the pods' gateways. On a built-in shape a gateway must be one of its SGs. SPAs: the
  topology's own for the SGs that remain, plus ``spaN`` for each SG with pods and no SPA.
- ``topohub:<key>`` is a network of the TopoHub package (pinned in setup.py), e.g.
  ``topohub:topozoo/Geant2012``; ``abilene`` is short for ``topohub:topozoo/Abilene``.
- Duplicate keys in the YAML are refused (plain ``safe_load`` keeps the last one silently).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import networkx as nx
import yaml

from dmsc.controllers.decision import SchedulerConfig
from dmsc.controllers.thresholds import Thresholds, ThresholdTable
from dmsc.errors import ConfigError, InvalidName
from dmsc.names import ServiceName
from dmsc.nodes.calls import MAX_BYTES, MAX_UDP_BYTES, PROTOCOLS
from dmsc.nodes.config import CallsConfig
from dmsc.nodes.emulation import ScscOptions
from dmsc.nodes.workload import ARRIVALS, CONNECTIONS, default_bound
from dmsc.routing.config import LinkStateTimers
from dmsc.topologies import BUILT_IN
from dmsc.topologies.builders import build_topology
from dmsc.topologies.spec import PodSpec, TopologySpec
from dmsc.topologies.zoo import ALIASES, TOPOHUB, is_topohub


@dataclass(frozen=True)
class WorkloadSpec:
    """One client: ``client`` (a pod) calls ``service`` at ``rate_hz`` calls a second, open
    loop (``constant`` or ``poisson`` arrivals) or closed loop (``closed``), as
    :mod:`dmsc.nodes.workload` does. ``max_in_flight`` None: ``rate_hz * timeout_s + 1``."""

    client: str
    service: str
    rate_hz: float = 10.0
    arrivals: str = "constant"
    protocol: str = "http"
    connection: str = "keep-alive"
    timeout_s: float = 1.0
    request_bytes: int = 0
    response_bytes: int = 0
    max_in_flight: int | None = None

    @property
    def bound(self) -> int:
        """The calls it may have in flight (open loop; a closed loop has one)."""
        if self.arrivals == "closed":
            return 1
        return self.max_in_flight or default_bound(self.rate_hz, self.timeout_s)


TOPOLOGIES = (*BUILT_IN, *ALIASES)
NAME = re.compile(r"[a-z0-9-]+\Z")
NETEM_MISSING = (
    "needs tc netem, which this kernel lacks: run it in the experiment VM (dmsc vm run {file})"
)

#: the settings of a run (the base, or a variant merged over it)
SETTINGS_KEYS = (
    "topology",
    "pods",
    "workload",
    "calls",
    "scsc",
    "timers",
    "duration_s",
    "repetitions",
    "seed",
    "timeline",
)
TOP_KEYS = ("name", "description", *SETTINGS_KEYS, "reuse_network", "calibration", "variants")
TOP_REQUIRED = ("name", "topology", "workload", "duration_s")
#: not per variant: variants are compared over the same duration, repetitions and seed
SHARED_KEYS = ("duration_s", "repetitions", "seed")
VARIANT_KEYS = ("name", *(key for key in SETTINGS_KEYS if key not in SHARED_KEYS))
POD_KEYS = ("name", "gateway", "instances", "unauthorized")
WORKLOAD_KEYS = tuple(each.name for each in fields(WorkloadSpec))
CALLS_KEYS = ("calls", "parallel", "timeout_s")
TIMER_KEYS = tuple(each.name for each in fields(LinkStateTimers))
SCHEDULER_KEYS = tuple(each.name for each in fields(SchedulerConfig))
THRESHOLD_KEYS = tuple(each.name for each in fields(Thresholds))
IMPAIRMENT_KEYS = (
    "delay_ms",
    "jitter_ms",
    "loss",
    "rate_mbit",
    "distribution",
    "correlation",
    "direction",
)
DISTRIBUTIONS = ("normal", "pareto", "paretonormal", "uniform")
DIRECTIONS = ("both", "forward", "backward")
#: action -> its keys besides ``at`` and ``action``; link, node and service are required
ACTION_KEYS: dict[str, tuple[str, ...]] = {
    "impair": ("link", *IMPAIRMENT_KEYS),
    "clear": ("link",),
    "link_down": ("link",),
    "link_up": ("link",),
    "node_crash": ("node",),
    "node_restart": ("node",),
    "scsc_stop": (),
    "scsc_start": (),
    "thresholds": ("service", *THRESHOLD_KEYS),
}
TARGET_KEYS = ("link", "node", "service")
SCSC_ACTIONS = frozenset({"scsc_stop", "scsc_start", "thresholds"})
#: action -> (state it reads, value it needs (None: any), value it leaves (None: unchanged));
#: the state is per target: a link, a node, or the SCSC
TRANSITIONS: dict[str, tuple[str, bool | None, bool | None]] = {
    "impair": ("impaired", None, True),
    "clear": ("impaired", True, False),
    "link_down": ("down", False, True),
    "link_up": ("down", True, False),
    "node_crash": ("crashed", False, True),
    "node_restart": ("crashed", True, False),
    "scsc_stop": ("stopped", False, True),
    "scsc_start": ("stopped", True, False),
    "thresholds": ("stopped", False, None),
}


def _positive(value: float) -> bool:
    return value > 0


def _non_negative(value: float) -> bool:
    return value >= 0


def _fraction(value: float) -> bool:
    return 0 <= value <= 1


#: ScscOptions' numeric fields: (rule, check, integer)
SCSC_NUMBERS: dict[str, tuple[str, Callable[[float], bool], bool]] = {
    "decision_interval_s": ("> 0", _positive, False),
    "topology_settle_s": (">= 0", _non_negative, False),
    "probe_interval_ms": ("> 0", _positive, True),
    "probe_timeout_ms": ("> 0", _positive, True),
    "probe_window": ("> 0", _positive, True),
    "telemetry_interval_ms": ("> 0", _positive, True),
}
SCSC_KEYS = ("thresholds", "scheduler", *SCSC_NUMBERS, "probe_services")
assert set(SCSC_KEYS) == {each.name for each in fields(ScscOptions)}
assert set(TRANSITIONS) == set(ACTION_KEYS)


# ---------------------------------------------------------------- the resolved experiment


@dataclass(frozen=True)
class Calibration:
    """The noise floor and the impairments' accuracy (dmsc.experiments.calibration): pings for
    ``floor_s`` before each repetition's timeline on every workload path and impaired link,
    for ``impairment_s`` across a link once it is impaired, one every ``interval_s``. A
    duration of 0 turns that measurement off. The same for every variant."""

    floor_s: float = 3.0
    impairment_s: float = 3.0
    interval_s: float = 0.05

    def describe(self) -> str:
        if not (self.floor_s or self.impairment_s):
            return "calibration off"
        return (
            f"calibration: a ping every {self.interval_s * 1000:g} ms for {self.floor_s:g} s "
            f"before the timeline, {self.impairment_s:g} s after each impairment"
        )


@dataclass(frozen=True)
class Impairment:
    """What ``impair`` does to a link; None = not applied. ``loss`` and ``correlation`` are
    fractions; ``direction`` is ``both``, ``forward`` (from the link's first node) or
    ``backward``."""

    delay_ms: float | None = None
    jitter_ms: float | None = None
    loss: float | None = None
    rate_mbit: float | None = None
    distribution: str | None = None
    correlation: float | None = None
    direction: str = "both"

    @property
    def needs_netem(self) -> bool:
        """Delay, jitter or loss need netem; a rate alone is shaped with HTB."""
        return any(value is not None for value in (self.delay_ms, self.jitter_ms, self.loss))

    def describe(self) -> str:
        parts = []
        if self.delay_ms is not None:
            jitter = "" if self.jitter_ms is None else f" ± {self.jitter_ms:g} ms"
            parts.append(f"delay {self.delay_ms:g} ms{jitter}")
        if self.distribution is not None:
            parts.append(self.distribution)
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4g}")
        if self.correlation is not None:
            parts.append(f"correlation {self.correlation:g}")
        if self.rate_mbit is not None:
            parts.append(f"rate {self.rate_mbit:g} Mbit/s")
        if self.direction != "both":
            parts.append(self.direction)
        return ", ".join(parts)


@dataclass(frozen=True)
class Event:
    """One timeline entry. Which fields are set depends on ``action``:

    ===================================  =====================================================
    impair                               link, impairment
    clear, link_down, link_up            link
    node_crash, node_restart             node (an SG, SR, pod or SPA)
    scsc_stop, scsc_start                nothing more
    thresholds                           service (a name or ``"default"``), thresholds (the
                                         limits given, null = off; see :func:`thresholds_after`)
    ===================================  =====================================================

    ``index`` is the event's position in the timeline as written (``timeline[index]``): stable
    across variants, also when a variant leaves SCSC events out.
    """

    at_s: float
    action: str
    link: tuple[str, str] | None = None
    node: str | None = None
    service: str | None = None
    impairment: Impairment | None = None
    thresholds: Mapping[str, float | None] | None = None
    index: int = 0

    @property
    def target(self) -> str:
        """What the event acts on, for tables: ``sr2-sg4``, ``sg4``, ``/B``, ``scsc``."""
        if self.link is not None:
            return "-".join(self.link)
        return self.node or self.service or "scsc"

    def describe(self) -> str:
        text = f"{self.at_s:g} s {self.action}"
        if self.action not in ("scsc_stop", "scsc_start"):
            text += f" {self.target}"
        if self.impairment is not None:
            text += f": {self.impairment.describe()}"
        if self.thresholds is not None:
            text += ": " + ", ".join(f"{k}={v}" for k, v in self.thresholds.items())
        return text


@dataclass(frozen=True)
class Variant:
    """Every setting of one variant, resolved and checked; what the runner runs."""

    name: str
    topology: TopologySpec  # built, with the ``pods`` placement applied
    topology_source: str  # as written: "figure2", "abilene", "topohub:topozoo/Geant2012",
    # "zoo/Geant2012.graphml"
    topology_file: Path | None  # the GraphML file read, absolute; None for a built-in or TopoHub
    workload: tuple[WorkloadSpec, ...]
    scsc: ScscOptions | None  # None: routing alone
    timers: LinkStateTimers
    duration_s: float
    repetitions: int
    seed: int
    timeline: tuple[Event, ...]  # in time order, ties in file order
    calls: tuple[CallsConfig, ...] = ()  # the call graph: what each service calls
    changes: Mapping[str, Any] = field(default_factory=dict)  # the variant's keys, as written
    is_base: bool = True  # no change from the base settings
    dropped: tuple[Event, ...] = ()  # base SCSC events left out: this variant has no SCSC


@dataclass(frozen=True)
class Experiment:
    """An experiment file, checked. The settings fields are the base's (before variants);
    ``variants`` is what runs: ``(base named "base",)`` when the file has no ``variants``."""

    name: str
    description: str
    topology: TopologySpec
    topology_source: str
    workload: tuple[WorkloadSpec, ...]
    scsc: ScscOptions | None
    timers: LinkStateTimers
    duration_s: float
    repetitions: int
    seed: int
    timeline: tuple[Event, ...]
    variants: tuple[Variant, ...]
    source_text: str
    source_sha256: str
    path: Path
    topology_file: Path | None = None
    # one network per variant, reset between repetitions (runner.py), instead of one per
    # repetition: in the VM a network takes minutes to start
    reuse_network: bool = False
    calibration: Calibration = Calibration()


# ---------------------------------------------------------------- entry points


def load_experiment(path: str | Path, *, netem_available: bool | None = None) -> Experiment:
    """Read and check an experiment file. ``netem_available`` None: ask the kernel, only if
    an impairment needs netem."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read ({error.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    data = parse_yaml(text, str(path))
    return experiment_from_mapping(
        data, str(path), path.parent, netem_available, source_text=text, path=path.resolve()
    )


def experiment_from_mapping(
    data: Any,
    source_name: str,
    base_dir: str | Path = ".",
    netem_available: bool | None = None,
    *,
    source_text: str | None = None,
    path: Path | None = None,
) -> Experiment:
    """Check an experiment already read; ``source_name`` prefixes every error, GraphML paths
    are relative to ``base_dir``. Without ``source_text`` the mapping dumped as YAML stands in
    for the file."""
    ctx = _Context(str(source_name), Path(base_dir))
    top = _mapping(ctx, data, "", TOP_KEYS, TOP_REQUIRED)
    name = _name(ctx, top["name"], "name")
    description = _or(top.get("description"), "")
    description = _string(ctx, description, "description", empty=True).strip()
    reuse_network = _flag(ctx, _or(top.get("reuse_network"), False), "reuse_network")
    calibration = _calibration(ctx, _or(top.get("calibration"), {}), "calibration")
    base_mapping = {key: top[key] for key in SETTINGS_KEYS if key in top}
    base = _resolve(ctx, base_mapping, "", "base", {}, drop_scsc_events=False)
    variants = _variants(ctx, top.get("variants"), base_mapping, base)
    runs = [("", base)] + [(f"variants[{i}]", v) for i, v in enumerate(variants) if not v.is_base]
    _check_netem(ctx, runs, netem_available)
    if source_text is None:
        source_text = yaml.safe_dump(data, sort_keys=False)
    return Experiment(
        name=name,
        description=description,
        topology=base.topology,
        topology_source=base.topology_source,
        workload=base.workload,
        scsc=base.scsc,
        timers=base.timers,
        duration_s=base.duration_s,
        repetitions=base.repetitions,
        seed=base.seed,
        timeline=base.timeline,
        variants=variants,
        source_text=source_text,
        source_sha256=hashlib.sha256(source_text.encode("utf-8")).hexdigest(),
        path=path if path is not None else Path(base_dir) / str(source_name),
        topology_file=base.topology_file,
        reuse_network=reuse_network,
        calibration=calibration,
    )


def detect_netem(
    sys_module: Path = Path("/sys/module/sch_netem"),
    modinfo: Sequence[str] = ("modinfo", "sch_netem"),
) -> bool:
    """Whether this kernel has netem: loaded (``/sys/module/sch_netem``) or loadable."""
    if sys_module.exists():
        return True
    command = list(modinfo)
    command[0] = shutil.which(command[0]) or f"/sbin/{command[0]}"
    try:
        done = subprocess.run(command, capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def describe(experiment: Experiment) -> str:
    """A few lines for the runner to print before it starts."""
    spec = experiment.topology
    lines = [f"{experiment.name}: {experiment.description}".rstrip(": ")]
    lines.append(
        f"topology {experiment.topology_source}: {len(spec.gateways)} SGs, "
        f"{len(spec.routers)} SRs, {len(spec.links)} links, {len(spec.pods)} pods"
    )
    lines.append("workload: " + "; ".join(_load_text(w) for w in experiment.workload))
    for plan in experiment.variants[0].calls:
        how = "at once" if plan.parallel else "in turn"
        lines.append(f"  {plan.service} calls {', '.join(plan.calls)} {how}")
    lines.append("variants: " + ", ".join(_variant_text(v) for v in experiment.variants))
    total = sum(v.repetitions * v.duration_s for v in experiment.variants)
    lines.append(
        f"{experiment.repetitions} repetitions of {experiment.duration_s:g} s, "
        f"seed {experiment.seed}; {total / 60:.1f} min of workload in all"
    )
    if experiment.reuse_network:
        lines.append("one network per variant, reset between repetitions (reuse_network)")
    lines.append(experiment.calibration.describe())
    lines.append(f"timeline: {len(experiment.timeline)} events")
    lines += [f"  {event.describe()}" for event in experiment.timeline]
    return "\n".join(lines)


def _load_text(load: WorkloadSpec) -> str:
    pacing = "closed loop" if load.arrivals == "closed" else f"{load.arrivals} arrivals"
    return (
        f"{load.client} -> {load.service} at {load.rate_hz:g}/s ({load.protocol}, {pacing}, "
        f"at most {load.bound} in flight)"
    )


def thresholds_after(current: Mapping[str, Any], event: Event) -> dict[str, Any]:
    """The SCSC's thresholds mapping (``{default: {...}, services: {...}}``, as in
    ``ScscOptions.thresholds``) after a ``thresholds`` event: the event's limits replace those
    of its service (or of the defaults) field by field."""
    if event.action != "thresholds" or event.thresholds is None:
        raise ValueError(f"not a thresholds event: {event}")
    result = copy.deepcopy(dict(current))
    if event.service == "default":
        result["default"] = {**(result.get("default") or {}), **event.thresholds}
        return result
    services = {str(ServiceName.parse(k)): v for k, v in (result.get("services") or {}).items()}
    services[event.service] = {**(services.get(event.service) or {}), **event.thresholds}
    result["services"] = services
    return result


def parse_yaml(text: str, source_name: str) -> Any:
    """YAML as ``yaml.safe_load`` reads it, except that a duplicate key is an error."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{source_name}: not valid YAML: {error.problem}{where}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{source_name}: not valid YAML: {error}") from None


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader refusing duplicate keys."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict:
    seen: set = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, str | int | float | bool) and key in seen:
            raise yaml.constructor.ConstructorError(
                "while reading a mapping",
                node.start_mark,
                f"duplicate key {key!r}",
                key_node.start_mark,
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)


def _variant_text(variant: Variant) -> str:
    if variant.is_base:
        return variant.name if variant.name == "base" else f"{variant.name} (the base)"
    changes = yaml.safe_dump(dict(variant.changes), default_flow_style=True, width=1000).strip()
    return f"{variant.name} {changes}"


# ---------------------------------------------------------------- checking, in general


@dataclass
class _Context:
    file: str
    base_dir: Path
    topologies: dict[str, tuple[TopologySpec, Path | None]] = field(default_factory=dict)

    def error(self, path: str, reason: str) -> ConfigError:
        return ConfigError(f"{self.file}: {path}: {reason}" if path else f"{self.file}: {reason}")


def _at(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _item(path: str, index: int) -> str:
    return f"{path}[{index}]"


def _or(value: Any, default: Any) -> Any:
    """null means absent."""
    return default if value is None else value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _yaml_hint(value: Any) -> str:
    """YAML 1.1 reads ``5e6`` (no dot, no exponent sign) as a string: say how to write it."""
    if not isinstance(value, str):
        return ""
    try:
        number = float(value)
    except ValueError:
        return ""
    if not math.isfinite(number):
        return ""
    plain = str(int(number)) if number.is_integer() else repr(number)
    return f" (YAML reads {value} as text: write {plain} or {number:.1e})"


def _names(names: Sequence[str], limit: int = 30) -> str:
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown}, … ({len(names)} in all)"


def _mapping(
    ctx: _Context, value: Any, path: str, known: Sequence[str], required: Sequence[str] = ()
) -> dict:
    if not isinstance(value, dict):
        raise ctx.error(path, f"expected a mapping, got {_kind(value)}")
    for key in value:
        if key not in known:
            raise ctx.error(_at(path, key), f"unknown key (known: {', '.join(known)})")
    for key in required:
        if value.get(key) is None:
            raise ctx.error(
                _at(path, key), "required" if key not in value else "required, not null"
            )
    return value


def _list(ctx: _Context, value: Any, path: str, least: int = 0) -> list:
    if not isinstance(value, list):
        raise ctx.error(path, f"expected a list, got {_kind(value)}")
    if len(value) < least:
        raise ctx.error(path, f"needs at least {least} entr{'y' if least == 1 else 'ies'}")
    return value


def _string(ctx: _Context, value: Any, path: str, empty: bool = False) -> str:
    if not isinstance(value, str) or not (value or empty):
        raise ctx.error(path, f"expected a string, got {_kind(value)}")
    return value


def _flag(ctx: _Context, value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise ctx.error(path, f"expected true or false, got {_kind(value)}")
    return value


def _name(ctx: _Context, value: Any, path: str) -> str:
    name = _string(ctx, value, path)
    if not NAME.match(name):
        raise ctx.error(path, f"{name!r}: use lowercase letters, digits and '-' only")
    return name


def _choice(ctx: _Context, value: Any, path: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ctx.error(path, f"must be one of {', '.join(choices)}, got {_kind(value)}")
    return value


def _number(
    ctx: _Context,
    value: Any,
    path: str,
    rule: str,
    check: Callable[[float], bool],
    integer: bool = False,
) -> Any:
    kinds = int if integer else int | float
    if isinstance(value, bool) or not isinstance(value, kinds):
        what = "an integer" if integer else "a number"
        raise ctx.error(path, f"expected {what}, got {_kind(value)}{_yaml_hint(value)}")
    if not math.isfinite(value) or not check(value):
        raise ctx.error(path, f"must be {rule}, got {value!r}")
    return value


def _located(ctx: _Context, error: ConfigError, path: str, data: Mapping) -> ConfigError:
    """An error of another module's checker, moved to the key it names."""
    text = str(error)
    for key, value in data.items():
        found = re.search(rf"(?<![\w.]){re.escape(str(key))}: ", text)
        if found:
            return ctx.error(_at(path, key), text[found.end() :] + _yaml_hint(value))
    return ctx.error(path, text)


def _service(ctx: _Context, value: Any, path: str) -> str:
    try:
        return str(ServiceName.parse(value))
    except InvalidName as error:
        raise ctx.error(path, str(error)) from None


def _offered_service(
    ctx: _Context, value: Any, path: str, spec: TopologySpec, ancestors: bool
) -> str:
    """A service name some pod offers (or, with ``ancestors``, an ancestor of one)."""
    name = _service(ctx, value, path)
    offered = sorted({prefix for pod in spec.pods for prefix in pod.prefixes})
    parsed = ServiceName.parse(name)
    if name in offered or (
        ancestors and any(ServiceName.parse(o).is_within(parsed) for o in offered)
    ):
        return name
    raise ctx.error(path, f"no pod of {spec.name} offers {name} (offered: {_names(offered)})")


# ---------------------------------------------------------------- settings


def _resolve(
    ctx: _Context,
    mapping: Mapping[str, Any],
    prefix: str,
    name: str,
    changes: Mapping[str, Any],
    drop_scsc_events: bool,
) -> Variant:
    spec, file = _topology(ctx, mapping.get("topology"), _at(prefix, "topology"))
    if mapping.get("pods") is not None:
        imported = mapping["topology"] not in BUILT_IN  # TopoHub or GraphML
        spec = _place_pods(ctx, spec, imported, mapping["pods"], _at(prefix, "pods"))
    workload = _workload(ctx, mapping.get("workload"), _at(prefix, "workload"), spec)
    calls = _calls(ctx, mapping.get("calls"), _at(prefix, "calls"), spec)
    scsc = _scsc(ctx, mapping.get("scsc"), _at(prefix, "scsc"), spec)
    timers = _timers(ctx, mapping.get("timers"), _at(prefix, "timers"))
    duration = _number(ctx, mapping.get("duration_s"), _at(prefix, "duration_s"), "> 0", _positive)
    repetitions = _number(
        ctx,
        _or(mapping.get("repetitions"), 1),
        _at(prefix, "repetitions"),
        ">= 1",
        _positive,
        integer=True,
    )
    seed = _number(
        ctx, _or(mapping.get("seed"), 0), _at(prefix, "seed"), ">= 0", _non_negative, True
    )
    timeline, dropped = _timeline(
        ctx,
        _or(mapping.get("timeline"), []),
        _at(prefix, "timeline"),
        spec,
        duration,
        scsc is not None,
        drop_scsc_events,
    )
    return Variant(
        name=name,
        topology=spec,
        topology_source=mapping["topology"],
        topology_file=file,
        workload=workload,
        scsc=scsc,
        timers=timers,
        duration_s=duration,
        repetitions=repetitions,
        seed=seed,
        timeline=timeline,
        calls=calls,
        changes=copy.deepcopy(dict(changes)),
        is_base=not changes,
        dropped=dropped,
    )


def _variants(
    ctx: _Context, value: Any, base_mapping: dict[str, Any], base: Variant
) -> tuple[Variant, ...]:
    if value is None:
        return (base,)
    seen: dict[str, int] = {}
    result = []
    for i, raw in enumerate(_list(ctx, value, "variants", least=1)):
        where = _item("variants", i)
        data = _mapping(ctx, raw, where, VARIANT_KEYS, ("name",))
        name = _name(ctx, data["name"], _at(where, "name"))
        if name in seen:
            raise ctx.error(_at(where, "name"), f"{name} is already variants[{seen[name]}]'s name")
        seen[name] = i
        changes = {key: val for key, val in data.items() if key != "name"}
        merged = _merge(base_mapping, changes)
        if merged == base_mapping:  # a variant without changes is the base itself
            result.append(dataclasses.replace(base, name=name, changes=copy.deepcopy(changes)))
            continue
        drop = "timeline" not in changes  # inherited SCSC events do not apply without an SCSC
        result.append(_resolve(ctx, merged, where, name, changes, drop))
    return tuple(result)


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Mappings merge key by key; anything else in ``over`` replaces."""
    result = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _check_netem(
    ctx: _Context, settings: Sequence[tuple[str, Variant]], available: bool | None
) -> None:
    for prefix, variant in settings:
        for event in variant.timeline:
            if event.impairment is None or not event.impairment.needs_netem:
                continue
            if available is None:
                available = detect_netem()
            if available:
                return
            path = _item(_at(prefix, "timeline"), event.index)
            raise ctx.error(path, NETEM_MISSING.format(file=ctx.file))


# ---------------------------------------------------------------- topology and pods


def _topology(ctx: _Context, value: Any, path: str) -> tuple[TopologySpec, Path | None]:
    source = _string(ctx, value, path)
    if source not in ctx.topologies:
        file = _graphml_file(ctx, source, path)
        try:
            spec = build_topology(str(file) if file else source)
        except ConfigError as error:
            raise ctx.error(path, str(error)) from None
        ctx.topologies[source] = (spec, file)
    return ctx.topologies[source]


def _graphml_file(ctx: _Context, source: str, path: str) -> Path | None:
    if is_topohub(source):
        return None  # build_topology reads it from the topohub package
    if source.endswith(".graphml"):
        file = ctx.base_dir / source
        if not file.is_file():
            raise ctx.error(
                path, f"no GraphML file {source} (relative to the experiment file: {file})"
            )
        return file.resolve()
    if source not in BUILT_IN:
        raise ctx.error(
            path,
            f"unknown topology {source!r}: use a built-in ({', '.join(TOPOLOGIES)}), "
            f"{TOPOHUB}<key> (e.g. {TOPOHUB}topozoo/Geant2012) or a .graphml file relative to "
            "the experiment file",
        )
    return None


def _place_pods(
    ctx: _Context, spec: TopologySpec, imported: bool, value: Any, path: str
) -> TopologySpec:
    """``spec`` with the pods of ``value`` instead of its own."""
    nodes = spec.gateways + spec.routers
    allowed = nodes if imported else spec.gateways
    owners: dict[str, str] = {}
    pods = tuple(
        _pod(ctx, raw, _item(path, i), spec, allowed, owners)
        for i, raw in enumerate(_list(ctx, value, path, least=1))
    )
    gateways = tuple(dict.fromkeys(pod.gateway for pod in pods)) if imported else spec.gateways
    spas = {spa: sg for spa, sg in spec.spas.items() if sg in gateways}
    for sg in dict.fromkeys(pod.gateway for pod in pods):
        if sg not in spas.values():
            number = 1 + len(spas)
            while f"spa{number}" in spas:
                number += 1
            spas[f"spa{number}"] = sg
    routers = tuple(node for node in nodes if node not in gateways)
    try:
        return dataclasses.replace(spec, gateways=gateways, routers=routers, pods=pods, spas=spas)
    except ConfigError as error:
        raise ctx.error(path, str(error)) from None


def _pod(
    ctx: _Context,
    raw: Any,
    path: str,
    spec: TopologySpec,
    allowed: Sequence[str],
    owners: dict[str, str],
) -> PodSpec:
    data = _mapping(ctx, raw, path, POD_KEYS, ("name", "gateway", "instances"))
    name = _string(ctx, data["name"], _at(path, "name"))
    gateway = _string(ctx, data["gateway"], _at(path, "gateway"))
    if gateway not in allowed:
        what = "SG" if allowed == spec.gateways else "node"
        raise ctx.error(
            _at(path, "gateway"),
            f"{gateway} is not an {what} of {spec.name} ({what}s: {_names(allowed)})",
        )
    instances = []
    for j, raw_instance in enumerate(_list(ctx, data["instances"], _at(path, "instances"), 1)):
        where = _item(_at(path, "instances"), j)
        instance = _service(ctx, raw_instance, where)
        if ServiceName.parse(instance).depth < 2:
            raise ctx.error(where, f"{instance} is not an instance (needs /service/instance)")
        if instance in owners:
            raise ctx.error(where, f"{instance} is already an instance of {owners[instance]}")
        owners[instance] = name
        instances.append(instance)
    unauthorized = tuple(
        _service(ctx, claim, _item(_at(path, "unauthorized"), j))
        for j, claim in enumerate(
            _list(ctx, _or(data.get("unauthorized"), []), _at(path, "unauthorized"))
        )
    )
    return PodSpec(name, gateway, tuple(instances), unauthorized)


# ---------------------------------------------------------------- workload, SCSC, timers


def _workload(ctx: _Context, value: Any, path: str, spec: TopologySpec) -> tuple[WorkloadSpec, ...]:
    pods = [pod.name for pod in spec.pods]
    defaults = {each.name: each.default for each in fields(WorkloadSpec)}
    seen: dict[tuple[str, str], int] = {}
    result = []
    for i, raw in enumerate(_list(ctx, value, path, least=1)):
        where = _item(path, i)
        data = _mapping(ctx, raw, where, WORKLOAD_KEYS, ("client", "service"))
        client = _string(ctx, data["client"], _at(where, "client"))
        if client not in pods:
            raise ctx.error(
                _at(where, "client"), f"{client} is not a pod of {spec.name} (pods: {_names(pods)})"
            )
        service = _offered_service(ctx, data["service"], _at(where, "service"), spec, False)
        if (client, service) in seen:
            raise ctx.error(
                where, f"{client} already calls {service} in {path}[{seen[client, service]}]"
            )
        seen[client, service] = i

        def get(key: str, data: dict = data) -> Any:
            return _or(data.get(key), defaults[key])

        protocol = _choice(ctx, get("protocol"), _at(where, "protocol"), PROTOCOLS)
        largest = MAX_UDP_BYTES if protocol == "udp" else MAX_BYTES
        sizes = {
            key: _number(ctx, get(key), _at(where, key), f"from 0 to {largest} ({protocol})",
                         lambda v, largest=largest: 0 <= v <= largest, integer=True)
            for key in ("request_bytes", "response_bytes")
        }  # fmt: skip
        bound = get("max_in_flight")
        result.append(
            WorkloadSpec(
                client=client,
                service=service,
                rate_hz=_number(ctx, get("rate_hz"), _at(where, "rate_hz"), "> 0", _positive),
                arrivals=_choice(ctx, get("arrivals"), _at(where, "arrivals"), ARRIVALS),
                protocol=protocol,
                connection=_choice(ctx, get("connection"), _at(where, "connection"), CONNECTIONS),
                timeout_s=_number(ctx, get("timeout_s"), _at(where, "timeout_s"), "> 0", _positive),
                max_in_flight=None
                if bound is None
                else _number(ctx, bound, _at(where, "max_in_flight"), ">= 1", _positive, True),
                **sizes,
            )
        )
    return tuple(result)


def _calls(ctx: _Context, value: Any, path: str, spec: TopologySpec) -> tuple[CallsConfig, ...]:
    """``calls: {/A: {calls: [/B, /C/3], parallel: false, timeout_s: 0.5}}`` (or ``/A: [/B]``):
    what a service's instances call before they answer; the graph must have no cycle."""
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise ctx.error(
            path, f"expected a mapping of services to what they call, got {_kind(value)}"
        )
    result, graph = [], nx.DiGraph()
    for key, raw in value.items():
        where = f"{path}[{key}]"
        service = _offered_service(ctx, key, where, spec, ancestors=False)
        if ServiceName.parse(service).depth != 1:
            raise ctx.error(
                where, f"{service} is an instance: name its service, as /{service.split('/')[1]}"
            )
        data = (
            {"calls": raw}
            if isinstance(raw, list)
            else _mapping(ctx, raw, where, CALLS_KEYS, ("calls",))
        )
        targets = tuple(
            _offered_service(ctx, target, _item(_at(where, "calls"), j), spec, ancestors=False)
            for j, target in enumerate(_list(ctx, data["calls"], _at(where, "calls"), least=1))
        )
        timeout = _number(
            ctx, _or(data.get("timeout_s"), 1.0), _at(where, "timeout_s"), "> 0", _positive
        )
        parallel = _flag(ctx, _or(data.get("parallel"), False), _at(where, "parallel"))
        result.append(CallsConfig(service, targets, parallel, max(1, round(timeout * 1000))))
        for target in targets:
            graph.add_edge(service, "/" + target.split("/")[1])
    try:
        cycle = nx.find_cycle(graph)
    except nx.NetworkXNoCycle:
        return tuple(result)
    loop = " -> ".join([a for a, _ in cycle] + [cycle[0][0]])
    raise ctx.error(path, f"the call graph has a cycle: {loop} (a call would never end)")


def _scsc(ctx: _Context, value: Any, path: str, spec: TopologySpec) -> ScscOptions | None:
    if value is None:
        return None
    data = _mapping(ctx, value, path, SCSC_KEYS)
    options: dict[str, Any] = {}
    for key, (rule, check, integer) in SCSC_NUMBERS.items():
        if data.get(key) is not None:
            options[key] = _number(ctx, data[key], _at(path, key), rule, check, integer)
    if data.get("thresholds") is not None:
        options["thresholds"] = _thresholds(ctx, data["thresholds"], _at(path, "thresholds"), spec)
    if data.get("scheduler") is not None:
        options["scheduler"] = _scheduler(ctx, data["scheduler"], _at(path, "scheduler"))
    if data.get("probe_services") is not None:
        where = _at(path, "probe_services")
        options["probe_services"] = _probe_services(ctx, data["probe_services"], where, spec)
    return ScscOptions(**options)


def _thresholds(ctx: _Context, value: Any, path: str, spec: TopologySpec) -> dict:
    data = _mapping(ctx, value, path, ("default", "services"))
    _limits(ctx, _or(data.get("default"), {}), _at(path, "default"))
    services = _or(data.get("services"), {})
    if not isinstance(services, dict):
        raise ctx.error(_at(path, "services"), f"expected a mapping, got {_kind(services)}")
    for name, limits in services.items():
        where = f"{_at(path, 'services')}[{name}]"
        _offered_service(ctx, name, where, spec, ancestors=True)
        _limits(ctx, _or(limits, {}), where)
    try:
        ThresholdTable.from_mapping(data)
    except ConfigError as error:
        raise ctx.error(path, str(error)) from None
    return copy.deepcopy(data)


def _limits(ctx: _Context, value: Any, path: str) -> dict:
    data = _mapping(ctx, value, path, THRESHOLD_KEYS)
    try:
        Thresholds.from_mapping(data)
    except ConfigError as error:
        raise _located(ctx, error, path, data) from None
    return dict(data)


def _scheduler(ctx: _Context, value: Any, path: str) -> dict:
    data = _mapping(ctx, value, path, SCHEDULER_KEYS)
    try:
        SchedulerConfig.from_mapping(data)
    except ConfigError as error:
        raise _located(ctx, error, path, data) from None
    return copy.deepcopy(data)


def _probe_services(
    ctx: _Context, value: Any, path: str, spec: TopologySpec
) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, dict):
        raise ctx.error(path, f"expected a mapping of SG to services, got {_kind(value)}")
    result = {}
    for sg, services in value.items():
        where = _at(path, sg)
        if sg not in spec.gateways:
            raise ctx.error(
                where, f"{sg} is not an SG of {spec.name} (SGs: {_names(spec.gateways)})"
            )
        result[sg] = tuple(
            _offered_service(ctx, service, _item(where, j), spec, ancestors=False)
            for j, service in enumerate(_list(ctx, services, where))
        )
    return result


def _calibration(ctx: _Context, value: Any, path: str) -> Calibration:
    keys = tuple(each.name for each in fields(Calibration))
    data = _mapping(ctx, value, path, keys)
    durations = {
        key: _number(ctx, data[key], _at(path, key), ">= 0", _non_negative)
        for key in ("floor_s", "impairment_s")
        if data.get(key) is not None
    }
    interval = data.get("interval_s")
    if interval is not None:
        # ping's own floor for root is 2 ms; below 10 ms the pings would load the forwarders
        _number(ctx, interval, _at(path, "interval_s"), "in [0.01, 1]", lambda v: 0.01 <= v <= 1)
        durations["interval_s"] = interval
    return Calibration(**durations)


def _timers(ctx: _Context, value: Any, path: str) -> LinkStateTimers:
    data = _mapping(ctx, _or(value, {}), path, TIMER_KEYS)
    try:
        return LinkStateTimers(**data)
    except ConfigError as error:
        raise _located(ctx, error, path, data) from None


# ---------------------------------------------------------------- timeline


def _timeline(
    ctx: _Context,
    value: Any,
    path: str,
    spec: TopologySpec,
    duration: float,
    scsc_on: bool,
    drop_scsc_events: bool,
) -> tuple[tuple[Event, ...], tuple[Event, ...]]:
    """The events in time order (ties in file order), and those left out."""
    kept, dropped = [], []
    for i, raw in enumerate(_list(ctx, value, path)):
        event = _event(ctx, raw, _item(path, i), i, spec, duration)
        if event.action in SCSC_ACTIONS and not scsc_on:
            if not drop_scsc_events:
                raise ctx.error(
                    _at(_item(path, i), "action"),
                    f"{event.action} needs scsc, which is off (null or absent) here",
                )
            dropped.append(event)
        else:
            kept.append(event)
    ordered = tuple(sorted(kept, key=lambda event: event.at_s))
    _check_sequence(ctx, ordered, path)
    return ordered, tuple(dropped)


def _event(
    ctx: _Context, raw: Any, path: str, index: int, spec: TopologySpec, duration: float
) -> Event:
    if not isinstance(raw, dict):
        raise ctx.error(path, f"expected a mapping, got {_kind(raw)}")
    action = raw.get("action")
    if action not in ACTION_KEYS:
        reason = "required" if action is None else f"unknown action {_kind(action)}"
        raise ctx.error(_at(path, "action"), f"{reason} (actions: {', '.join(ACTION_KEYS)})")
    keys = ACTION_KEYS[action]
    required = ("at", *(key for key in keys if key in TARGET_KEYS))
    data = _mapping(ctx, raw, path, ("at", "action", *keys), required)
    at = _number(
        ctx,
        data["at"],
        _at(path, "at"),
        f"in [0, duration_s) = [0, {duration:g})",
        lambda value: 0 <= value < duration,
    )
    parts: dict[str, Any] = {}
    if "link" in keys:
        parts["link"] = _link(ctx, data["link"], _at(path, "link"), spec)
    if "node" in keys:
        parts["node"] = _node(ctx, data["node"], _at(path, "node"), spec)
    if action == "impair":
        parts["impairment"] = _impairment(ctx, data, path)
    if action == "thresholds":
        service, where = data["service"], _at(path, "service")
        if service != "default":
            service = _offered_service(ctx, service, where, spec, ancestors=True)
        limits = {key: data[key] for key in THRESHOLD_KEYS if key in data}
        if not limits:
            raise ctx.error(path, f"thresholds needs at least one of {', '.join(THRESHOLD_KEYS)}")
        parts["service"], parts["thresholds"] = service, _limits(ctx, limits, path)
    return Event(at_s=at, action=action, index=index, **parts)


def _link(ctx: _Context, value: Any, path: str, spec: TopologySpec) -> tuple[str, str]:
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
        raise ctx.error(path, f"expected two node names, as [sg1, sr1], got {_kind(value)}")
    nodes = spec.gateways + spec.routers
    for end in value:
        if end not in nodes:
            raise ctx.error(path, f"{end} is not a node of {spec.name} (nodes: {_names(nodes)})")
    a, b = value
    if not any({a, b} == {link.a, link.b} for link in spec.links):
        raise ctx.error(path, f"{spec.name} has no link between {a} and {b}")
    return a, b


def _node(ctx: _Context, value: Any, path: str, spec: TopologySpec) -> str:
    node = _string(ctx, value, path)
    if node == "scsc":
        raise ctx.error(path, "the SCSC is stopped and started with scsc_stop and scsc_start")
    nodes = [*spec.gateways, *spec.routers, *(pod.name for pod in spec.pods), *spec.spas]
    if node not in nodes:
        raise ctx.error(path, f"{node} is not a node of {spec.name} (nodes: {_names(nodes)})")
    return node


def _impairment(ctx: _Context, data: dict, path: str) -> Impairment:
    rules = {
        "delay_ms": (">= 0", _non_negative),
        "jitter_ms": (">= 0", _non_negative),
        "loss": ("in [0, 1]", _fraction),
        "rate_mbit": ("> 0", _positive),
        "correlation": ("in [0, 1]", _fraction),
    }
    given = {
        key: _number(ctx, data[key], _at(path, key), rule, check)
        for key, (rule, check) in rules.items()
        if data.get(key) is not None
    }
    if data.get("distribution") is not None:
        where = _at(path, "distribution")
        given["distribution"] = _choice(ctx, data["distribution"], where, DISTRIBUTIONS)
    if not given.keys() & {"delay_ms", "jitter_ms", "loss", "rate_mbit"}:
        raise ctx.error(path, "impair needs at least one of delay_ms, jitter_ms, loss, rate_mbit")
    for key, needs in (
        ("jitter_ms", ("delay_ms",)),
        ("distribution", ("jitter_ms",)),
        ("correlation", ("jitter_ms", "loss")),
    ):
        if key in given and not given.keys() & set(needs):
            raise ctx.error(_at(path, key), f"needs {' or '.join(needs)}")
    direction = _choice(ctx, _or(data.get("direction"), "both"), _at(path, "direction"), DIRECTIONS)
    return Impairment(**given, direction=direction)


def _check_sequence(ctx: _Context, events: Sequence[Event], path: str) -> None:
    """Each event must find its target in the state it acts on (TRANSITIONS)."""
    state: dict[tuple[str, Any], tuple[bool, Event | None]] = {}
    for event in events:
        kind, needs, leaves = TRANSITIONS[event.action]
        target = frozenset(event.link) if event.link else (event.node or "scsc")
        name = "scsc" if kind == "stopped" else event.target
        now, since = state.get((kind, target), (False, None))
        if needs is not None and now != needs:
            if now:
                assert since is not None
                already = "already " if leaves is not None else ""
                where = f"{_item(path, since.index)}, {since.at_s:g} s"
                reason = f"{name} is {already}{kind} ({where})"
            else:
                reason = f"{name} is not {kind} at {event.at_s:g} s"
            raise ctx.error(_item(path, event.index), f"{event.action}: {reason}")
        if leaves is not None:
            state[kind, target] = (leaves, event)
