"""The demo's code location: pgflow's assets (the specs in this folder) plus a downstream asset
of the demo's own that reads a pgflow Delta table as a polars LazyFrame.

`dagster asset materialize -f pipelines/definitions.py --select reports/daily_revenue` (as
`make demo` does); pgflow's own location is `pgflow.definitions`.
"""

import dagster as dg
import polars as pl

# The module, not its `defs`: Dagster refuses two Definitions objects at module scope.
import pgflow.definitions


@dg.asset(
    key=["reports", "daily_revenue"],
    # The orders' Delta table, kept up to date by CDC (orders_lake in shop.yaml).
    ins={"orders": dg.AssetIn(key=["delta", "orders"])},
    group_name="shop",
    kinds={"polars"},
    description="Revenue per day of the orders not cancelled, from the orders' Delta table.",
)
def daily_revenue(context: dg.AssetExecutionContext, orders: pl.LazyFrame) -> pl.DataFrame:
    # Lazy until collect: polars reads only the three columns used from the Delta files.
    revenue = (
        orders.filter(pl.col("status") != "cancelled")
        .group_by(pl.col("placed_at").dt.date().alias("day"))
        .agg(pl.len().alias("orders"), pl.col("total").sum().alias("revenue"))
        .sort("day")
        .collect()
    )
    context.add_output_metadata(
        {
            "dagster/row_count": len(revenue),
            "orders": int(revenue["orders"].sum()),
            "revenue": str(revenue["revenue"].sum()),
            "last_days": dg.MetadataValue.md(f"```\n{revenue.tail(7)}\n```"),
        }
    )
    return revenue


defs = dg.Definitions.merge(pgflow.definitions.defs, dg.Definitions(assets=[daily_revenue]))
