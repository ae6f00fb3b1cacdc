"""Two loads of one target at once: the advisory lock makes the second wait for the first."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from pgflow.config.model import TableName
from pgflow_tests.sinks.postgres.conftest import execute, fetch, run_load

SOURCE, TARGET = TableName("public", "m"), TableName("landing", "m")


def test_concurrent_loads_of_one_target_serialize(source_uri, sink_uri):
    execute(source_uri, "CREATE TABLE m (id int PRIMARY KEY, v text)")
    execute(source_uri, "INSERT INTO m SELECT g, 'v' || g FROM generate_series(1, 2000) g")
    run_load(source_uri, sink_uri, SOURCE, TARGET)  # create the target first
    first_is_copying, release_first = threading.Event(), threading.Event()
    finished: list[str] = []

    def held_open(stream: Iterator[bytes]) -> Iterator[bytes]:
        # The first load holds its transaction (and the lock) open mid-COPY until released.
        for i, chunk in enumerate(stream):
            if i == 10:
                first_is_copying.set()
                release_first.wait(timeout=60)
            yield chunk

    def load(name: str, wrap=None) -> None:
        run_load(source_uri, sink_uri, SOURCE, TARGET, wrap=wrap)
        finished.append(name)

    first = threading.Thread(target=load, args=("first", held_open))
    first.start()
    assert first_is_copying.wait(timeout=30)
    second = threading.Thread(target=load, args=("second",))
    second.start()
    deadline = time.monotonic() + 30
    waiting: list[tuple] = []
    while time.monotonic() < deadline and not waiting:
        waiting = fetch(
            sink_uri,
            "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND wait_event = 'advisory' AND datname = current_database()",
        )
        time.sleep(0.1)
    assert waiting, "the second load should wait on the target's advisory lock"
    assert finished == []
    release_first.set()
    first.join(timeout=60)
    second.join(timeout=60)

    assert finished == ["first", "second"]
    assert fetch(sink_uri, "SELECT count(*) FROM landing.m") == [(2000,)]
