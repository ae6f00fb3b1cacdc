"""Source data edge cases through Delta Lake: Postgres -> Delta (pgflow's Delta sink), then
Delta -> Postgres (pgflow's sync), compared column by column with the source.

Each column is compared with what its Delta type promises (`EXPECTED`): every built-in type
comes back with its type and value (unconstrained numerics: the same number); enums,
composites and arrays of them arrive as their Postgres text. Values with no Delta form at
all (numeric NaN/Infinity, infinite dates and timestamps, arrays of two or more dimensions
or not 1-based, numerics past Decimal(38)) fail the load naming the column and the way out, before
a commit: no table is created, an existing one keeps its version.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable
from psycopg.conninfo import make_conninfo

from pgflow.config.model import StrategySpec, TableName
from pgflow.flows.delta_load import load_delta
from pgflow.flows.delta_sync.run import sync_delta
from pgflow.flows.delta_sync.settings import SyncSettings
from pgflow.sources.arrow_errors import ArrowReadError
from pgflow.sources.column_cursor import ColumnCursorSource
from pgflow.sources.postgres import PostgresTableSource
from pgflow_tests.pg import execute, fetch
from pgflow_tests.reliability import edge_compare as ec
from pgflow_tests.reliability import edge_data as ed
from pgflow_tests.reliability import edge_runs as er

SETTINGS = SyncSettings(
    postgres_batch_size=7,
    delta_batch_size=5,
    postgres_max_retries=1,
    postgres_retry_delay=0.01,
    delta_max_retries=1,
    delta_retry_delay=0.01,
)
# Columns without a Delta form for some case: left out of edge_delta, tested as errors below.
LEFT_OUT = frozenset({"grid"})
# Values with no Delta form, set NULL in edge_delta (each is an error case below).
NO_DELTA_FORM = """
UPDATE public.edge_delta SET n = NULL WHERE n IN ('NaN', 'Infinity', '-Infinity')
    OR abs(n) >= 1e29;
