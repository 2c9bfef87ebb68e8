"""Metrics on the scored steps only, each declared once (:mod:`stm_lab.metrics.definitions`)."""

from stm_lab.metrics.definitions import METRICS, MetricDef, ScoreSet, evaluate, metric_of
from stm_lab.metrics.generated import GENERATED_METRICS  # registers the generated-sequence metrics
from stm_lab.metrics.scored import Scored, scored_positions
from stm_lab.metrics.scores import (
    LagR2,
    MemoryCapacity,
    PositiveRecall,
    SequenceAccuracy,
    SerialPositionAccuracy,
)
from stm_lab.metrics.training import TrainingScores

__all__ = ["GENERATED_METRICS", "METRICS", "LagR2", "MemoryCapacity", "MetricDef", "PositiveRecall", "ScoreSet", "Scored",
           "SequenceAccuracy", "SerialPositionAccuracy", "TrainingScores", "evaluate", "metric_of",
           "scored_positions"]
