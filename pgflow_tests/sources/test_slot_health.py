"""Reading a replication slot's health from the server, and what each state is called."""

from __future__ import annotations

import psycopg

from pgflow.sources.slot_health import SlotState, read_slot, slot_status
from pgflow_tests.pg import drop_slots, execute, slot_name_for


def test_read_slot_on_a_real_slot(fresh_db: str) -> None:
    name = slot_name_for(fresh_db)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        assert read_slot(conn, name) == SlotState(
            name=name, exists=False, current_database=conn.info.dbname
        )
        assert slot_status(read_slot(conn, name), 1024) == "missing"
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (name,))
        try:
            execute(fresh_db, "CREATE TABLE t AS SELECT g FROM generate_series(1, 20000) g")
            state = read_slot(conn, name)
            assert state.exists and state.database == conn.info.dbname
            assert state.plugin == "pgoutput" and state.active is False
            assert state.wal_status == "reserved" and state.invalidation is None
            assert state.restart_lsn and state.confirmed_flush_lsn
            assert state.retained_bytes and state.retained_bytes > 100_000
            assert slot_status(state, warn_bytes=1024**3) == "healthy"
            assert slot_status(state, warn_bytes=1024) == "retaining"
        finally:
            drop_slots(fresh_db, name)


def test_slot_states_worst_first() -> None:
    ours = {"exists": True, "database": "db", "current_database": "db", "plugin": "pgoutput"}
    assert slot_status(SlotState("s", **ours, wal_status="reserved", retained_bytes=10), 5) == (
        "retaining"
    )
    assert slot_status(SlotState("s", **ours, wal_status="unreserved"), 5) == "unreserved"
    lost = SlotState("s", **ours, wal_status="lost", invalidation="wal_removed")
    assert slot_status(lost, 5) == "invalidated"
    other = {**ours, "database": "elsewhere"}
    assert slot_status(SlotState("s", **other, wal_status="lost"), 5) == "foreign"
    assert slot_status(SlotState("s", **{**ours, "plugin": "wal2json"}), 5) == "foreign"
