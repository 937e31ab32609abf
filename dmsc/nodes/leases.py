"""An SG's pods and the prefixes they hold, each on a lease (sans-I/O, time passed in).

A name stays advertised while at least one pod behind this SG holds a live lease on it (two pods
on one SG may both serve ``/B``); local delivery goes to the pods that hold it. A lease also
remembers how to recognise its holder: the interface it came over and the pod's public key, as
the SPA gave it (see :mod:`dmsc.nodes.pod_binding`).
"""

from __future__ import annotations

from dataclasses import dataclass

from dmsc.proto import dmsc_pb2


@dataclass(frozen=True)
class Lease:
    name: str
    pod_id: str
    interface: str  # the SG's link to the pod
    pod_mac: bytes  # where the forwarder delivers
    attestation: dmsc_pb2.Attestation
    expires_at: float
    pod_public_key: bytes = b""  # raw Ed25519, from the SPA: checks the pod's Withdraw


class LeaseTable:
    def __init__(self) -> None:
        self._leases: dict[tuple[str, str], Lease] = {}  # (name, pod) -> lease

    def grant(self, lease: Lease) -> bool:
        """Record or renew; True if the name was not held before (it must be advertised)."""
        new_name = not self.holders(lease.name)
        self._leases[(lease.name, lease.pod_id)] = lease
        return new_name

    def release(self, name: str, pod_id: str) -> bool:
        """Drop one pod's lease; True if nobody holds the name any more (withdraw it)."""
        self._leases.pop((name, pod_id), None)
        return not self.holders(name)

    def expire(self, now: float) -> list[str]:
        """Drop leases that ran out; the names nobody holds any more."""
        gone = [key for key, lease in self._leases.items() if lease.expires_at <= now]
        names = {name for name, _ in gone}
        for key in gone:
            del self._leases[key]
        return sorted(name for name in names if not self.holders(name))

    def holders(self, name: str) -> list[Lease]:
        return sorted(
            (lease for (held, _), lease in self._leases.items() if held == name),
            key=lambda lease: lease.pod_id,
        )

    def names_of(self, pod_id: str) -> list[str]:
        return sorted(name for name, pod in self._leases if pod == pod_id)

    def leases_of(self, pod_id: str) -> list[Lease]:
        return [self._leases[(name, pod_id)] for name in self.names_of(pod_id)]

    def latest_attestation(self, name: str) -> dmsc_pb2.Attestation | None:
        """The attestation to advertise: the one that lasts longest among the holders."""
        holders = self.holders(name)
        return max(holders, key=lambda lease: lease.expires_at).attestation if holders else None

    def next_expiry(self) -> float | None:
        return min((lease.expires_at for lease in self._leases.values()), default=None)

    def __iter__(self):
        return iter(sorted(self._leases.values(), key=lambda lease: (lease.name, lease.pod_id)))
