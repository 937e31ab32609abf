"""DMSC testbed: Distributed Micro Service Communication (draft-li-dmsc-architecture) on Mininet."""

__version__ = "0.1.0"
