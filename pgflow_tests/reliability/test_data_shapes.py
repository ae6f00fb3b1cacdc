"""Shapes of source tables: empty tables, unicode and quoted identifiers, very wide rows,
values of several MB, TOAST values that CDC updates leave unchanged, and the same edge
cases through a real Dagster materialization."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml

from pgflow.bindings.definitions import build_definitions
from pgflow.bindings.pipeline_asset import pipeline_asset
from pgflow.config.loader import load_project
from pgflow.config.model import StrategySpec, TableName
from pgflow.flows.delta_load import load_delta
from pgflow.sources.postgres import PostgresTableSource
from pgflow_tests.pg import drop_slots, execute, fetch, slot_name_for
from pgflow_tests.reliability import edge_compare as ec
from pgflow_tests.reliability import edge_data as ed
from pgflow_tests.reliability import edge_runs as er
from pgflow_tests.reliability.test_data_edge_cases import MERGE, PATHS, SHADOW, UPSERT, run_path


@pytest.fixture
def slot(source_uri: str) -> Iterator[str]:
    name = slot_name_for(source_uri)
    yield name
    drop_slots(source_uri, name)


# -- empty tables ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["full/truncate_insert", "full/exchange", "cdc/delete_insert"])
def test_empty_tables_first_load_and_a_load_that_empties_the_target(
    name: str, source_uri: str, sink_uri: str, slot: str
) -> None:
    path = PATHS[name]
    execute(source_uri, ed.TYPES_DDL + ed.create_sql("edge", builtin=False))
    run_path(path, source_uri, sink_uri, slot, "edge")
    assert fetch(sink_uri, "SELECT count(*) FROM landing.edge") == [(0,)]
    # The empty target has every column, typed as the source's (domains: their base type).
    types = fetch(
        sink_uri,
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
        " WHERE attrelid = 'landing.edge'::regclass AND attnum > 0 ORDER BY attnum",
    )
    assert [t[0] for t in types] == [c for c, _ in ed.edge_columns(builtin=False)]
    assert dict(types)["big"] == "bigint" and dict(types)["fd"] == "landing.mood"
    assert dict(types)["p"] == "text" and dict(types)["il"] == "integer[]"
    execute(source_uri, ed.insert_sql("edge", builtin=False))
    run_path(path, source_uri, sink_uri, slot, "edge")
    assert ec.assert_same_rows(source_uri, "public.edge", sink_uri, "landing.edge") == len(ed.CASES)
    # Emptied at the source (CDC: a DELETE of everything, then a TRUNCATE of nothing).
    execute(source_uri, "DELETE FROM public.edge")
    run_path(path, source_uri, sink_uri, slot, "edge")
    assert fetch(sink_uri, "SELECT count(*) FROM landing.edge") == [(0,)]
    if path.source == "cdc":
        execute(source_uri, ed.insert_sql("edge", builtin=False) + "TRUNCATE public.edge")
        run_path(path, source_uri, sink_uri, slot, "edge")
        assert fetch(sink_uri, "SELECT count(*) FROM landing.edge") == [(0,)]


@pytest.mark.parametrize("name", ["column/delete_insert", "xmin/upsert", "full/shadow_swap"])
def test_empty_incremental_reads_change_nothing_and_a_reset_empties(
    name: str, source_uri: str, sink_uri: str
) -> None:
    path = PATHS[name]
    execute(source_uri, ed.TYPES_DDL + ed.create_sql("edge", builtin=False))
    table, target = TableName("public", "edge"), TableName("landing", "edge")
    first = er.load(source_uri, sink_uri, table, target, path.strategy, path.make_source())
    assert first.created_target and first.rows_read == 0
    execute(source_uri, ed.insert_sql("edge", builtin=False))
    er.load(source_uri, sink_uri, table, target, path.strategy, path.make_source())
    ec.assert_same_rows(source_uri, "public.edge", sink_uri, "landing.edge")
    execute(source_uri, "DELETE FROM public.edge")
    er.load(source_uri, sink_uri, table, target, path.strategy, path.make_source())
    assert fetch(sink_uri, "SELECT count(*) FROM landing.edge") == [(len(ed.CASES),)]  # kept
    with (
        er.session(source_uri, ed.SOURCE_SESSION_TZ) as src,
        er.session(sink_uri, ed.SINK_SESSION_TZ, autocommit=True) as dst,
    ):
        from pgflow.flows.postgres_load import load_table

        load_table(dst, path.make_source()(src, table), target, path.strategy, reset=True)
    assert fetch(sink_uri, "SELECT count(*) FROM landing.edge") == [(0,)]


# -- unicode and quoted identifiers ---------------------------------------------------------

SCHEMA, TABLE = "sklep ü.€", "zamówienia"
UNICODE = f"""
CREATE SCHEMA "{SCHEMA}";
CREATE TYPE "{SCHEMA}"."état" AS ENUM ('neuf', 'payé "x"', 'ñ');
CREATE DOMAIN "{SCHEMA}"."{ed.BIGINT}" AS bigint CHECK (VALUE > 0);
CREATE TABLE "{SCHEMA}"."{TABLE}" (
    "id" "{SCHEMA}"."{ed.BIGINT}" PRIMARY KEY,
    "prix_€" numeric(10,2),
    "a ""quoted"" name" text,
    "with.dot" int,
    "with space" text,
    "ÉTAT" "{SCHEMA}"."état",
    "états" "{SCHEMA}"."état"[],
    "zmieniono_ą" timestamptz DEFAULT clock_timestamp()
);
INSERT INTO "{SCHEMA}"."{TABLE}" ("id", "prix_€", "a ""quoted"" name", "with.dot", "with space",
    "ÉTAT", "états")