UPDATE public.edge_delta SET ts = NULL WHERE NOT isfinite(ts);
UPDATE public.edge_delta SET tstz = NULL WHERE NOT isfinite(tstz);
UPDATE public.edge_delta SET d = NULL WHERE NOT isfinite(d);
UPDATE public.edge_delta SET nums = NULL WHERE array_lower(nums, 1) <> 1;
"""
# What each column becomes in Postgres after Delta, as text, from the source column.
EXPECTED = {
    "n": "trim_scale({})",  # unconstrained numeric: the same number (not its display scale)
    "ps": "{}::text[]",  # composite arrays: lists of the elements' text
    "moods": "{}::text[]",  # enum arrays: lists of labels
    "il": "{}::int[]",  # a domain over int[]: its base type
}


def delta_table_sql() -> str:
    columns = ed.edge_columns(builtin=False, exclude=LEFT_OUT)
    body = ", ".join(f'"{n}" {t}' for n, t in columns)
    names = ", ".join(f'"{n}"' for n, t in columns if "GENERATED ALWAYS" not in t)
    return (
        f"CREATE TABLE public.edge_delta ({body});"
        f" INSERT INTO public.edge_delta ({names}) SELECT {names} FROM public.edge;" + NO_DELTA_FORM
    )


def delta_load(
    source_uri: str, path: Path, strategy: StrategySpec, table: str = "edge_delta", **kwargs
):
    make = kwargs.pop("make_source", PostgresTableSource)
    with er.session(source_uri, ed.SOURCE_SESSION_TZ) as conn:
        return load_delta(
            make(conn, TableName("public", table)), str(path), strategy, pipeline=table, **kwargs
        )


def sync_back(sink_uri: str, path: Path, deletes: str = "none"):
    uri = make_conninfo(sink_uri, options=f"-c TimeZone={ed.SINK_SESSION_TZ}")
    return sync_delta(
        uri,
        str(path),
        TableName("gold", "edge_delta"),
        ("id",),
        pipeline="edge_delta",
        settings=SETTINGS,
        deletes=deletes,  # type: ignore[arg-type]
    )


def columns_of(uri: str, table: str) -> list[str]:
    return [
        r[0]
        for r in fetch(
            uri,
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0"
            " AND NOT attisdropped ORDER BY attnum",
            (table,),
        )
    ]


def assert_round_trip(source_uri: str, sink_uri: str) -> int:
    """Every column of every row, source (as Delta maps it) == target; cells compared."""
    names = columns_of(source_uri, "public.edge_delta")
    # format('%s'): the output function's text, as COPY gives it (char(n) padded, inet bare).
    want_sql = ", ".join(
        "format('%s', " + EXPECTED.get(n, "{}").format(f'"{n}"') + ")" for n in names
    )
    have_sql = ", ".join(
        "format('%s', " + ("trim_scale({})" if n == "n" else "{}").format(f'"{n}"') + ")"
        for n in names
    )
    want = ec.rows_text(source_uri, f"SELECT {want_sql} FROM public.edge_delta t ORDER BY t.id")
    have = ec.rows_text(sink_uri, f"SELECT {have_sql} FROM gold.edge_delta t ORDER BY t.id")
    differences = [
        f"id {w[0]} column {name}: source {a!r:.120}, target {b!r:.120}"
        for w, h in zip(want, have, strict=False)
        for name, a, b in zip(names, w, h, strict=True)
        if a != b
    ]
    assert len(want) == len(have) and not differences, differences[:8]
    return len(want) * len(names)


def assert_target_types(sink_uri: str) -> None:
    """The synced target's types are the Delta types' Postgres forms."""
    types = dict(
        fetch(
            sink_uri,
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = 'gold.edge_delta'::regclass AND attnum > 0",
        )
    )
    assert {k: types[k] for k in ("n", "n12", "f4", "ts", "tstz", "raw", "ints", "f8s")} == {
        "n": "numeric",
        "n12": "numeric(12,3)",
        "f4": "real",
        "ts": "timestamp without time zone",
        "tstz": "timestamp with time zone",
        "raw": "bytea",
        "ints": "integer[]",
        "f8s": "double precision[]",
    }


def test_every_case_round_trips_through_delta(
    source_uri: str, sink_uri: str, tmp_path: Path
) -> None:
    figures = er.Figures("delta round trip", cases=len(ed.CASES))
    ed.set_database_time_zone(source_uri, sink_uri)
    ed.build_source(source_uri)
    execute(source_uri, delta_table_sql())
    lake = tmp_path / "edge_delta"
    cursor = lambda conn, table: ColumnCursorSource(  # noqa: E731
        conn, table, "updated_at", on_null_cursor="include"
    )
    merge = StrategySpec(mode="incremental_merge", unique_key=("id",))
    for name, strategy, make in (
        ("full_refresh", StrategySpec(mode="full_refresh"), PostgresTableSource),
        ("column/merge", merge, cursor),
    ):
        lake = tmp_path / name.replace("/", "_")
        delta_load(source_uri, lake, strategy, make_source=make)
        sync_back(sink_uri, lake)
        figures.rows_compared += assert_round_trip(source_uri, sink_uri)
        # Changes, loaded and synced again (merge: no deletes, they stay in the target).
        execute(
            source_uri, ed.change_sql("edge_delta", builtin=False, deletes=False, exclude=LEFT_OUT)
        )
        execute(source_uri, NO_DELTA_FORM)
        delta_load(source_uri, lake, strategy, make_source=make)
        sync_back(sink_uri, lake)
        figures.rows_compared += assert_round_trip(source_uri, sink_uri)
        assert_target_types(sink_uri)
        figures.paths.append(f"{name} -> delta -> sync")
        figures.loads += 4
        execute(sink_uri, "DROP TABLE gold.edge_delta; DELETE FROM _pgflow.pipeline_state")
        execute(source_uri, "DELETE FROM public.edge_delta WHERE id > 100")
    figures.report()


def test_empty_tables_through_delta(source_uri: str, sink_uri: str, tmp_path: Path) -> None:
    ed.build_source(source_uri)
    execute(source_uri, delta_table_sql() + "DELETE FROM public.edge_delta;")
    lake = tmp_path / "empty"
    first = delta_load(source_uri, lake, StrategySpec(mode="full_refresh"))
    assert first.created_table and first.rows_read == 0
    table = DeltaTable(str(lake))
    assert len(table.schema().fields) == len(columns_of(source_uri, "public.edge_delta"))
    assert pl.read_delta(str(lake)).height == 0
    synced = sync_back(sink_uri, lake, deletes="key_pass")
    assert synced.created_target and fetch(sink_uri, "SELECT count(*) FROM gold.edge_delta") == [
        (0,)
    ]
    # Filled, then emptied: the Delta table and the synced target become empty again.
    execute(source_uri, delta_table_sql().split(";", 1)[1])
    delta_load(source_uri, lake, StrategySpec(mode="full_refresh"))
    sync_back(sink_uri, lake, deletes="key_pass")
    assert assert_round_trip(source_uri, sink_uri) > 0
    execute(source_uri, "DELETE FROM public.edge_delta")
    emptied = delta_load(source_uri, lake, StrategySpec(mode="full_refresh"))
    assert emptied.rows_read == 0
    sync_back(sink_uri, lake, deletes="key_pass")
    assert fetch(sink_uri, "SELECT count(*) FROM gold.edge_delta") == [(0,)]


NO_ARROW_FORM = "holds a value with no Delta/Arrow"
NO_DECIMAL = "which no Delta decimal (at most 38 digits) can hold exactly; nothing was written"
NO_LIST = "which a Delta list cannot hold faithfully"
NO_TIME = "which a Delta timestamp cannot hold"
# (column type, value, what the error must say)
NO_FORM = {
    "numeric NaN": ("numeric", "'NaN'", f"holds 'NaN', {NO_DECIMAL}"),
    "numeric Infinity": ("numeric", "'Infinity'", f"holds 'Infinity', {NO_DECIMAL}"),
    "numeric(10,2) NaN": ("numeric(10,2)", "'NaN'", NO_ARROW_FORM),
    "numeric past Decimal(38)": ("numeric", "1e38", f"holds '1{'0' * 38}', {NO_DECIMAL}"),
    "timestamp infinity": ("timestamp", "'infinity'", f"holds 'infinity', {NO_TIME}"),
    "timestamptz -infinity": ("timestamptz", "'-infinity'", f"holds '-infinity', {NO_TIME}"),
    "date infinity": ("date", "'infinity'", "holds 'infinity', which a Delta date cannot hold"),
    "two-dimensional int[]": (
        "int[]",
        "'{{1,2},{3,4}}'",
        f"{{{{1,2}},{{3,4}}}}, {NO_LIST} (it has several dimensions)",
    ),
    "two-dimensional text[]": (
        "text[]",
        "'{{a,b},{c,d}}'",
        f"{{{{a,b}},{{c,d}}}}, {NO_LIST} (it has several dimensions)",
    ),
    "numeric[] from 0": (
        "numeric[]",
        "'[0:1]={1.5,2}'",
        f"[0:1]={{1.5,2}}, {NO_LIST} (its lower bound is not 1)",
    ),
}


@pytest.mark.parametrize("case", list(NO_FORM))
def test_values_without_a_delta_form_fail_naming_the_column_before_any_commit(
    case: str, source_uri: str, tmp_path: Path
) -> None:
    type_sql, value, says = NO_FORM[case]
    execute(
        source_uri,
        f'CREATE TABLE public.odd (id int PRIMARY KEY, "prix_€ x" {type_sql});'
        "INSERT INTO public.odd VALUES (1, NULL);",
    )
    lake = tmp_path / "odd"
    first = delta_load(source_uri, lake, StrategySpec(mode="full_refresh"), table="odd")
    assert first.version_after == 0
    execute(source_uri, f"INSERT INTO public.odd VALUES (2, {value})")
    with pytest.raises(ArrowReadError) as failed:
        delta_load(source_uri, lake, StrategySpec(mode="full_refresh"), table="odd")
    message = str(failed.value)
    assert f"reading public.odd: column prix_€ x ({type_sql.replace('[]', '')}" in message.replace(
        "timestamp without time zone", "timestamp").replace("timestamp with time zone",
        "timestamptz").replace("[]", ""), message  # fmt: skip
    assert says in message and "nothing was written" in message, message
    if says == NO_ARROW_FORM:
        assert "Fix the value in the source, or change the column's type there" in message
    assert DeltaTable(str(lake)).version() == 0  # nothing committed
    # On a first load: no table at all.
    with pytest.raises(ArrowReadError):
        delta_load(source_uri, tmp_path / "new", StrategySpec(mode="full_refresh"), table="odd")
    assert not DeltaTable.is_deltatable(str(tmp_path / "new"))
