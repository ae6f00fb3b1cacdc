"""An iterator produced ahead of its reader by a thread, a bounded number of items ahead."""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Generic, Literal, TypeAlias, TypeVar

T = TypeVar("T")


class _End(Enum):
    DONE = "done"  # the thread has put its last item


@dataclass(frozen=True)
class _Failure:
    error: BaseException


_Slot: TypeAlias = "T | _Failure | Literal[_End.DONE]"


class Prefetched(Generic[T]):
    """`items`, produced by a thread up to `depth` ahead; its errors are raised to the reader.

    The thread owns `items` (and whatever it reads from, e.g. a COPY on the source's
    connection) until `close()`: then it stops, closes `items` and is joined. Iterating to
    the end, or closing the iterator, closes it too.
    """

    def __init__(self, items: Generator[T, None, None], depth: int):
        self._items = items
        self._slots: queue.Queue[_Slot[T]] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="pgflow-arrow-read", daemon=True)
        self._thread.start()

    def __iter__(self) -> Iterator[T]:
        try:
            while (item := self._slots.get()) is not _End.DONE:
                if isinstance(item, _Failure):
                    raise item.error
                yield item
        finally:
            self.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()

    def _put(self, item: _Slot[T]) -> bool:
        while not self._stop.is_set():
            try:
                self._slots.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            for item in self._items:
                if not self._put(item):
                    break
        except BaseException as error:
            self._put(_Failure(error))
        finally:
            self._items.close()
            self._put(_End.DONE)