SELECT g, g * 1.5, 'q"' || g, g, NULL, (ARRAY['neuf', 'payé "x"', 'ñ'])[1 + g % 3]::"{SCHEMA}"."état",
       ARRAY['ñ', NULL]::"{SCHEMA}"."état"[]
FROM generate_series(1, 20) g;
"""
UNICODE_CHANGES = f"""
UPDATE "{SCHEMA}"."{TABLE}" SET "prix_€" = NULL, "ÉTAT" = 'ñ', "zmieniono_ą" = clock_timestamp()
    WHERE "id" <= 3;
INSERT INTO "{SCHEMA}"."{TABLE}" ("id", "with space") VALUES (100, 'new ✓');
"""
QUOTED_SOURCE = '"sklep ü.€"."zamówienia"'


@pytest.mark.parametrize(
    ("source_kind", "strategy"),
    [
        ("full", StrategySpec(mode="full_refresh")),
        ("full", StrategySpec(mode="full_refresh", method="exchange")),
        ("column", MERGE),
        ("xmin", UPSERT),
        ("cdc", SHADOW),
    ],
    ids=["full", "exchange", "column", "xmin", "cdc"],
)
def test_unicode_and_quoted_identifiers(
    source_kind: str, strategy: StrategySpec, source_uri: str, sink_uri: str, slot: str
) -> None:
    execute(source_uri, UNICODE)
    source = TableName(SCHEMA, TABLE)
    target = TableName("cél ✓", 'zamówienia "kopia".v2')
    quoted_target = '"cél ✓"."zamówienia ""kopia"".v2"'
    make = {
        "full": PostgresTableSource,
        "column": er.cursor_source("zmieniono_ą"),
        "xmin": er.xmin_source,
    }
    for _ in range(2):
        if source_kind == "cdc":
            er.cdc_run(source_uri, sink_uri, slot, source, target, strategy)
        else:
            er.load(source_uri, sink_uri, source, target, strategy, make[source_kind])
        ec.assert_same_rows(source_uri, QUOTED_SOURCE, sink_uri, quoted_target)
        execute(source_uri, UNICODE_CHANGES.replace("100", "101" if _ else "100"))
    enum = fetch(
        sink_uri,
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid ="
        " %s::regclass AND attname = 'ÉTAT'",
        (quoted_target,),
    )
    assert enum == [('"cél ✓"."état"',)]


def test_unicode_identifiers_into_delta(source_uri: str, tmp_path: Path) -> None:
    execute(source_uri, UNICODE)
    # An ASCII folder: polars cannot read back a Delta table under a non-ASCII path
    # (it percent-encodes the data files' paths), which is not what this test is about.
    lake = tmp_path / "zamowienia"
    with er.session(source_uri, ed.SOURCE_SESSION_TZ) as conn:
        source = PostgresTableSource(conn, TableName(SCHEMA, TABLE))
        load_delta(source, str(lake), StrategySpec(mode="full_refresh"), pipeline="zamówienia")
    frame = pl.read_delta(str(lake)).sort("id")
    assert frame.columns == [
        "id",
        "prix_€",
        'a "quoted" name',
        "with.dot",
        "with space",
        "ÉTAT",
        "états",
        "zmieniono_ą",
    ]
    want = fetch(
        source_uri,
        f'SELECT "a ""quoted"" name", "ÉTAT"::text, "états"::text[] FROM {QUOTED_SOURCE}'
        ' ORDER BY "id"',
    )
    assert frame.select('a "quoted" name', "ÉTAT", "états").rows() == [
        (a, b, c) for a, b, c in want
    ]


# -- wide rows, huge values, TOAST under CDC --------------------------------------------------

WIDE_COLUMNS = 320


def wide_sql() -> str:
    kinds = ["int", "text", "numeric(12,2)", "jsonb", "timestamptz"]
    columns = ", ".join(f"c{i:03d} {kinds[i % len(kinds)]}" for i in range(WIDE_COLUMNS))
    values = {
        "int": "g * {i}",
        "text": "'v' || g || '-{i}'",
        "numeric(12,2)": "g * {i} / 7.0",
        "jsonb": "jsonb_build_object('c', {i}, 'g', g)",
        "timestamptz": "'2024-03-31 01:00+00'::timestamptz + g * interval '{i} minutes'",
    }
    selects = ", ".join(
        f"CASE WHEN g % 3 = 0 THEN NULL ELSE {values[kinds[i % len(kinds)]].format(i=i)} END"
        for i in range(WIDE_COLUMNS)
    )
    return (
        f"CREATE TABLE public.wide (id int PRIMARY KEY, {columns},"
        " huge_text text, huge_bytes bytea, huge_json jsonb);"
        "ALTER TABLE public.wide ALTER COLUMN huge_text SET STORAGE EXTERNAL;"
        f"INSERT INTO public.wide SELECT g, {selects}, NULL, NULL, NULL"
        " FROM generate_series(1, 12) g;"
        # Rows of several MB: 2 MB of text, 0.5 MB of bytes, 0.7 MB of JSON.
        "UPDATE public.wide SET huge_text = (SELECT string_agg(md5(x::text), '')"
        "   FROM generate_series(1, 62500) x),"
        " huge_bytes = (SELECT decode(string_agg(md5(x::text), ''), 'hex')"
        "   FROM generate_series(1, 31250) x),"
        " huge_json = (SELECT jsonb_agg(md5(x::text)) FROM generate_series(1, 20000) x)"
        " WHERE id IN (1, 2);"
    )


WIDE_CHANGES = """
UPDATE public.wide SET c000 = -1 WHERE id = 1;
UPDATE public.wide SET c001 = 'changed', c002 = NULL WHERE id = 1;
UPDATE public.wide SET huge_text = huge_text || 'x' WHERE id = 2;
UPDATE public.wide SET id = 200 WHERE id = 2;
UPDATE public.wide SET c003 = '{}' WHERE id = 200;
INSERT INTO public.wide (id, huge_json) SELECT 300, huge_json FROM public.wide WHERE id = 1;
UPDATE public.wide SET c004 = now() WHERE id = 300;
DELETE FROM public.wide WHERE id = 3;
"""


def test_wide_rows_and_huge_toasted_values_through_cdc(
    source_uri: str, sink_uri: str, slot: str
) -> None:
    """Unchanged TOAST values arrive as 'u' markers; the target keeps the old value, also
    across a key change and for a row inserted earlier in the same batch."""
    strategy = UPSERT  # delete_insert meets TOAST markers in test_data_edge_cases
    execute(source_uri, wide_sql())
    table, target = TableName("public", "wide"), TableName("landing", "wide")
    figures = er.Figures(f"wide rows cdc/{strategy.merge_policy}", cases=4)
    er.cdc_run(source_uri, sink_uri, slot, table, target, strategy)
    ec.assert_same_rows(source_uri, "public.wide", sink_uri, "landing.wide")
    execute(source_uri, WIDE_CHANGES)
    result = er.cdc_run(source_uri, sink_uri, slot, table, target, strategy)
    assert result.changes == 8
    figures.rows_compared += ec.assert_same_rows(
        source_uri, "public.wide", sink_uri, "landing.wide"
    )
    sizes = fetch(
        sink_uri,
        "SELECT id, length(huge_text), length(huge_bytes), pg_column_size(huge_json) > 500000"
        " FROM landing.wide WHERE huge_json IS NOT NULL ORDER BY id",
    )
    assert sizes == [(1, 2_000_000, 500_000, True), (200, 2_000_001, 500_000, True),
                     (300, None, None, True)]  # fmt: skip
    figures.loads, figures.paths = 2, [f"cdc/{strategy.merge_policy}"]
    figures.report()


def test_wide_rows_full_and_into_delta(source_uri: str, sink_uri: str, tmp_path: Path) -> None:
    execute(source_uri, wide_sql())
    table, target = TableName("public", "wide"), TableName("landing", "wide")
    result = er.load(source_uri, sink_uri, table, target, StrategySpec(mode="full_refresh"))
    assert result.copy_format == "binary"
    ec.assert_same_rows(source_uri, "public.wide", sink_uri, "landing.wide")
    with er.session(source_uri, ed.SOURCE_SESSION_TZ) as conn:
        load_delta(
            PostgresTableSource(conn, table),
            str(tmp_path / "wide"),
            StrategySpec(mode="full_refresh"),
            pipeline="wide",
            batch_bytes=1 << 20,
        )
    frame = pl.read_delta(str(tmp_path / "wide")).sort("id")
    assert frame.width == WIDE_COLUMNS + 4 and frame.height == 12
    want = fetch(source_uri, "SELECT huge_text, huge_bytes, c001 FROM public.wide ORDER BY id")
    assert frame.select("huge_text", "huge_bytes", "c001").rows() == want


# -- through Dagster ----------------------------------------------------------------------------


def test_edge_cases_through_a_dagster_materialization(
    source_uri: str, sink_uri: str, slot: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGFLOW_CONN_SHOP", source_uri)
    monkeypatch.setenv("PGFLOW_CONN_WAREHOUSE", sink_uri)
    ed.set_database_time_zone(source_uri, sink_uri)
    ed.build_source(source_uri)

    def spec(table: dict, target: str, strategy: dict, **options: object) -> dict:
        return {
            "source": {
                "type": "postgres",
                "connection_id": "shop",
                "table": table,
                **({"options": options} if options else {}),
            },
            "sink": {
                "type": "postgres",
                "connection_id": "warehouse",
                "table": {"schema": "dg", "name": target},
                "strategy": strategy,
            },
        }

    edge = {"schema": "public", "name": "edge"}
    merge = {"mode": "incremental_merge", "unique_key": ["id"], "merge_policy": "upsert"}
    pipelines = [
        spec(edge, "edge_cdc", merge, incremental_strategy="cdc", slot_name=slot),
    ]
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "edge.yaml").write_text(yaml.safe_dump({"pipelines": pipelines}, allow_unicode=True))
    project = load_project(specs)
    figures = er.Figures("dagster", cases=len(ed.CASES), paths=["dagster cdc/upsert"])
    with dg.instance_for_test() as instance:
        for round_ in range(2):
            result = dg.materialize(
                [pipeline_asset(p) for p in project.pipelines],
                instance=instance,
                resources=build_definitions(project).resources,
            )
            assert result.success
            figures.rows_compared += ec.assert_same_rows(
                source_uri, "public.edge", sink_uri, "dg.edge_cdc"
            )
            figures.loads += 1
            if round_ == 0:
                execute(source_uri, ed.change_sql("edge", builtin=False))
    figures.report()


def test_unicode_identifiers_through_a_dagster_materialization(
    source_uri: str, sink_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGFLOW_CONN_SHOP", source_uri)
    monkeypatch.setenv("PGFLOW_CONN_WAREHOUSE", sink_uri)
    execute(source_uri, UNICODE)
    pipeline = {
        "source": {
            "type": "postgres",
            "connection_id": "shop",
            "table": {"schema": SCHEMA, "name": TABLE},
        },
        "sink": {
            "type": "postgres",
            "connection_id": "warehouse",
            "table": {"schema": "dg", "name": "zamowienia"},
            "strategy": {"mode": "full_refresh"},
        },
    }
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "z.yaml").write_text(yaml.safe_dump(pipeline, allow_unicode=True))
    project = load_project(specs)
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [pipeline_asset(p) for p in project.pipelines],
            instance=instance,
            resources=build_definitions(project).resources,
        )
    assert result.success
    ec.assert_same_rows(source_uri, QUOTED_SOURCE, sink_uri, "dg.zamowienia")
