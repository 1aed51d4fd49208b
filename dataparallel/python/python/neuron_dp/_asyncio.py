"""Completing asyncio futures from the batcher's notifier thread (called on the loop's own
thread through ``loop.call_soon_threadsafe``)."""

import asyncio
from typing import Any, Optional


def complete_future(future: "asyncio.Future[Any]", value: Any, error: Optional[BaseException]) -> None:
    """Sets the result or exception, unless the awaiting task was cancelled meanwhile."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)
