"""Request ids stay 32 hex digits of OS randomness, never handed out twice."""

from __future__ import annotations

import re
import threading

from router.ids import request_id


def test_ids_are_32_hex_digits_and_distinct() -> None:
    ids = [request_id() for _ in range(2000)]  # several refills
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_threads_never_share_an_id() -> None:
    seen: list[list[str]] = [[] for _ in range(4)]

    def take(out: list[str]) -> None:
        out.extend(request_id() for _ in range(3000))

    threads = [threading.Thread(target=take, args=(out,)) for out in seen]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [i for out in seen for i in out]
    assert len(set(every)) == len(every) == 12_000
