"""What a `source.query` load says of its source: the tables Postgres planned to read
(`pgflow/source_tables`) and, for output columns that are plain columns of a table, column
lineage to that table's source asset key (`<connection_id>/<schema>/<table>`: the asset a
pipeline reading the table has; Dagster shows the key either way)."""

from __future__ import annotations

from typing import Any

import dagster as dg

from pgflow.config.model import PipelineSpec, SourceSpec
from pgflow.config.naming import quoted, source_key
from pgflow.sources.base import TableSource
from pgflow.sources.query import QueryRead


def query_metadata(spec: PipelineSpec, reader: TableSource) -> dict[str, Any]:
    """The lineage of a query read (after its load); {} for any other reader."""
    if not isinstance(reader, QueryRead):
        return {}
    shape, source = reader.shape, spec.source
    tables = [quoted(table) for table in shape.tables]
    deps = {}
    for column in reader.info.column_names:
        origin = shape.origins.get(column)
        if origin is None:
            continue  # computed from several columns, or a constant: Postgres cannot tell
        table, name = origin
        key = dg.AssetKey(
            list(
                source_key(
                    SourceSpec("postgres", source.connection_id, source.connection_type, table)
                )
            )
        )
        deps[column] = [dg.TableColumnDep(asset_key=key, column_name=name)]
    lineage = dg.TableColumnLineage(deps_by_column=deps)
    return {
        "pgflow/source_tables": dg.MetadataValue.json(tables),
        "dagster/column_lineage": dg.MetadataValue.column_lineage(lineage),
    }
