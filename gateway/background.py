"""Tasks a component starts and does not await itself (a shared call, a top-up, a read
ahead): kept referenced until done, since the event loop holds only weak references
to tasks, and awaited when the component stops."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


class Background:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for the tasks started so far; their errors are their own business."""
        await asyncio.gather(*self._tasks, return_exceptions=True)
