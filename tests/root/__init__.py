"""Tests that need root: network namespaces, veths, AF_PACKET (CI runs them as root)."""
