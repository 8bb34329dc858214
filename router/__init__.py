"""hybrid-router: route OpenAI-API traffic between a self-hosted model and a cloud API."""

from router.app import RouterMiddleware, create_app
from router.features import Features
from router.outcomes.record import DecisionRecord
from router.pipeline import Router
from router.policy import (
    Decision,
    Policy,
    PolicyError,
    RequestFacts,
    decide,
    load_policy,
    parse_policy,
)

__version__ = "0.1.0"

__all__ = [
    "Decision",
    "DecisionRecord",
    "Features",
    "Policy",
    "PolicyError",
    "RequestFacts",
    "Router",
    "RouterMiddleware",
    "__version__",
    "create_app",
    "decide",
    "load_policy",
    "parse_policy",
]
