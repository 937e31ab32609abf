"""The SPA's decision: may this pod own this service prefix? (sans-I/O; gRPC lives in service.py)

An :class:`SpaAuthority` takes an ``AuthRequest`` and the current time and returns an
``AuthReply``: accept with a signed attestation, or reject with a ``RejectCode`` and a reason that
names the pod, the prefix and what was wrong. The checks run in this order::

    1. malformed claim bytes        -> REJECT_MALFORMED
    2. invalid service name         -> REJECT_BAD_NAME
    3. claim names another SG       -> REJECT_WRONG_GATEWAY
    4. pod not in the policy        -> REJECT_UNKNOWN_POD
    5. claim not signed by the pod  -> REJECT_BAD_SIGNATURE
    6. timestamp outside the window -> REJECT_STALE_CLAIM
    7. policy does not allow it     -> REJECT_NOT_ALLOWED
    8. name's address already taken -> REJECT_COLLISION

Names accepted once stay registered, so a later colliding name is refused while the same name may
be authenticated again (renewal, or another pod hosting the same service). The authority is not
thread-safe; the gRPC adapter serializes calls.
"""

from __future__ import annotations

import logging

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from dmsc.errors import DecodeError, InvalidName, NameCollision
from dmsc.names import NameRegistry, ServiceName
from dmsc.proto import dmsc_pb2
from dmsc.spa.claims import (
    format_time,
    freshness_problem,
    issue_attestation,
    open_claim,
    quoted,
    verify_claim_signature,
)
from dmsc.spa.keys import key_id, raw_public_bytes
from dmsc.spa.policy import SpaPolicy

log = logging.getLogger(__name__)

ACCEPTED = "ACCEPTED"
#: Requests whose bytes are not an AuthRequest (counted by the gRPC adapter, which decodes).
UNDECODABLE = "UNDECODABLE"
#: Longest reason sent back or logged: a request cannot make the SPA echo megabytes.
MAX_REASON = 400
RejectCode = dmsc_pb2.RejectCode


class _Reject(Exception):
    """Internal: one failed check, carried to :meth:`SpaAuthority.authenticate`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class SpaAuthority:
    """Checks prefix claims against an :class:`SpaPolicy` and signs attestations."""

    def __init__(
        self,
        policy: SpaPolicy,
        private_key: Ed25519PrivateKey,
        registry: NameRegistry | None = None,
    ) -> None:
        self.policy = policy
        self._private_key = private_key
        self._public_key = private_key.public_key()
        self._key_id = key_id(self._public_key)
        self.registry = registry if registry is not None else NameRegistry()
        self.counters: dict[str, int] = {ACCEPTED: 0, UNDECODABLE: 0}
        self.counters.update({RejectCode.Name(code): 0 for code in RejectCode.values()})

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._public_key

    @property
    def key_id(self) -> str:
        return self._key_id

    def authenticate(self, request: dmsc_pb2.AuthRequest, now: float) -> dmsc_pb2.AuthReply:
        """Decide on one request at time ``now``; never raises for bad input."""
        try:
            claim, name = self._checked_claim(request, now)
        except _Reject as reject:
            return self._reject(reject)
        attestation = issue_attestation(
            self._private_key,
            name,
            claim.pod_id,
            claim.sg_node_id,
            now,
            self.policy.attestation_validity_s,
        )
        self.counters[ACCEPTED] += 1
        reason = (
            f"pod {claim.pod_id!r} owns {name} behind SG {quoted(claim.sg_node_id)} until "
            f"{format_time(now + self.policy.attestation_validity_s)}"
        )
        log.info("SPA accepted: %s", reason)
        # The SG keeps the pod's key with the lease, to check that a Withdraw is the pod's own.
        pod_key = raw_public_bytes(self.policy.identities[claim.pod_id].public_key)
        return dmsc_pb2.AuthReply(
            accepted=True, reason=reason, attestation=attestation, pod_public_key=pod_key
        )

    def _reject(self, reject: _Reject) -> dmsc_pb2.AuthReply:
        self.counters[RejectCode.Name(reject.code)] += 1
        reason = reject.reason
        if len(reason) > MAX_REASON:
            reason = reason[: MAX_REASON - 3] + "..."
        log.warning("SPA rejected (%s): %s", RejectCode.Name(reject.code), reason)
        return dmsc_pb2.AuthReply(accepted=False, code=reject.code, reason=reason)

    def _checked_claim(
        self, request: dmsc_pb2.AuthRequest, now: float
    ) -> tuple[dmsc_pb2.PrefixClaim, ServiceName]:
        """Run every check in order; raise :class:`_Reject` at the first failure."""
        claim = self._decode(request)
        name = self._check_name(claim)
        who = f"pod {quoted(claim.pod_id)} claiming {name}"
        if claim.sg_node_id != request.sg_node_id:
            raise _Reject(
                RejectCode.REJECT_WRONG_GATEWAY,
                f"{who}: the claim names SG {quoted(claim.sg_node_id)} but SG "
                f"{quoted(request.sg_node_id)} sent it",
            )
        identity = self.policy.identities.get(claim.pod_id)
        if identity is None:
            raise _Reject(RejectCode.REJECT_UNKNOWN_POD, f"{who}: no such pod in the SPA policy")
        if not verify_claim_signature(request.claim, identity.public_key):
            raise _Reject(
                RejectCode.REJECT_BAD_SIGNATURE,
                f"{who}: claim is not signed by the pod's key {key_id(identity.public_key)}",
            )
        self._check_fresh(claim, who, now)
        if not identity.allows(name):
            raise _Reject(
                RejectCode.REJECT_NOT_ALLOWED,
                f"{who}: the policy does not give it {name} "
                f"(allowed: {', '.join(identity.allowed) or 'nothing'})",
            )
        self._register(name, who)
        return claim, name

    @staticmethod
    def _decode(request: dmsc_pb2.AuthRequest) -> dmsc_pb2.PrefixClaim:
        if not request.sg_node_id:
            raise _Reject(RejectCode.REJECT_MALFORMED, "request names no SG (empty sg_node_id)")
        if not request.claim.claim:
            raise _Reject(
                RejectCode.REJECT_MALFORMED,
                f"request from SG {quoted(request.sg_node_id)} carries no claim",
            )
        try:
            return open_claim(request.claim)
        except DecodeError as error:
            raise _Reject(
                RejectCode.REJECT_MALFORMED, f"from SG {quoted(request.sg_node_id)}: {error}"
            ) from None

    @staticmethod
    def _check_name(claim: dmsc_pb2.PrefixClaim) -> ServiceName:
        try:
            return ServiceName.parse(claim.name)
        except InvalidName as error:
            raise _Reject(
                RejectCode.REJECT_BAD_NAME, f"pod {quoted(claim.pod_id)}: {error}"
            ) from None

    def _check_fresh(self, claim: dmsc_pb2.PrefixClaim, who: str, now: float) -> None:
        window = self.policy.claim_window_s
        offset = freshness_problem(claim.timestamp, now, window)
        if offset is not None:
            raise _Reject(
                RejectCode.REJECT_STALE_CLAIM,
                f"{who}: claim timestamp {format_time(claim.timestamp)} is {offset} by the SPA's "
                f"clock ({format_time(now)}); accepted window is +/-{window:g} s "
                "(replay or clock skew?)",
            )

    def _register(self, name: ServiceName, who: str) -> None:
        try:
            self.registry.register(name)
        except NameCollision as error:
            raise _Reject(RejectCode.REJECT_COLLISION, f"{who}: {error}") from None
