"""Micro-batching: concurrent requests share one model run.

A request that finds the model idle runs at once, so a lone request pays no
wait. Requests that arrive while a run is in progress queue up and go together
in the next run; once more than one is queued, the batch is held open for at
most `max_wait_ms` to fill up to `max_batch`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import numpy.typing as npt

__all__ = ["BatchResult", "MicroBatcher"]

BatchResult = tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]
RunFn = Callable[[list[str]], BatchResult]
_Item = tuple[str, "asyncio.Future[tuple[float, npt.NDArray[np.float32]]]"]


class MicroBatcher:
    def __init__(self, run: RunFn, *, max_batch: int = 32, max_wait_ms: float = 2.0) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._run = run
        self.max_batch = max_batch
        self.max_wait = max(0.0, max_wait_ms) / 1000.0
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        # One inference thread: runs are serialised, and the event loop stays free.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="router-scoring")
        self._task: asyncio.Task[None] | None = None
        #: Number of model runs so far; lets tests and metrics see batching work.
        self.runs = 0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(self._serve())

    async def submit(self, text: str) -> tuple[float, npt.NDArray[np.float32]]:
        if not self.running:
            raise RuntimeError("the scoring batcher is not running")
        future: asyncio.Future[tuple[float, npt.NDArray[np.float32]]]
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((text, future))
        return await future

    async def run_in_thread(self, texts: list[str]) -> BatchResult:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._run, texts)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        while not self._queue.empty():
            _, future = self._queue.get_nowait()
            if not future.done():
                future.set_exception(RuntimeError("the scorer was closed"))
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _drain(self, batch: list[_Item]) -> None:
        while len(batch) < self.max_batch and not self._queue.empty():
            batch.append(self._queue.get_nowait())

    async def _collect(self) -> list[_Item]:
        batch = [await self._queue.get()]
        # Let callers scheduled in the same loop iteration enqueue first.
        await asyncio.sleep(0)
        self._drain(batch)
        if len(batch) > 1 and self.max_wait > 0:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_batch:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                except TimeoutError:
                    break
                self._drain(batch)
        return batch

    async def _serve(self) -> None:
        while True:
            batch = await self._collect()
            live = [(text, fut) for text, fut in batch if not fut.done()]
            if not live:
                continue
            try:
                scores, embeddings = await self.run_in_thread([text for text, _ in live])
                self.runs += 1
            except asyncio.CancelledError:
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(RuntimeError("the scorer was closed"))
                raise
            except Exception as exc:
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for i, (_, fut) in enumerate(live):
                if not fut.done():
                    fut.set_result((float(scores[i]), embeddings[i]))
