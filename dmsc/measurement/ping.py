"""``ping -D`` output as data (sans-I/O): every request's send time and RTT, lost ones included.

iputils' ``ping -6 -n -D`` prints each reply's arrival time (``[1796637628.358416]``) and its
RTT; a request that got no reply prints nothing. So each answered request's send time is the
arrival less the RTT, and an unanswered one's is interpolated between its answered neighbours
(ping sends at a steady interval). The summary line gives how many requests left.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Mapping
from dataclasses import dataclass

_TIMED_REPLY = re.compile(r"^\[(\d+\.\d+)\] .*icmp_seq=(\d+) .*time=([\d.]+) ms", re.M)
_SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) received")


@dataclass(frozen=True)
class Reply:
    seq: int
    sent_at: float  # wall clock, seconds (every namespace of one kernel shares the clock)
    rtt_ms: float


@dataclass(frozen=True)
class Request:
    """One echo request: when it left, and its RTT (None: no reply)."""

    seq: int
    sent_at: float
    rtt_ms: float | None


def parse_ping_counts(output: str) -> tuple[int, int]:
    """(transmitted, received) from ping's summary line."""
    match = _SUMMARY.search(output)
    if not match:
        raise ValueError("no ping summary line in the output")
    return int(match.group(1)), int(match.group(2))


def parse_timed_replies(output: str) -> dict[int, Reply]:
    """Replies of ``ping -D`` by sequence number (duplicates ignored), with their send time:
    the arrival time printed less the RTT."""
    replies: dict[int, Reply] = {}
    for arrived, seq, rtt in _TIMED_REPLY.findall(output):
        number = int(seq)
        if number not in replies:
            replies[number] = Reply(number, float(arrived) - float(rtt) / 1000, float(rtt))
    return replies


def send_times(replies: Mapping[int, Reply], transmitted: int, interval: float) -> list[float]:
    """When each request 1..transmitted left: from its reply, else interpolated between the
    nearest answered ones (ping sends at a steady interval)."""
    known = sorted(replies)
    if not known:
        return []
    times = []
    for seq in range(1, transmitted + 1):
        if seq in replies:
            times.append(replies[seq].sent_at)
            continue
        at = bisect.bisect(known, seq)
        before, after = known[max(0, at - 1)], known[min(len(known) - 1, at)]
        if before < seq < after:
            span = (replies[after].sent_at - replies[before].sent_at) / (after - before)
            times.append(replies[before].sent_at + span * (seq - before))
        else:
            anchor = before if before < seq else after
            times.append(replies[anchor].sent_at + interval * (seq - anchor))
    return times


def requests(output: str, interval: float, started_at: float) -> list[Request]:
    """Every request of one ``ping -D`` run, answered or not. With no reply at all the send
    times are ``started_at`` plus the interval (nothing better is known). A truncated output
    (no summary line: the ping was killed) counts the requests up to the last reply."""
    replies = parse_timed_replies(output)
    try:
        transmitted, _ = parse_ping_counts(output)
    except ValueError:
        transmitted = max(replies, default=0)
    times = send_times(replies, transmitted, interval) or [
        started_at + interval * index for index in range(transmitted)
    ]
    return [
        Request(seq, sent_at, replies[seq].rtt_ms if seq in replies else None)
        for seq, sent_at in enumerate(times, start=1)
    ]
