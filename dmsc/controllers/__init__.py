"""SCSC, the scheduling center: pure decision logic, and (elsewhere in this package) the os-ken
application and launcher around it.

- :mod:`dmsc.controllers.thresholds`  QoS thresholds per service and which a quality crosses
- :mod:`dmsc.controllers.decision`    :func:`decide` (topology + telemetry + thresholds +
  previous choices -> choices, policies, records) and :func:`diff`

Nothing imported here needs os-ken. See ``docs/scheduling.md``.
"""

from dmsc.controllers.decision import (
    Choice,
    Decision,
    DecisionInputs,
    DecisionRecord,
    LinkQuality,
    PolicyIntent,
    SchedulerConfig,
    Topology,
    decide,
    demand_from_telemetry,
    diff,
    policy_cookie,
)
from dmsc.controllers.thresholds import (
    DEFAULT_THRESHOLDS,
    Crossing,
    Thresholds,
    ThresholdTable,
    crossings,
)

__all__ = [
    "DEFAULT_THRESHOLDS",
    "Choice",
    "Crossing",
    "Decision",
    "DecisionInputs",
    "DecisionRecord",
    "LinkQuality",
    "PolicyIntent",
    "SchedulerConfig",
    "ThresholdTable",
    "Thresholds",
    "Topology",
    "crossings",
    "decide",
    "demand_from_telemetry",
    "diff",
    "policy_cookie",
]
