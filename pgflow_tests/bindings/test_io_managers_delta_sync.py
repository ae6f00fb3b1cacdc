"""A Delta -> Postgres pipeline through `dagster asset materialize`: the first run syncs the
table, an unchanged re-run is skipped by version, a new version updates just its rows."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from deltalake import write_deltalake

from pgflow_tests.bindings.conftest import DagsterSetup
from pgflow_tests.bindings.test_definitions_cli import materialize, rows
from pgflow_tests.bindings.test_io_managers_incremental import metadata_of

SPEC = """
source:
  type: delta
  path: {path}
sink:
  type: postgres
  connection_id: warehouse
  table: {{schema: landing, name: prices}}
  strategy: {{mode: incremental_merge, unique_key: [id]}}
"""


def prices(n: int, bump: int = 0) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": list(range(1, n + 1)),
            "price": [i * 10 + (bump if i <= 3 else 0) for i in range(1, n + 1)],
        }
    )


def test_delta_table_synced_then_skipped_then_updated(
    dagster_setup: DagsterSetup, tmp_path: Path
) -> None:
    setup = dagster_setup
    lake = tmp_path / "lake" / "prices"
    write_deltalake(str(lake), prices(50))
    (setup.specs / "items.yaml").write_text(SPEC.format(path=lake))

    first = materialize(setup, "landing/prices")
    assert first.returncode == 0, first.stderr[-3000:]
    assert rows(setup.sink_uri, "SELECT count(*), sum(price) FROM landing.prices") == [(50, 12750)]
    assert metadata_of(setup, "prices")["pgflow/rows_inserted"] == 50
    assert metadata_of(setup, "prices")["pgflow/retries"] == 0  # the step's first try

    again = materialize(setup, "landing/prices")
    assert again.returncode == 0, again.stderr[-3000:]
    skipped = metadata_of(setup, "prices")
    assert skipped["pgflow/skipped"] is True and skipped["pgflow/rows_read"] == 0

    write_deltalake(str(lake), prices(50, bump=1), mode="overwrite")
    updated = materialize(setup, "landing/prices")
    assert updated.returncode == 0, updated.stderr[-3000:]
    changed = metadata_of(setup, "prices")
    assert (changed["pgflow/delta_version"], changed["pgflow/rows_updated"]) == (1, 3)
    assert rows(setup.sink_uri, "SELECT sum(price) FROM landing.prices") == [(12753,)]
