"""Experiments: one YAML file (docs/experiments.md), checked before anything starts."""

from dmsc.experiments.spec import (
    Calibration,
    Event,
    Experiment,
    Impairment,
    Variant,
    WorkloadSpec,
    describe,
    detect_netem,
    experiment_from_mapping,
    load_experiment,
    thresholds_after,
)

__all__ = [
    "Calibration",
    "Event",
    "Experiment",
    "Impairment",
    "Variant",
    "WorkloadSpec",
    "describe",
    "detect_netem",
    "experiment_from_mapping",
    "load_experiment",
    "thresholds_after",
]
