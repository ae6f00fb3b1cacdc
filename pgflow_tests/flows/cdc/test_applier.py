"""The apply thread: a failed apply leaves earlier batches applied and later staged ones
dropped."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from pgflow.sinks.postgres import state
from pgflow.sources import cdc
from pgflow_tests.flows.cdc.conftest import ORDERS, TARGET, run, same
from pgflow_tests.pg import execute, fetch


def test_a_failed_batch_among_staged_ones_leaves_no_staging_and_nothing_twice(
    source_uri: str, sink_uri: str, slot: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches are staged (committed, on a second sink connection) while the one before them
    applies: when an apply fails, the batches before it stay applied with the slot moved,
    and the staged ones after it are dropped, not applied."""
    execute(source_uri, ORDERS)
    run(source_uri, sink_uri, slot)
    with psycopg.connect(source_uri, autocommit=True) as conn:
        for n in range(12):
            conn.execute("UPDATE public.orders SET status = %s WHERE id = %s", (f"s{n}", n + 1))
    writes = 0
    write_position = state.write_position

    def fail_third(*args: Any) -> None:
        nonlocal writes
        writes += 1
        if writes == 3:
            raise RuntimeError("killed in the third apply")
        write_position(*args)

    with monkeypatch.context() as patch:
        patch.setattr(state, "write_position", fail_third)
        with pytest.raises(RuntimeError, match="third apply"):
            run(source_uri, sink_uri, slot, batch_changes=6)
    staged = "SELECT count(*) FROM pg_tables WHERE schemaname = '_pgflow_staging'"
    assert fetch(sink_uri, staged) == [(0,)]
    applied = fetch(sink_uri, "SELECT count(*) FROM landing.orders WHERE status LIKE 's%'")
    with psycopg.connect(sink_uri) as sink, psycopg.connect(source_uri) as source:
        stored = state.read_position(sink, TARGET)
        assert stored and cdc.slot_info(source, slot).confirmed_flush == cdc.lsn_to_int(  # type: ignore[union-attr]
            stored.value
        )
    rest = run(source_uri, sink_uri, slot)
    assert rest.changes == 12 - applied[0][0]
    assert same(source_uri, sink_uri)
