"""Produce the items of an iterator in a background thread, a few ahead of their consumer."""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class _Item(Generic[T]):
    value: T


@dataclass(frozen=True)
class _Failed:
    error: BaseException  # raised in the consumer


def prefetched(items: Iterator[T], depth: int) -> Generator[T, None, None]:
    """`items`, produced by a background thread up to `depth` ahead of the consumer.

    Reading and rendering the next batches (polars, mostly outside the GIL) overlaps the
    sink applying this one. An exception in the producer is raised in the consumer; when
    the consumer stops early the producer stops after its current item.
    """
    # An item, the producer's error, or None: no more items.
    slots: queue.Queue[_Item[T] | _Failed | None] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(message: _Item[T] | _Failed | None) -> bool:
        while not stop.is_set():
            try:
                slots.put(message, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(_Item(item)):
                    return
            put(None)
        except BaseException as error:  # handed to the consumer, raised there
            put(_Failed(error))
        finally:
            closer = getattr(items, "close", None)
            if closer:
                closer()

    worker = threading.Thread(target=produce, name="pgflow-delta-read", daemon=True)
    worker.start()
    try:
        while True:
            message = slots.get()
            if isinstance(message, _Failed):
                raise message.error
            if message is None:
                return
            yield message.value
    finally:
        stop.set()
        worker.join()
