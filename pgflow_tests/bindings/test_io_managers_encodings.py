"""A source database in another encoding than the sink's: text arrives as the same characters
on every path (binary COPY and pgoutput carry text in the session's client encoding)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import dagster as dg
import psycopg
import pytest

from pgflow_tests.bindings.checks.support import cdc_project, materialize, pipeline, project_of
from pgflow_tests.bindings.conftest import Env
from pgflow_tests.pg import drop_slots, execute, slot_name_for

# Every character here exists in LATIN1 and is two bytes in UTF8.
TEXTS = ["ünï çà", "Ærøskøbing ½ °C", "naïve façade ¿?", "plain"]


def rows(uri: str, table: str) -> list[tuple[int, str]]:
    with psycopg.connect(uri, client_encoding="UTF8") as conn:
        return conn.execute(f"SELECT id, name FROM {table} ORDER BY id").fetchall()


@pytest.fixture
def latin1_source(env: Env, local_pg, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"t_latin1_{uuid.uuid4().hex[:8]}"
    admin = local_pg.uri("postgres")
    execute(admin, f"CREATE DATABASE {name} ENCODING 'LATIN1' TEMPLATE template0 LOCALE 'C'")
    uri = local_pg.uri(name)
    with psycopg.connect(uri, client_encoding="UTF8", autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, price numeric(8,2),"
            " added timestamptz DEFAULT now())"
        )
        for i, text in enumerate(TEXTS, start=1):
            conn.execute("INSERT INTO items (id, name) VALUES (%s, %s)", (i, text))
    monkeypatch.setenv("PGFLOW_CONN_SHOP", uri)
    try:
        yield uri
    finally:
        drop_slots(uri, slot_name_for(uri))
        execute(admin, f"DROP DATABASE {name} WITH (FORCE)")


@pytest.mark.parametrize("mode", ["full_refresh", "incremental_merge"])
def test_a_latin1_source_lands_as_the_same_characters(
    env: Env, latin1_source: str, instance: dg.DagsterInstance, mode: str
) -> None:
    strategy = {"mode": mode, "unique_key": ["id"]}
    if mode == "incremental_merge":
        strategy["merge_policy"] = "upsert"
    source = {"options": {"incremental_strategy": "column", "incremental_column": "added"}}
    extra = {"source": source} if mode == "incremental_merge" else {}
    project = project_of(env, pipeline(strategy, **extra))
    materialize(project, instance)
    assert rows(env.sink_uri, "landing.items") == rows(latin1_source, "items")
    execute(latin1_source, "UPDATE items SET name = name || ' é', added = now() WHERE id = 2")
    materialize(project, instance)
    assert rows(env.sink_uri, "landing.items") == rows(latin1_source, "items")
    assert rows(env.sink_uri, "landing.items")[1] == (2, "Ærøskøbing ½ °C é")


def test_a_latin1_source_streams_the_same_characters_through_cdc(
    env: Env, latin1_source: str, instance: dg.DagsterInstance
) -> None:
    project = cdc_project(env, slot_name_for(latin1_source))
    materialize(project, instance)
    execute(latin1_source, "UPDATE items SET name = name || ' ß' WHERE id = 1")
    execute(latin1_source, "INSERT INTO items (id, name) VALUES (9, 'ÿ neuf')")
    materialize(project, instance)
    live = "landing.items WHERE _deleted_at IS NULL"
    assert rows(env.sink_uri, live) == rows(latin1_source, "items")
    assert rows(env.sink_uri, live)[-1] == (9, "ÿ neuf")
