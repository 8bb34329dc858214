"""The `/ui` status page: one process's view of routing, savings, cache and health."""

from router.ui.page import StatusPage

__all__ = ["StatusPage"]
