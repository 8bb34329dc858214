"""Offline replay of decision records against a candidate policy, live re-sends and retraining.

`router replay` answers "what would this policy have done with last week's
traffic?" by running the very `decide()` the live router runs on each recorded
request, then pricing and scoring the outcome from what the records know.
"""

from router.replay.convert import convert_routing_rows, parse_label_map
from router.replay.engine import Replay, ReplayResult, replay
from router.replay.labels import Labels, labels_of
from router.replay.records import RecordSet, load_records

__all__ = [
    "Labels",
    "RecordSet",
    "Replay",
    "ReplayResult",
    "convert_routing_rows",
    "labels_of",
    "load_records",
    "parse_label_map",
    "replay",
]
