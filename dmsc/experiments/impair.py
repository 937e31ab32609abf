"""Link impairments as data: the exact ``tc`` commands, built before they run and recorded.

netem does delay, jitter (with a distribution and correlation), loss and rate in one qdisc;
a rate alone is shaped with HTB, which every kernel here has. Commands go on the egress of the
link's ends: ``both`` directions (the default), or ``forward`` (out of the link's first node) or
``backward``. Clearing deletes the root qdisc and puts back the topology's own shaping (a link
with ``bandwidth_mbps`` is an HTB link from the start, as Mininet's TCLink made it).
"""

from __future__ import annotations

from dataclasses import dataclass

Command = list[str]


@dataclass(frozen=True)
class LinkEnd:
    node: str
    interface: str


def _ms(value: float) -> str:
    return f"{value:g}ms"


def netem_arguments(impairment) -> list[str]:
    """netem's options, in tc's order: delay [jitter [correlation]] [distribution] loss rate."""
    arguments = []
    if impairment.delay_ms is not None:
        arguments += ["delay", _ms(impairment.delay_ms)]
        if impairment.jitter_ms:
            arguments.append(_ms(impairment.jitter_ms))
            if impairment.correlation is not None:
                arguments.append(f"{impairment.correlation * 100:g}%")
            if impairment.distribution:
                arguments += ["distribution", impairment.distribution]
    if impairment.loss:
        arguments += ["loss", f"{impairment.loss * 100:g}%"]
        if impairment.correlation is not None and not impairment.jitter_ms:
            arguments.append(f"{impairment.correlation * 100:g}%")
    if impairment.rate_mbit is not None:
        arguments += ["rate", f"{impairment.rate_mbit:g}mbit"]
    return arguments


def htb_commands(interface: str, rate_mbit: float) -> list[Command]:
    rate = f"{rate_mbit:g}mbit"
    return [
        ["tc", "qdisc", "replace", "dev", interface, "root", "handle", "1:", "htb", "default", "1"],
        ["tc", "class", "replace", "dev", interface, "parent", "1:", "classid", "1:1", "htb",
         "rate", rate, "ceil", rate],
    ]  # fmt: skip


def impair_commands(interface: str, impairment) -> list[Command]:
    if impairment.needs_netem:
        return [["tc", "qdisc", "replace", "dev", interface, "root", "netem",
                 *netem_arguments(impairment)]]  # fmt: skip
    return htb_commands(interface, impairment.rate_mbit)


def clear_commands(interface: str, bandwidth_mbps: float | None) -> list[Command]:
    commands = [["tc", "qdisc", "del", "dev", interface, "root"]]
    if bandwidth_mbps:
        commands += htb_commands(interface, bandwidth_mbps)
    return commands


def ends_for(link: tuple[str, str], direction: str, interface_toward) -> list[LinkEnd]:
    """The egress ends an impairment of ``link`` goes on."""
    a, b = link
    forward = LinkEnd(a, interface_toward(a, b))
    backward = LinkEnd(b, interface_toward(b, a))
    return {"both": [forward, backward], "forward": [forward], "backward": [backward]}[direction]
