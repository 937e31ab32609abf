from dataclasses import dataclass

import pytest

from dmsc.proto import dmsc_pb2
from dmsc.spa.claims import AttestationVerifier, issue_attestation
from dmsc.spa.keys import demo_private_key


@dataclass
class Spa:
    """A test SPA: signs attestations; ``verifier`` trusts only its key."""

    key = demo_private_key("test-spa")

    @property
    def verifier(self) -> AttestationVerifier:
        return AttestationVerifier.from_public_keys([self.key.public_key()])

    def attest(
        self, name: str, sg: str, now: float, validity: float = 3600.0
    ) -> dmsc_pb2.Attestation:
        return issue_attestation(self.key, name, f"pod-{sg}", sg, now, validity)


@pytest.fixture
def spa() -> Spa:
    return Spa()
