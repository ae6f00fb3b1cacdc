"""Reliability: odd but valid specs keep working next to the bad ones: unicode and SQL-like
identifiers are quoted, not refused; mixed-case names with outer spaces load under a readable
key; YAML merge keys may still override.

The bad specs themselves: test_bad_specs_cases.py.
"""

from __future__ import annotations

import os
from pathlib import Path
from unittest.mock import patch

import dagster as dg
import psycopg
import yaml
from psycopg import sql

from pgflow.bindings.definitions import build_definitions
from pgflow.bindings.pipeline_asset import pipeline_asset
from pgflow.config.loader import load_project
from pgflow_tests.reliability.bad_specs_support import World
from pgflow_tests.reliability.specs_model import BASE, merge
from pgflow_tests.reliability.specs_snapshot import (
    snapshot,
)

# --- what must keep working ------------------------------------------------------------------


def _source_table(world: World, schema: str, name: str) -> None:
    with psycopg.connect(world.source_uri, autocommit=True) as conn:
        table = sql.Identifier(schema, name)
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        create = "CREATE TABLE IF NOT EXISTS {} (id int PRIMARY KEY, näme text)"
        conn.execute(sql.SQL(create).format(table))
        insert = "INSERT INTO {} VALUES (1, 'ä'), (2, '訂單') ON CONFLICT DO NOTHING"
        conn.execute(sql.SQL(insert).format(table))


def _materialize_spec(world: World, folder: Path, overrides: dict) -> dg.AssetKey:
    """Materialize the one pipeline of `merge(BASE, overrides)`; its asset key."""
    folder.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(merge(BASE, overrides), allow_unicode=True)
    (folder / "u.yaml").write_text(text, encoding="utf-8")
    env = {**world.env, "PGFLOW_CONFIG": str(folder)}
    with patch.dict(os.environ, env, clear=True), dg.instance_for_test() as instance:
        project = load_project()
        (pipeline,) = project.pipelines
        result = dg.materialize(
            [pipeline_asset(pipeline)],
            instance=instance,
            resources=build_definitions(project).resources,
        )
        (materialization,) = result.get_asset_materialization_events()
        return materialization.asset_key


def test_unicode_and_sql_like_sink_identifiers_are_quoted_not_refused(
    world: World, tmp_path: Path
) -> None:
    """Identifiers are data: a unicode schema and a table named like SQL are created under
    exactly those names, the SQL in the name never runs, and the default asset key and
    pipeline name are made Dagster-safe instead of failing the code location."""
    target = ("zielö", "訂單; DROP SCHEMA landing")
    overrides = {
        "sink": {
            "table": {"schema": target[0], "name": target[1]},
            "strategy": {"mode": "incremental_merge", "unique_key": ["id"]},
        },
    }
    before = snapshot(world.source_uri)
    try:
        key = _materialize_spec(world, tmp_path, overrides)
        assert key == dg.AssetKey(["zielo", "u8a02_u55ae_drop_schema_landing"])
        with psycopg.connect(world.sink_uri) as conn:
            query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(*target))
            assert conn.execute(query).fetchone() == (25,)
        assert snapshot(world.source_uri) == before
    finally:
        with psycopg.connect(world.sink_uri, autocommit=True) as conn:
            conn.execute('DROP SCHEMA IF EXISTS "zielö" CASCADE')
            conn.execute("DROP SCHEMA IF EXISTS _pgflow CASCADE")


def test_mixed_case_names_with_outer_spaces_load_under_a_readable_key(
    world: World, tmp_path: Path
) -> None:
    """`"Mixed Case"." Odd Table "` is a valid Postgres table: it is read and created under
    exactly that name, and its asset is `mixed_case/odd_table`."""
    _source_table(world, "Mixed Case", " Odd Table ")
    overrides = {
        "source": {"table": {"schema": "Mixed Case", "name": " Odd Table "}},
        "sink": {"table": {"schema": "Mixed Case", "name": " Odd Table "}},
    }
    try:
        key = _materialize_spec(world, tmp_path, overrides)
        assert key == dg.AssetKey(["mixed_case", "odd_table"])
        with psycopg.connect(world.sink_uri) as conn:
            query = sql.SQL("SELECT id, näme FROM {} ORDER BY id")
            rows = conn.execute(query.format(sql.Identifier("Mixed Case", " Odd Table ")))
            assert rows.fetchall() == [(1, "ä"), (2, "訂單")]
    finally:
        with psycopg.connect(world.source_uri, autocommit=True) as conn:
            conn.execute('DROP SCHEMA IF EXISTS "Mixed Case" CASCADE')
        with psycopg.connect(world.sink_uri, autocommit=True) as conn:
            conn.execute('DROP SCHEMA IF EXISTS "Mixed Case" CASCADE')
            conn.execute("DROP SCHEMA IF EXISTS _pgflow CASCADE")


def test_unicode_and_sql_like_source_identifiers_are_read(world: World, tmp_path: Path) -> None:
    source = ("läden", 'bestellungen"; DROP TABLE public.items; --')
    _source_table(world, *source)
    overrides = {
        "source": {"table": {"schema": source[0], "name": source[1]}},
        "sink": {"table": {"schema": "landing", "name": "bestellungen"}},
    }
    try:
        _materialize_spec(world, tmp_path, overrides)
        with psycopg.connect(world.sink_uri) as conn:
            rows = conn.execute("SELECT id, näme FROM landing.bestellungen ORDER BY id")
            assert rows.fetchall() == [(1, "ä"), (2, "訂單")]
        with psycopg.connect(world.source_uri) as conn:
            assert conn.execute("SELECT count(*) FROM public.items").fetchone() == (25,)
    finally:
        with psycopg.connect(world.sink_uri, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS landing.bestellungen")
        with psycopg.connect(world.source_uri, autocommit=True) as conn:
            conn.execute('DROP SCHEMA IF EXISTS "läden" CASCADE')


def test_yaml_merge_keys_may_still_override(tmp_path: Path) -> None:
    """Refusing repeated keys must not refuse YAML merges, whose keys an entry may override."""
    sink = "{type: postgres, connection_id: warehouse, strategy: {mode: full_refresh}, table: "
    text = (
        "pipelines:\n"
        "  - source: &src {type: postgres, connection_id: shop, table: {schema: s, name: a}}\n"
        f"    sink: {sink}{{schema: landing, name: a}}}}\n"
        "  - source: {<<: *src, table: {schema: s, name: b}}\n"
        f"    sink: {sink}{{schema: landing, name: b}}}}\n"
    )
    (tmp_path / "p.yaml").write_text(text)
    env = {"PGFLOW_CONN_SHOP": "postgresql://a@h/s", "PGFLOW_CONN_WAREHOUSE": "postgresql://a@h/w"}
    first, second = load_project(tmp_path, env).pipelines
    assert (str(first.source.table), str(second.source.table)) == ("s.a", "s.b")
    assert second.source.connection_id == "shop"
