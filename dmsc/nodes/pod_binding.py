"""Type 1 binds the caller: only the pod that holds a lease may renew or withdraw it (sans-I/O).

The SG recognises a pod twice over:

- by its interface: a pod sits on one of the SG's pod links (config ``pod_interfaces``) and all
  of its leases are on the interface its first lease came over. A request for that pod over any
  other interface, or over no pod link at all, is refused.
- by its key: when the SPA accepts a claim it returns the pod's public key, and the lease keeps
  it. A Withdraw must be signed with that key, name this SG, carry a timestamp within
  :data:`~dmsc.spa.claims.CLAIM_WINDOW_S` of the SG's clock (the SPA's rule for claims) and a
  nonce not used within that window.

An Announce needs no signature of its own: every claim in it is signed by the pod and checked by
the SPA; the SG makes sure each claim is the requesting pod's, so a lease is never recorded under
a pod id the caller merely asserted.

:class:`PodBinding` decides and reads no clock (``now`` is passed in); a refusal is a
:class:`Refused` with a ``kind`` (a counter name) and a reason naming what failed. The gRPC
servicer (:mod:`dmsc.nodes.gateway`) only turns refusals into PERMISSION_DENIED.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from dmsc.errors import DecodeError
from dmsc.nodes.leases import LeaseTable
from dmsc.proto import dmsc_pb2
from dmsc.spa.claims import (
    CLAIM_WINDOW_S,
    format_time,
    freshness_problem,
    open_claim,
    quoted,
    verify_claim_signature,
    verify_withdrawal_signature,
)
from dmsc.spa.keys import PUBLIC_KEY_BYTES, key_id

WRONG_INTERFACE = "wrong_interface"
NOT_LEASE_HOLDER = "not_lease_holder"
BAD_SIGNATURE = "bad_signature"
WRONG_GATEWAY = "wrong_gateway"
STALE = "stale"
REPLAYED = "replayed"
#: How each kind reads at the start of a refusal's details.
LABELS = {
    WRONG_INTERFACE: "wrong interface",
    NOT_LEASE_HOLDER: "not the lease holder",
    BAD_SIGNATURE: "bad signature",
    WRONG_GATEWAY: "wrong SG",
    STALE: "stale",
    REPLAYED: "replayed",
}
#: Names quoted in one reason; the rest are counted.
NAMES_SHOWN = 5


class Refused(Exception):
    """A request that is not from the pod it names (or not fresh, or replayed)."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(f"{LABELS[kind]}: {reason}")
        self.kind = kind
        self.reason = reason


def _show_names(names: list[str]) -> str:
    shown = ", ".join(quoted(name) for name in names[:NAMES_SHOWN])
    more = len(names) - NAMES_SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


def _public_key(raw: bytes) -> Ed25519PublicKey | None:
    if len(raw) != PUBLIC_KEY_BYTES:
        return None
    return Ed25519PublicKey.from_public_bytes(raw)


def pod_key_problem(signed: dmsc_pb2.SignedClaim, raw_key: bytes) -> str | None:
    """Why the key an SPA returned with its accept cannot be kept for the pod, or None.

    The SG checks that the key verifies the very claim it forwarded: a reply altered on the way
    (the SG-SPA channel has no TLS) cannot plant a key that would let its author withdraw the
    pod's prefixes.
    """
    key = _public_key(raw_key)
    if key is None:
        return f"the SPA returned no valid pod key ({len(raw_key)} bytes)"
    if not verify_claim_signature(signed, key):
        return f"the pod key the SPA returned ({key_id(key)}) did not sign the claim"
    return None


class NonceMemory:
    """Nonces of accepted withdrawals, per pod, kept while a request carrying them would still be
    fresh; after that the freshness check refuses a replay on its own."""

    def __init__(self) -> None:
        self._until: dict[tuple[str, bytes], float] = {}

    def seen(self, pod_id: str, nonce: bytes, now: float) -> bool:
        self._forget_before(now)
        return (pod_id, nonce) in self._until

    def remember(self, pod_id: str, nonce: bytes, until: float) -> None:
        self._until[(pod_id, nonce)] = until

    def _forget_before(self, now: float) -> None:
        for key in [key for key, until in self._until.items() if until < now]:
            del self._until[key]

    def __len__(self) -> int:
        return len(self._until)


