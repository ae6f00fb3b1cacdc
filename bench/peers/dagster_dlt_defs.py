"""dagster-dlt as its docs show it (`@dlt_assets` over a dlt source, `DagsterDltResource`),
the source one `sql_table` (pyarrow backend), for the bench's in-Dagster comparison
(bench/in_dagster.py). Run in its own venv (.pgflow/bench/dagster-dlt-venv) as

    dagster asset materialize -f bench/peers/dagster_dlt_defs.py --select '*'

Environment: BENCH_SOURCE_URI, BENCH_SINK_URI (connection URLs), BENCH_DLT_DATASET (the target
schema), BENCH_DLT_PIPELINES_DIR (dlt's local state), BENCH_DLT_DISPOSITION ("replace": the
whole table; "merge": incremental on updated_at, merged on primary key id). It imports nothing
from pgflow.
"""

import os
from collections.abc import Iterator
from typing import Any

import dagster as dg
import dlt
from dagster_dlt import DagsterDltResource, dlt_assets
from dlt.sources.sql_database import sql_table

MERGE = os.environ.get("BENCH_DLT_DISPOSITION", "merge") == "merge"
DATASET = os.environ.get("BENCH_DLT_DATASET", "dagster_dlt")


@dlt.source(name="bench")
def orders_source() -> Any:
    # SQLAlchemy 2.1 maps postgresql:// to psycopg 3; dlt[postgres] ships psycopg2.
    uri = os.environ["BENCH_SOURCE_URI"].replace("postgresql://", "postgresql+psycopg2://", 1)
    return sql_table(
        credentials=uri,
        table="orders",
        schema="public",
        incremental=dlt.sources.incremental("updated_at") if MERGE else None,
        backend="pyarrow",
        primary_key="id",
        write_disposition="merge" if MERGE else "replace",
    )


@dlt_assets(
    dlt_source=orders_source(),
    dlt_pipeline=dlt.pipeline(
        pipeline_name=DATASET,
        destination=dlt.destinations.postgres(credentials=os.environ.get("BENCH_SINK_URI")),
        dataset_name=DATASET,
        pipelines_dir=os.environ.get("BENCH_DLT_PIPELINES_DIR"),
    ),
    name="orders_load",
)
def orders_load(context: dg.AssetExecutionContext, dlt: DagsterDltResource) -> Iterator[Any]:
    yield from dlt.run(context=context)


defs = dg.Definitions(assets=[orders_load], resources={"dlt": DagsterDltResource()})
