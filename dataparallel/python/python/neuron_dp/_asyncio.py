"""The asyncio side of ``neuron_dp.Batcher``: completing futures from the batcher's notifier
thread (called on the loop's own thread through ``loop.call_soon_threadsafe``), and the
awaitables behind ``async with`` and ``aclose()``."""

import asyncio
from typing import Any, List, Optional, Tuple, TypeVar

T = TypeVar("T")


def complete_future(future: "asyncio.Future[Any]", value: Any, error: Optional[BaseException]) -> None:
    """Sets the result or exception, unless the awaiting task was cancelled meanwhile."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


def complete_many(items: List[Tuple["asyncio.Future[Any]", Any, Optional[BaseException]]]) -> None:
    """Completes every ``(future, value, error)`` of one loop, scheduled once for all of them.
    One failure does not leave the others pending; the first is raised (to the loop's
    exception handler) once all are done."""
    failure: Optional[BaseException] = None
    for future, value, error in items:
        try:
            complete_future(future, value, error)
        except BaseException as e:  # noqa: BLE001 - re-raised below
            failure = failure or e
    if failure is not None:
        raise failure


async def ready(value: T) -> T:
    """``__aenter__``: the batcher itself."""
    return value


async def close_in_executor(batcher: Any) -> None:
    """``aclose()`` and ``__aexit__``: ``batcher.close()`` on the loop's default executor, so
    the loop keeps completing the futures of the requests being drained."""
    await asyncio.get_running_loop().run_in_executor(None, batcher.close)
