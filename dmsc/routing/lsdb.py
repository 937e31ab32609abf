"""The link-state database: one LSA per originator, ordered by freshness, aged on a clock.

Which of two copies of an LSA is newer (as in OSPF, RFC 2328 §13.1): the higher sequence number;
at equal sequence, a purge (lifetime 0) beats a live copy; at equal sequence and both live, the
larger content digest wins, so a restarted originator that reused a sequence number with other
content is resolved the same way on every node.

Sequence numbers run from 1 to ``MAX_SEQUENCE`` (``dmsc.proto.codec``; decoding refuses 0 and
anything above) and are compared linearly, never modulo: nothing is newer than a purge at
``MAX_SEQUENCE``. So an originator that must go past the maximum (it got there, or a copy of its
LSA at the maximum turned up) does as RFC 2328 §12.1.6 and ISO 10589 do: it purges its LSA at
``MAX_SEQUENCE``, waits until every node has forgotten that purge, and starts again at 1
(``LinkStateRouter._wrap_sequence``).

Aging: every node ages every LSA at the same rate, so when another node's LSA runs out each node
drops it by itself; only an originator floods a purge of its own LSA (only it can sign one).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

from dmsc.proto import dmsc_pb2


def content_digest(lsa: dmsc_pb2.LinkStateAdvertisement) -> bytes:
    """Digest of what an LSA says, independent of its remaining lifetime."""
    copy = dmsc_pb2.LinkStateAdvertisement()
    copy.CopyFrom(lsa)
    copy.lifetime_ms = 0
    return hashlib.blake2b(copy.SerializeToString(deterministic=True), digest_size=16).digest()


def compare(a: dmsc_pb2.LinkStateAdvertisement, b: dmsc_pb2.LinkStateAdvertisement) -> int:
    """>0 if ``a`` is newer than ``b``, <0 if older, 0 if the same instance."""
    if a.sequence != b.sequence:
        return 1 if a.sequence > b.sequence else -1
    a_purge, b_purge = a.lifetime_ms == 0, b.lifetime_ms == 0
    if a_purge != b_purge:
        return 1 if a_purge else -1
    if a_purge:
        return 0
    da, db = content_digest(a), content_digest(b)
    return (da > db) - (da < db)


@dataclass
class StoredLsa:
    """An LSA as held in the database; its age runs from ``installed_at``."""

    lsa: dmsc_pb2.LinkStateAdvertisement
    installed_at: float
    expires_at: float  # when the lifetime runs out; for a purge, when it is forgotten

    @property
    def is_purge(self) -> bool:
        return self.lsa.lifetime_ms == 0

    def remaining_ms(self, now: float) -> int:
        if self.is_purge:
            return 0
        return max(1, int((self.expires_at - now) * 1000))

    def wire_copy(self, now: float) -> dmsc_pb2.LinkStateAdvertisement:
        """The LSA as it is flooded at ``now``: with its remaining lifetime."""
        copy = dmsc_pb2.LinkStateAdvertisement()
        copy.CopyFrom(self.lsa)
        copy.lifetime_ms = self.remaining_ms(now)
        return copy


class LinkStateDatabase:
    """LSAs by originator."""

    def __init__(self) -> None:
        self._entries: dict[str, StoredLsa] = {}

    def get(self, originator: str) -> StoredLsa | None:
        return self._entries.get(originator)

    def install(self, lsa: dmsc_pb2.LinkStateAdvertisement, now: float, hold: float) -> StoredLsa:
        """Store ``lsa`` (a purge is kept ``hold`` seconds to outvote late old copies)."""
        lifetime = hold if lsa.lifetime_ms == 0 else lsa.lifetime_ms / 1000
        entry = StoredLsa(lsa=lsa, installed_at=now, expires_at=now + lifetime)
        self._entries[lsa.originator] = entry
        return entry

    def remove(self, originator: str) -> None:
        self._entries.pop(originator, None)

    def hold(self, originator: str, until: float) -> None:
        """Keep ``originator``'s entry (a purge being waited out) until ``until``."""
        entry = self._entries.get(originator)
        if entry is not None:
            entry.expires_at = until

    def live(self) -> Iterator[StoredLsa]:
        """LSAs that count for SPF: not purged."""
        return (e for e in self._entries.values() if not e.is_purge)

    def __iter__(self) -> Iterator[StoredLsa]:
        return iter(list(self._entries.values()))

    def __len__(self) -> int:
        return len(self._entries)

    def next_expiry(self) -> float | None:
        return min((e.expires_at for e in self._entries.values()), default=None)
