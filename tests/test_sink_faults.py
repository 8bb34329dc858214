"""The record writer survives records it cannot serialise, and its queue is bounded."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY

from router.outcomes.sinks import JsonlSink


def nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


def errors(kind: str) -> float:
    return REGISTRY.get_sample_value("router_record_errors_total", {"kind": kind}) or 0.0


def test_one_unserialisable_record_does_not_stop_the_writer(tmp_path: Path) -> None:
    sink = JsonlSink(tmp_path / "r.jsonl")
    before = errors("stripped")
    sink.emit({"request_id": "a", "i": 0})
    sink.flush()
    # orjson refuses nesting deeper than 254: this used to kill the writer thread.
    sink.emit({"request_id": "bad", "i": 1, "messages": [{"role": "user", "name": nested(300)}]})
    sink.flush()
    for i in range(2, 50):
        sink.emit({"request_id": f"r{i}", "i": i})
    sink.flush()
    sink.close()
    lines = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [r["i"] for r in lines] == list(range(50))  # the bad one is kept, stripped
    bad = lines[1]
    assert bad["request_id"] == "bad" and "messages" not in bad
    assert "record_error" in bad
    assert errors("stripped") == before + 1


def test_writer_survives_a_record_that_cannot_even_be_stripped(tmp_path: Path) -> None:
    sink = JsonlSink(tmp_path / "r.jsonl")
    before = errors("unserializable")
    sink.emit({"request_id": "bad", "tenant": nested(300)})
    sink.emit({"request_id": "good"})
    sink.flush()
    sink.close()
    lines = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [r["request_id"] for r in lines] == ["good"]
    assert errors("unserializable") == before + 1


def test_queue_is_bounded_and_drops_are_counted(tmp_path: Path) -> None:
    sink = JsonlSink(tmp_path / "r.jsonl", max_queue=100)
    before = errors("queue_full")

    async def burst() -> None:
        # Records emitted on the event loop wait for the hand-off together: a burst
        # larger than the bound meets it before the writer has seen any of them.
        for i in range(1_000):
            sink.emit({"i": i})
        await asyncio.sleep(0.05)

    asyncio.run(burst())
    sink.flush()
    for i in range(10):  # once the writer caught up, records are accepted again
        sink.emit({"i": 1_000 + i})
    sink.flush()
    sink.close()
    lines = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [r["i"] for r in lines] == [*range(100), *range(1_000, 1_010)]
    assert errors("queue_full") == before + 900


def test_redis_sink_waits_bounded_while_redis_is_down_then_writes(tmp_path: Path) -> None:
    import os
    import signal
    import time

    import redis
    from test_cache_faults import Server, free_port

    from router.outcomes.sinks import RedisStreamSink

    server = Server(free_port())
    server.start()
    stream = f"hrtest:records:{os.getpid()}"
    sink = RedisStreamSink(f"redis://127.0.0.1:{server.port}/0", stream, max_queue=50)
    before = errors("queue_full")
    try:
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGSTOP)  # Redis hangs: records must wait
        for i in range(200):
            sink.emit({"request_id": f"r{i}", "i": i})
        time.sleep(0.1)
        assert errors("queue_full") >= before + 150 - 64  # the bound held (one batch in hand)
        os.kill(server.process.pid, signal.SIGCONT)
        sink.flush(timeout=15)
        written = redis.Redis(port=server.port).xlen(stream)
        assert 50 <= written <= 50 + 64
        assert written + errors("queue_full") - before == 200  # each kept or counted
    finally:
        sink.close()
        if server.process is not None:
            os.kill(server.process.pid, signal.SIGCONT)
        server.kill()
