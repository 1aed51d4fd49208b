"""The asyncio side of ``neuron_dp.Batcher``: completing futures from the batcher's notifier
thread (called on the loop's own thread through ``loop.call_soon_threadsafe``), and the
awaitables behind ``async with`` and ``aclose()``."""

import asyncio
from typing import Any, Optional, TypeVar

T = TypeVar("T")


def complete_future(future: "asyncio.Future[Any]", value: Any, error: Optional[BaseException]) -> None:
    """Sets the result or exception, unless the awaiting task was cancelled meanwhile."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


async def ready(value: T) -> T:
    """``__aenter__``: the batcher itself."""
    return value


async def close_in_executor(batcher: Any) -> None:
    """``aclose()`` and ``__aexit__``: ``batcher.close()`` on the loop's default executor, so
    the loop keeps completing the futures of the requests being drained."""
    await asyncio.get_running_loop().run_in_executor(None, batcher.close)
