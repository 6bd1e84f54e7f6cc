"""Dynamic batching: concurrent requests are merged into one model call.

A single consumer task takes the first waiting request, then keeps collecting until the batch
holds ``max_batch_size`` images or ``max_queue_delay`` has passed since it started, and runs the
model in a worker thread so the event loop keeps accepting requests meanwhile. The queue is
bounded: when it is full ``submit`` raises ``QueueFullError`` at once (the server answers 503)
instead of letting latency and memory grow without limit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np


class QueueFullError(Exception):
    """The request queue is at capacity; the caller should answer 503."""


@dataclass
class _Pending:
    inputs: np.ndarray
    future: asyncio.Future[np.ndarray]
    enqueued_at: float = field(default_factory=time.perf_counter)


@dataclass
class BatchStats:
    """What one model call did, handed to ``on_batch`` (metrics)."""

    batch_size: int
    queue_seconds: list[float]
    infer_seconds: float


class DynamicBatcher:
    """Groups ``[n, ...]`` arrays from concurrent ``submit`` calls into model calls."""

    def __init__(
        self,
        infer: Callable[[np.ndarray], np.ndarray],
        executor: Executor,
        max_batch_size: int,
        max_queue_delay_s: float,
        max_queue_size: int,
        on_batch: Callable[[BatchStats], None] | None = None,
    ) -> None:
        if max_batch_size < 1 or max_queue_size < 1 or max_queue_delay_s < 0:
            raise ValueError("max_batch_size and max_queue_size must be >= 1, delay >= 0")
        self._infer = infer
        self._executor = executor
        self.max_batch_size = max_batch_size
        self.max_queue_delay_s = max_queue_delay_s
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(maxsize=max_queue_size)
        self._carry: _Pending | None = None
        self._on_batch = on_batch
        self._task: asyncio.Task[None] | None = None

    @property
    def depth(self) -> int:
        """Requests waiting (not yet in a running batch)."""
        return self._queue.qsize() + (self._carry is not None)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="dynamic-batcher")

    async def stop(self) -> None:
        """Stop the consumer; requests still queued fail with ``RuntimeError``."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        leftovers = [self._carry] if self._carry else []
        self._carry = None
        while not self._queue.empty():
            leftovers.append(self._queue.get_nowait())
        for item in leftovers:
            if not item.future.done():
                item.future.set_exception(RuntimeError("server is shutting down"))

    async def submit(self, inputs: np.ndarray) -> np.ndarray:
        """Queue ``inputs`` ([n, ...]) and wait for its ``[n, ...]`` outputs."""
        if self._task is None:
            raise RuntimeError("batcher is not running")
        pending = _Pending(inputs, asyncio.get_running_loop().create_future())
        try:
            self._queue.put_nowait(pending)
        except asyncio.QueueFull:
            raise QueueFullError(f"request queue is full ({self._queue.maxsize} waiting)") from None
        return await pending.future

    async def _next(self, timeout: float | None) -> _Pending | None:
        if self._carry is not None:
            item, self._carry = self._carry, None
            return item
        if timeout is None:
            return await self._queue.get()
        if timeout <= 0:
            try:
                return self._queue.get_nowait()
            except asyncio.QueueEmpty:
                return None
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None

    async def _collect(self) -> list[_Pending]:
        first = await self._next(None)
        assert first is not None
        batch, size = [first], len(first.inputs)
        deadline = time.perf_counter() + self.max_queue_delay_s
        while size < self.max_batch_size:
            item = await self._next(deadline - time.perf_counter())
            if item is None:
                break
            if size + len(item.inputs) > self.max_batch_size:
                self._carry = item  # first in line for the next batch: keeps arrival order
                break
            batch.append(item)
            size += len(item.inputs)
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            live = [p for p in batch if not p.future.done()]  # the client may have gone
            if not live:
                continue
            started = time.perf_counter()
            inputs = live[0].inputs if len(live) == 1 else np.concatenate([p.inputs for p in live])
            try:
                outputs = await loop.run_in_executor(self._executor, self._infer, inputs)
            except Exception as exc:  # noqa: BLE001 - handed to every waiting request
                for p in live:
                    if not p.future.done():
                        p.future.set_exception(exc)
                continue
            finished = time.perf_counter()
            offset = 0
            for p in live:
                n = len(p.inputs)
                if not p.future.done():
                    p.future.set_result(outputs[offset:offset + n])
                offset += n
            if self._on_batch is not None:
                self._on_batch(BatchStats(
                    batch_size=len(inputs),
                    queue_seconds=[started - p.enqueued_at for p in live],
                    infer_seconds=finished - started,
                ))