class PodBinding:
    """Decides whether an Announce or a Withdraw comes from the pod it names."""

    def __init__(
        self,
        sg_node_id: str,
        pod_interfaces: Iterable[str],
        window_s: float = CLAIM_WINDOW_S,
        pod_links: Mapping[str, str] | None = None,
    ) -> None:
        """``pod_links`` (interface -> pod id), when the SG's configuration says which pod sits
        on which link, binds each pod to its link from its first request on."""
        self.sg_node_id = sg_node_id
        self.pod_interfaces = tuple(pod_interfaces)
        self.pod_links = dict(pod_links or {})
        self.window_s = window_s
        self.nonces = NonceMemory()

    def check_interface(self, leases: LeaseTable, pod_id: str, interface: str | None) -> None:
        """The request came over a pod link, and over the one the pod's leases are on."""
        pod = quoted(pod_id)
        if interface not in self.pod_interfaces:
            raise Refused(
                WRONG_INTERFACE,
                f"request for pod {pod} came over {interface or 'an unknown interface'}, which "
                f"is not a pod link of SG {self.sg_node_id} ({', '.join(self.pod_interfaces)})",
            )
        owner = self.pod_links.get(interface)
        if self.pod_links and owner != pod_id:
            raise Refused(
                WRONG_INTERFACE,
                f"request for pod {pod} came over {interface}, the link of "
                f"{'pod ' + quoted(owner) if owner else 'no pod'}",
            )
        held = leases.leases_of(pod_id)
        if held and held[0].interface != interface:  # all of a pod's leases share one
            raise Refused(
                WRONG_INTERFACE,
                f"pod {pod} holds its leases at SG {self.sg_node_id} via {held[0].interface}, "
                f"but this request came via {interface}",
            )

    def check_announce(
        self, leases: LeaseTable, request: dmsc_pb2.AnnounceRequest, interface: str | None
    ) -> None:
        """Raise :class:`Refused` unless the Announce may come from ``interface``.

        Undecodable claims are left to the caller, which rejects them one by one.
        """
        self.check_interface(leases, request.pod_id, interface)
        for signed in request.claims:
            try:
                claim = open_claim(signed)
            except DecodeError:
                continue
            if claim.pod_id != request.pod_id:
                raise Refused(
                    NOT_LEASE_HOLDER,
                    f"pod {quoted(request.pod_id)} sent a claim on {quoted(claim.name)} made by "
                    f"pod {quoted(claim.pod_id)}: a pod announces only its own claims",
                )

    def accept_withdraw(
        self,
        leases: LeaseTable,
        request: dmsc_pb2.WithdrawRequest,
        interface: str | None,
        now: float,
    ) -> list[str]:
        """The names to release, or :class:`Refused`. Checks, in order: interface, lease holder,
        signature, SG, freshness, nonce, names held. Accepting uses up the nonce."""
        pod = quoted(request.pod_id)
        self.check_interface(leases, request.pod_id, interface)
        held = leases.leases_of(request.pod_id)
        if not held:
            raise Refused(
                NOT_LEASE_HOLDER,
                f"pod {pod} holds no lease at SG {self.sg_node_id}: it has nothing to withdraw",
            )
        self._check_signature(request, [lease.pod_public_key for lease in held])
        self._check_addressed_and_fresh(request, now)
        self._check_nonce(request, now)
        held_names = [lease.name for lease in held]
        names = list(dict.fromkeys(request.names)) or held_names
        missing = [name for name in names if name not in held_names]
        if missing:
            raise Refused(
                NOT_LEASE_HOLDER,
                f"pod {pod} does not hold {_show_names(missing)} at SG {self.sg_node_id} "
                f"(it holds {_show_names(held_names)})",
            )
        self.nonces.remember(request.pod_id, request.nonce, request.timestamp + self.window_s)
        return names

    @staticmethod
    def _check_signature(request: dmsc_pb2.WithdrawRequest, raw_keys: list[bytes]) -> None:
        # Normally one key: the SPA's policy maps a pod id to one key.
        keys = [key for key in map(_public_key, dict.fromkeys(raw_keys)) if key is not None]
        if not any(verify_withdrawal_signature(request, key) for key in keys):
            known = ", ".join(key_id(key) for key in keys) or "none (the SPA gave no key)"
            raise Refused(
                BAD_SIGNATURE,
                f"withdrawal for pod {quoted(request.pod_id)} is not signed by the pod's key "
                f"(known: {known})",
            )

    def _check_addressed_and_fresh(self, request: dmsc_pb2.WithdrawRequest, now: float) -> None:
        pod = quoted(request.pod_id)
        if request.sg_node_id != self.sg_node_id:
            raise Refused(
                WRONG_GATEWAY,
                f"withdrawal by pod {pod} names SG {quoted(request.sg_node_id)}, but this is SG "
                f"{self.sg_node_id}",
            )
        offset = freshness_problem(request.timestamp, now, self.window_s)
        if offset is not None:
            raise Refused(
                STALE,
                f"withdrawal by pod {pod}: timestamp {format_time(request.timestamp)} is {offset} "
                f"by SG {self.sg_node_id}'s clock ({format_time(now)}); accepted window is "
                f"+/-{self.window_s:g} s (replay or clock skew?)",
            )

    def _check_nonce(self, request: dmsc_pb2.WithdrawRequest, now: float) -> None:
        pod = quoted(request.pod_id)
        if not request.nonce:
            raise Refused(
                REPLAYED,
                f"withdrawal by pod {pod} carries no nonce, so it cannot be told from a replay",
            )
        if self.nonces.seen(request.pod_id, request.nonce, now):
            raise Refused(
                REPLAYED,
                f"withdrawal by pod {pod}: nonce {request.nonce[:16].hex()} was already used "
                f"within the last {self.window_s:g} s",
            )
