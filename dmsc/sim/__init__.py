"""In-memory simulation of DMSC link-state nodes on a virtual clock."""

from dmsc.sim.network import DEFAULT_START, Delivery, SimLink, SimNetwork, network_from_graph

__all__ = ["DEFAULT_START", "Delivery", "SimLink", "SimNetwork", "network_from_graph"]
