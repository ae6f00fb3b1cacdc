"""dagster-sling as its docs show it (`sling_assets` over a replication config, `SlingResource`
with one `SlingConnectionResource` per side), for the bench's in-Dagster comparison
(bench/in_dagster.py). Run in its own venv (.pgflow/bench/dagster-sling-venv) as

    dagster asset materialize -f bench/peers/dagster_sling_defs.py --select '*'

Environment: BENCH_SOURCE_URI, BENCH_SINK_URI (connection URLs), BENCH_SLING_OBJECT (the
target "schema.table"), BENCH_SLING_MODE ("full-refresh", or "incremental": primary key id,
update key updated_at), SLING_BINARY (the sling-linux-amd64 package's binary: the `sling`
package's documented setting; without it, it downloads one). It imports nothing from pgflow.
"""

import os
from collections.abc import Iterator
from typing import Any

import dagster as dg
from dagster_sling import SlingConnectionResource, SlingResource, sling_assets

MODE = os.environ.get("BENCH_SLING_MODE", "incremental")
STREAM = {"object": os.environ.get("BENCH_SLING_OBJECT", "sling.orders"), "mode": MODE}
if MODE == "incremental":
    STREAM |= {"primary_key": ["id"], "update_key": "updated_at"}

REPLICATION = {
    "source": "BENCH_SOURCE",
    "target": "BENCH_SINK",
    "streams": {"public.orders": STREAM},
}


@sling_assets(replication_config=REPLICATION)
def orders_replication(context: dg.AssetExecutionContext, sling: SlingResource) -> Iterator[Any]:
    yield from sling.replicate(context=context)


defs = dg.Definitions(
    assets=[orders_replication],
    resources={
        "sling": SlingResource(
            connections=[
                SlingConnectionResource(
                    name="BENCH_SOURCE",
                    type="postgres",
                    connection_string=dg.EnvVar("BENCH_SOURCE_URI"),
                ),
                SlingConnectionResource(
                    name="BENCH_SINK",
                    type="postgres",
                    connection_string=dg.EnvVar("BENCH_SINK_URI"),
                ),
            ]
        )
    },
)
