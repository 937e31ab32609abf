"""Exceptions of the DMSC testbed: every bad input becomes one of these, with a clear message."""


class DmscError(Exception):
    """Base class of the project's errors."""


class InvalidName(DmscError, ValueError):
    """A string that is not a valid service prefix."""


class NameCollision(DmscError):
    """Two different names map to the same address prefix."""


class DecodeError(DmscError, ValueError):
    """Bytes off the wire that do not decode to a valid DMSC message."""


class ConfigError(DmscError, ValueError):
    """A configuration file or value that is refused before anything starts."""


class AuthenticationError(DmscError):
    """A claim or attestation that does not verify."""
