from __future__ import annotations

import json
import random
import socket
import subprocess
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from servers import FakeUpstream, serve

from router.app import create_app


@dataclass
class Stack:
    """A router on loopback in front of two fake upstreams, "local" and "cloud"."""

    url: str
    local: FakeUpstream
    cloud: FakeUpstream
    policy_path: Path
    records_path: Path
    app: Any
    local_url: str
    cloud_url: str

    def records(self) -> list[dict[str, Any]]:
        # A record is written just after the response is sent: wait for idle first.
        deadline = time.time() + 5
        while self.app.runtime.in_flight and time.time() < deadline:
            time.sleep(0.01)
        self.app.runtime.sink.flush()
        if not self.records_path.exists():
            return []
        # Lines end at "\n" only: splitlines() would also cut at U+2028 and friends,
        # which JSON strings may hold unescaped.
        text = self.records_path.read_text()
        return [json.loads(line) for line in text.split("\n") if line]

    def write_policy(self, text: str) -> None:
        self.policy_path.write_text(text)


POLICY = """
version: 1
auth:
  tenant_header: x-tenant-id
upstreams:
  local:
    base_url: {local}/v1
    model: small-local
    api_key: local-secret-key
    price: {{input: 0.1, output: 0.2}}
    retries: 1
    backoff: 0.001
    timeouts: {{connect: 1, first_byte: 2, total: 5}}
    breaker: {{failures: 3, cooldown: 0.5}}
  cloud:
    base_url: {cloud}/v1
    model: big-cloud
    api_key: sk-cloud-secret-key-123
    price: {{input: 2.0, output: 8.0}}
    retries: 2
    backoff: 0.001
    timeouts: {{connect: 1, first_byte: 2, total: 5}}
models: [auto, gpt-4o]
routes:
  - name: pinned-cloud
    match: {{headers: {{x-route: cloud}}}}
    target: cloud
  - name: vip
    match: {{tenant: [vip]}}
    target: cloud
  - name: gpt4-name
    match: {{model: gpt-4o}}
    target: cloud
  - name: long
    match: {{prompt_chars: {{gt: 2000}}}}
    target: cloud
    fallbacks: [local]
default:
  target: local
  fallbacks: [cloud]
record:
  path: {records}
  prompts: {prompts}
"""


def policy_text(
    local: str, cloud: str, records: Path, prompts: bool = False, extra: str = ""
) -> str:
    return POLICY.format(
        local=local, cloud=cloud, records=records, prompts=str(prompts).lower()
    ) + textwrap.dedent(extra)


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    contexts: list[Any] = []

    def make(
        prompts: bool = False, policy: str | None = None, chunks: int = 8, scoring: bool = False
    ) -> Stack:
        local, cloud = FakeUpstream("local", chunks), FakeUpstream("cloud", chunks)
        lctx, cctx = serve(local, lifespan="off"), serve(cloud, lifespan="off")
        contexts.extend([lctx, cctx])
        lurl, curl = lctx.__enter__(), cctx.__enter__()
        records = tmp_path / "records.jsonl"
        path = tmp_path / "policy.yaml"
        text = policy if policy is not None else policy_text(lurl, curl, records, prompts)
        path.write_text(
            text.replace("{local}", lurl)
            .replace("{cloud}", curl)
            .replace("{records}", str(records))
        )
        app = create_app(str(path)) if scoring else create_app(str(path), scorer_factory=None)
        app.runtime.watch_interval = 0.05
        rctx = serve(app)
        contexts.append(rctx)
        url = rctx.__enter__()
        return Stack(url, local, cloud, path, records, app, lurl, curl)

    yield make
    for ctx in reversed(contexts):
        ctx.__exit__(None, None, None)


@pytest.fixture
def stack(make_stack: Callable[..., Stack]) -> Stack:
    return make_stack()


# -- a throwaway three-node Redis Cluster (cache, budgets, record stream) -------------


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(n: int) -> list[int]:
    # A cluster node also listens on port + 10000 (the cluster bus).
    rng = random.Random()
    ports: list[int] = []
    while len(ports) < n:
        port = rng.randrange(20000, 40000)
        if port not in ports and _free(port) and _free(port + 10000):
            ports.append(port)
    return ports


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[int]:
    ports = free_ports(3)
    processes = []
    for port in ports:
        (tmp_path / str(port)).mkdir()
        processes.append(
            subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                 "--cluster-enabled", "yes", "--save", "", "--appendonly", "no"],
                cwd=tmp_path / str(port),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )  # fmt: skip
    try:
        for port in ports:
            client = redis.Redis(port=port)
            deadline = time.monotonic() + 5
            while True:
                try:
                    client.ping()
                    break
                except redis.RedisError:
                    assert time.monotonic() < deadline
                    time.sleep(0.02)
        subprocess.run(
            ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=20,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while (
            b"cluster_state:ok"
            not in subprocess.run(
                ["redis-cli", "-p", str(ports[0]), "cluster", "info"], capture_output=True
            ).stdout
        ):
            assert time.monotonic() < deadline, "cluster did not come up"
            time.sleep(0.05)
        yield ports[0]
    finally:
        for process in processes:
            process.kill()
            process.wait()
