"""Topologies as data: the draft's Figure 2, generated shapes, and Topology Zoo imports."""

#: The built-in topologies by name (builders in dmsc.topologies.builders; kept here so the
#: command line can list them without importing networkx).
BUILT_IN = ("figure2", "linear", "ring", "fattree")
