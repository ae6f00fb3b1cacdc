"""Items produced ahead in a thread: in order, the producer's error raised in the consumer,
and a consumer that stops early stops the producer."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from pgflow.flows.delta_sync.prefetch import prefetched


def test_items_come_in_order_and_all_of_them() -> None:
    assert list(prefetched(iter(range(100)), 2)) == list(range(100))
    assert list(prefetched(iter([]), 2)) == []


def test_the_producers_error_is_raised_in_the_consumer() -> None:
    def failing() -> Iterator[int]:
        yield 1
        raise OSError("connection reset by peer")

    seen = []
    with pytest.raises(OSError, match="connection reset"):
        for item in prefetched(failing(), 2):
            seen.append(item)
    assert seen == [1]


def test_a_consumer_that_stops_early_stops_the_producer() -> None:
    closed = threading.Event()

    def endless() -> Iterator[int]:
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.set()

    items = prefetched(endless(), 2)
    assert next(items) == 0
    items.close()  # joins the producer thread
    assert closed.is_set()
