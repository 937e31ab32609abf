"""Topologies as data: the draft's Figure 2, generated shapes, and Topology Zoo imports."""
