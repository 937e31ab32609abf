r"""The draft's Figure 2 as data: four pods, four SGs each with its SPA, an SR core, one SCSC.

The figure's ASCII art lost its line breaks, so the exact wiring is our reading of it: a triangle
of SRs, the top SGs on one SR each, the bottom SGs dual-homed (the figure's diagonal lines), so
that the failure of any link but the top SGs' access links reroutes instead of partitioning::

        pod1                  pod2
         |                     |
  spa1--sg1                   sg2--spa2
         |                     |
        sr1 ----------------- sr2
         |  \               /  |
         |   `---- sr3 ----'   |
         |        /   \        |
  spa3--sg3 -----'     '----- sg4--spa4
         |                     |
        pod3                  pod4

Pod 1 hosts A/1 and B/1, pod 4 hosts A/4 and B/4 (as in the figure); pods 2 and 3 ("...")
host C/2 and C/3. Every pod also answers for its services' anycast names (/A, /B, /C).
"""

from __future__ import annotations

import networkx as nx

from dmsc.topologies.spec import LinkSpec, PodSpec, TopologySpec

SERVICE_ROUTERS = ("sr1", "sr2", "sr3")
SERVICE_GATEWAYS = ("sg1", "sg2", "sg3", "sg4")
#: (a, b, cost) between SGs and SRs
LINKS = (
    ("sg1", "sr1", 10),
    ("sg2", "sr2", 10),
    ("sr1", "sr2", 10),
    ("sr1", "sr3", 10),
    ("sr2", "sr3", 10),
    ("sg3", "sr1", 10),
    ("sg3", "sr3", 10),
    ("sg4", "sr2", 10),
    ("sg4", "sr3", 10),
)
PODS = (
    PodSpec("pod1", "sg1", ("/A/1", "/B/1")),
    PodSpec("pod2", "sg2", ("/C/2",)),
    PodSpec("pod3", "sg3", ("/C/3",)),
    PodSpec("pod4", "sg4", ("/A/4", "/B/4")),
)
#: each SG asks its own SPA
SPAS = {f"spa{i}": f"sg{i}" for i in range(1, 5)}
SCSC = "scsc"


def spec() -> TopologySpec:
    return TopologySpec(
        name="figure2",
        gateways=SERVICE_GATEWAYS,
        routers=SERVICE_ROUTERS,
        links=tuple(LinkSpec(a, b, cost) for a, b, cost in LINKS),
        pods=PODS,
        spas=SPAS,
    )


def router_graph() -> nx.Graph:
    """SGs and SRs with ``cost`` on each link, the shape the link-state protocol sees."""
    return spec().router_graph()
