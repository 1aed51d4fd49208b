"""The exceptions neuron_dp raises. Every one derives from :class:`Error`."""

from typing import Optional, Sequence


class Error(Exception):
    """Base class of every error raised by neuron_dp."""


class InputError(Error, ValueError):
    """The inputs or outputs do not fit the model: count, names, dtype, shape, batch size,
    contiguity, or a batch that cannot be split over the cores. Nothing ran on a device."""


class ConfigError(Error, ValueError):
    """The model cannot be built this way: bad device ids, an unreadable or malformed NEFF,
    or options that do not fit the model or the cores."""


class DeviceError(Error, RuntimeError):
    """A NeuronCore (or the runtime) failed.

    Attributes:
        chunk: index of the failing chunk of the call (the lowest one that failed), or None
            when the failure is not tied to a chunk (e.g. loading the model).
        core: the logical core (``nc:N``) it ran on, or None.
        physical_core: the physical core, or None when unknown.
        status: the libnrt status code (e.g. 6 for a hardware error), or None.
    """

    def __init__(
        self,
        message: str,
        chunk: Optional[int] = None,
        core: Optional[int] = None,
        physical_core: Optional[int] = None,
        status: Optional[int] = None,
    ) -> None:
        super().__init__(message)
        self.chunk = chunk
        self.core = core
        self.physical_core = physical_core
        self.status = status


class LibraryNotFoundError(Error, OSError):
    """No usable Neuron runtime library (libnrt) could be loaded.

    Attributes:
        paths: every path or name tried, in order (the message gives each reason).
    """

    def __init__(self, message: str, paths: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.paths = list(paths)

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class QueueFullError(Error):
    """The batcher's queue is full; retry later or shed the request."""


class BatcherClosedError(Error, RuntimeError):
    """The batcher was closed (``close()``, ``aclose()`` or the end of its ``with`` block)
    before this request was submitted; it was not run. Create a new Batcher."""


class DeadlineExceededError(Error, TimeoutError):
    """A batcher request expired in the queue before it joined a batch; it was not run."""
