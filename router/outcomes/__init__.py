"""What happened to each request: the decision record, its sinks, and metrics."""

from router.outcomes.record import SCHEMA_VERSION, DecisionRecord
from router.outcomes.sinks import JsonlSink, NullSink, Sink

__all__ = ["SCHEMA_VERSION", "DecisionRecord", "JsonlSink", "NullSink", "Sink"]
