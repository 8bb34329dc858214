"""The routing policy: its model, its YAML loader and the pure `decide()`."""

from router.policy.decide import Decision, RequestFacts, decide
from router.policy.loader import PolicyError, default_policy_path, load_policy, parse_policy
from router.policy.model import Policy, Route, Upstream

__all__ = [
    "Decision",
    "Policy",
    "PolicyError",
    "RequestFacts",
    "Route",
    "Upstream",
    "decide",
    "default_policy_path",
    "load_policy",
    "parse_policy",
]
