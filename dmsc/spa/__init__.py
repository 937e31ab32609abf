"""Service Prefix Authentication (SPA): may this pod own this service prefix?

Sans-I/O cores, each importable on its own:

- :mod:`dmsc.spa.keys`      Ed25519 keys, key ids, text and PEM forms
- :mod:`dmsc.spa.claims`    signed prefix claims, attestations and their verifier
- :mod:`dmsc.spa.policy`    the YAML policy of pods, keys and allowed prefixes
- :mod:`dmsc.spa.authority` the SPA's decision on one request

and one thin adapter, :mod:`dmsc.spa.service` (gRPC server and client). See ``docs/spa.md``.
"""

from dmsc.spa.authority import SpaAuthority
from dmsc.spa.claims import AttestationVerifier, issue_attestation, open_claim, sign_claim
from dmsc.spa.policy import PodIdentity, SpaPolicy, load_policy, parse_policy

__all__ = [
    "AttestationVerifier",
    "PodIdentity",
    "SpaAuthority",
    "SpaPolicy",
    "issue_attestation",
    "load_policy",
    "open_claim",
    "parse_policy",
    "sign_claim",
]
