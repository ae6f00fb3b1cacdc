"""Produce the items of an iterator in a background thread, a few ahead of their consumer."""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterator
from typing import TypeVar

T = TypeVar("T")


def prefetched(items: Iterator[T], depth: int) -> Generator[T, None, None]:
    """`items`, produced by a background thread up to `depth` ahead of the consumer.

    Reading and rendering the next batches (polars, mostly outside the GIL) overlaps the
    sink applying this one. An exception in the producer is raised in the consumer; when
    the consumer stops early the producer stops after its current item.
    """
    slots: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(message: tuple[str, object]) -> bool:
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
                if not put(("item", item)):
                    return
            put(("done", None))
        except BaseException as error:  # handed to the consumer, raised there
            put(("error", error))
        finally:
            closer = getattr(items, "close", None)
            if closer:
                closer()

    worker = threading.Thread(target=produce, name="pgflow-delta-read", daemon=True)
    worker.start()
    try:
        while True:
            kind, value = slots.get()
            if kind == "error":
                assert isinstance(value, BaseException)
                raise value
            if kind == "done":
                return
            yield value  # type: ignore[misc]
    finally:
        stop.set()
        worker.join()
