"""Source data edge cases replicate exactly into Postgres, for every source kind and strategy.

Every case of `edge_data.CASES` (NULLs everywhere, NaN and infinities, DST, escaping, empty
values, arrays of every shape, composites, enums, domains, TOAST, generated and identity
columns, ...) is loaded along each path, changed at the source, loaded again, and the target
compared with the source row by row as Postgres renders it. `edge` has user-defined types
(text COPY), `edge_builtin` only built-in ones (binary COPY).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from pgflow.config.model import StrategySpec, TableName
from pgflow.flows.cdc.model import CdcApplyError
from pgflow.sources.postgres import PostgresTableSource
from pgflow_tests.pg import drop_slots, execute, fetch, slot_name_for
from pgflow_tests.reliability import edge_compare as ec
from pgflow_tests.reliability import edge_data as ed
from pgflow_tests.reliability import edge_runs as er

MERGE = StrategySpec(mode="incremental_merge", unique_key=("id",))
UPSERT = StrategySpec(mode="incremental_merge", unique_key=("id",), merge_policy="upsert")
SHADOW = StrategySpec(mode="incremental_merge", unique_key=("id",), merge_policy="shadow_swap")
TABLES = (("edge", False), ("edge_builtin", True))


@dataclass(frozen=True)
class Path:
    """A source kind and a sink strategy; `deletes`: source deletes reach the target."""

    source: str  # full | column | xmin | cdc
    strategy: StrategySpec
    deletes: bool

    def make_source(self) -> Callable[..., PostgresTableSource]:
        if self.source == "column":
            return er.cursor_source("updated_at", on_null_cursor="include")
        if self.source == "xmin":
            return er.xmin_source
        return PostgresTableSource


PATHS: dict[str, Path] = {
    "full/truncate_insert": Path("full", StrategySpec(mode="full_refresh"), True),
    "full/exchange": Path("full", StrategySpec(mode="full_refresh", method="exchange"), True),
    "full/replace": Path("full", StrategySpec(mode="replace", custom_predicate="true"), True),
    "full/shadow_swap": Path("full", SHADOW, False),
    "column/delete_insert": Path("column", MERGE, False),
    "xmin/upsert": Path("xmin", UPSERT, False),
    "cdc/delete_insert": Path("cdc", MERGE, True),
    "cdc/upsert": Path("cdc", UPSERT, True),
    # cdc/shadow_swap: in test_data_shapes (unicode identifiers), as its apply is upsert's.
}


@pytest.fixture
def slot(source_uri: str) -> Iterator[str]:
    name = slot_name_for(source_uri)
    yield name
    drop_slots(source_uri, name)


def run_path(path: Path, source_uri: str, sink_uri: str, slot: str, table: str) -> None:
    source, target = TableName("public", table), TableName("landing", table)
    if path.source == "cdc":
        er.cdc_run(source_uri, sink_uri, slot, source, target, path.strategy)
    else:
        er.load(source_uri, sink_uri, source, target, path.strategy, path.make_source())


@pytest.mark.parametrize("name", list(PATHS))
def test_every_case_replicates_exactly(
    name: str, source_uri: str, sink_uri: str, slot: str
) -> None:
    path = PATHS[name]
    figures = er.Figures(f"postgres {name}", cases=len(ed.CASES), paths=[name])
    ed.set_database_time_zone(source_uri, sink_uri)
    ed.build_source(source_uri)
    for table, _ in TABLES:
        run_path(path, source_uri, sink_uri, slot if table == "edge" else f"{slot}_b", table)
        figures.loads += 1
        figures.rows_compared += ec.assert_same_rows(
            source_uri, f"public.{table}", sink_uri, f"landing.{table}"
        )
    for table, builtin in TABLES:
        execute(source_uri, ed.change_sql(table, builtin, deletes=path.deletes))
    # The changes, then (CDC) a run with nothing new.
    for _ in range(2 if path.source == "cdc" else 1):
        for table, _ in TABLES:
            run_path(path, source_uri, sink_uri, slot if table == "edge" else f"{slot}_b", table)
            figures.loads += 1
            figures.rows_compared += ec.assert_same_rows(
                source_uri, f"public.{table}", sink_uri, f"landing.{table}"
            )
    drop_slots(source_uri, f"{slot}_b")
    figures.report()


def test_cdc_generated_column_the_sink_cannot_compute_fails_naming_it(
    source_uri: str, sink_uri: str, slot: str
) -> None:
    """Logical replication does not send generated columns; pgflow computes them in the sink
    from the source's expression. An expression the sink cannot run stops the batch, with
    nothing of it applied; once the sink has the function, the run goes through."""
    execute(
        source_uri,
        "CREATE FUNCTION twice(int) RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT $1 * 2';"
        "CREATE TABLE public.g (id int PRIMARY KEY, v int,"
        " w int GENERATED ALWAYS AS (twice(v)) STORED);"
        "INSERT INTO public.g (id, v) VALUES (1, 1)",
    )
    table, target = TableName("public", "g"), TableName("landing", "g")
    er.cdc_run(source_uri, sink_uri, slot, table, target, MERGE)
    execute(
        source_uri, "INSERT INTO public.g (id, v) VALUES (2, 2); UPDATE g SET v = 5 WHERE id = 1"
    )
    with pytest.raises(CdcApplyError) as failed:
        er.cdc_run(source_uri, sink_uri, slot, table, target, MERGE)
    assert str(failed.value).startswith(
        "logical replication does not send the source's generated column(s) w (GENERATED "
        "ALWAYS AS (twice(v))); pgflow computes them in the sink, where this failed: function "
        "twice(integer) does not exist"
    )
    assert fetch(sink_uri, "SELECT * FROM landing.g") == [(1, 1, 2)]
    execute(
        sink_uri, "CREATE FUNCTION twice(int) RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT $1 * 2'"
    )
    er.cdc_run(source_uri, sink_uri, slot, table, target, MERGE)
    assert fetch(sink_uri, "SELECT * FROM landing.g ORDER BY id") == [(1, 5, 10), (2, 2, 4)]
