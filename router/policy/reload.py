"""Hot reload: a policy file watched for changes and SIGHUP.

A valid edit replaces the policy for new requests; requests already running
keep the policy object they started with. An invalid edit is logged with its
errors and the running policy stays.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from pathlib import Path

import structlog

from router.outcomes.metrics import POLICY_RELOADS
from router.policy.loader import PolicyError, load_policy
from router.policy.model import Policy

__all__ = ["PolicyWatcher"]

log = structlog.get_logger("router.policy")


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class PolicyWatcher:
    def __init__(self, path: Path, apply: Callable[[Policy], None], interval: float = 1.0) -> None:
        self.path = path
        self.apply = apply
        self.interval = interval
        self._stamp = _stamp(path)
        self._task: asyncio.Task[None] | None = None
        self._sighup = False

    def reload(self, reason: str = "change") -> bool:
        self._stamp = _stamp(self.path)
        try:
            policy = load_policy(self.path)
        except PolicyError as exc:
            POLICY_RELOADS.labels("invalid").inc()
            log.error(
                "policy_reload_rejected", path=str(self.path), reason=reason, errors=exc.messages
            )
            return False
        self.apply(policy)
        POLICY_RELOADS.labels("applied").inc()
        log.info("policy_reloaded", path=str(self.path), reason=reason)
        return True

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._poll())
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._on_sighup)
            self._sighup = True
        except (NotImplementedError, RuntimeError, ValueError):
            # Not the main thread (tests, embedded servers): file watching still works.
            pass

    def _on_sighup(self) -> None:
        self.reload("SIGHUP")

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            stamp = _stamp(self.path)
            if stamp is not None and stamp != self._stamp:
                self.reload("file changed")

    async def stop(self) -> None:
        if self._sighup:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            self._sighup = False
        if self._task is not None:
            self._task.cancel()
            self._task = None
