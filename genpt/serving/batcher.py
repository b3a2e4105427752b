"""Concurrent requests of one model -> one ONNX Runtime call (KServe's Python server has
no batcher of its own; in a cluster its batcher is a sidecar).

A request's rows stay together. The first request that finds the model idle waits up to
`max_wait_s` for company (or until `max_batch` rows are queued); while a batch runs, new
requests queue and make up the next one, so batches grow with the load.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence


class Batcher:
    def __init__(self, run: Callable[[list], Sequence], max_batch: int, max_wait_s: float,
                 on_batch: Callable[[int], None] | None = None):  # fmt: skip
        self.run, self.max_batch, self.max_wait_s = run, max_batch, max_wait_s
        self.on_batch = on_batch or (lambda n: None)
        self.queue: list[tuple[list, asyncio.Future]] = []
        self.rows = 0
        self.wake = asyncio.Event()
        self.worker: asyncio.Task | None = None

    async def submit(self, items: list) -> list:
        """The results of run(items) (one per item), computed in a batch with others."""
        fut = asyncio.get_running_loop().create_future()
        self.queue.append((items, fut))
        self.rows += len(items)
        if self.rows >= self.max_batch:
            self.wake.set()
        if self.worker is None or self.worker.done():
            self.worker = asyncio.create_task(self._work())
        return await fut

    def _take(self) -> list[tuple[list, asyncio.Future]]:
        batch, n = [], 0
        while self.queue and (not batch or n + len(self.queue[0][0]) <= self.max_batch):
            items, fut = self.queue.pop(0)
            batch.append((items, fut))
            n += len(items)
        self.rows -= n
        return batch

    async def _work(self) -> None:
        if self.rows < self.max_batch and self.max_wait_s > 0:
            with contextlib.suppress(TimeoutError):  # a lone request waits for company
                await asyncio.wait_for(self.wake.wait(), self.max_wait_s)
        while self.queue:
            self.wake.clear()
            batch = self._take()
            flat = [x for items, _ in batch for x in items]
            self.on_batch(len(flat))
            try:
                results = await asyncio.to_thread(self.run, flat)
            except Exception as e:  # every waiting request gets the error
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            i = 0
            for items, fut in batch:
                if not fut.done():  # a cancelled request (client gone) is skipped
                    fut.set_result(list(results[i : i + len(items)]))
                i += len(items)
