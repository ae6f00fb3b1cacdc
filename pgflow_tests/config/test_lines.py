"""Each pipeline keeps the line its spec starts on: a `pipelines:` entry, a file's top-level
pipeline, a schema-wide spec's `tables:` entry; anchors and merge keys change nothing."""

from __future__ import annotations

import copy
from pathlib import Path

from pgflow.config.lines import LinedDict
from pgflow.config.loader import load_project, parse_yaml
from pgflow.config.wildcards import ListedTable, SchemaListing

ENV = {"PGFLOW_CONN_SHOP": "postgresql://x@h/shop", "PGFLOW_CONN_WAREHOUSE": "postgresql://x@h/wh"}

LIST = """\
connections: {shop: {type: env}}
pipelines:
  - source: {type: postgres, connection_id: shop, table: {schema: public, name: a}}
    sink: &sink
      type: postgres
      connection_id: warehouse
      table: {schema: landing, name: a}
      strategy: {mode: full_refresh}

  # the second one
  - name: b
    source: {type: postgres, connection_id: shop, table: {schema: public, name: b}}
    sink: {<<: *sink, table: {schema: landing, name: b}}
"""

TOP_LEVEL = """\
# one pipeline, its connections first
connections:
  shop: {type: env}

sink:
  type: postgres
  connection_id: warehouse
  table: {schema: landing, name: c}
  strategy: {mode: full_refresh}
source: {type: postgres, connection_id: shop, table: {schema: public, name: c}}
"""

WILDCARD = """\
source:
  type: postgres
  connection_id: shop
  table: {schema: catalog, name: "*"}
sink:
  type: postgres
  connection_id: warehouse
  table: {schema: landing_catalog}
  strategy: {mode: full_refresh}
name: catalog
tables:
  parts:
    description: Parts.
"""


def lister(connection_id: str, connection_type: str, schema: str) -> SchemaListing:
    tables = (ListedTable("parts", "table", ("id",)), ListedTable("tools", "table", ("id",)))
    return SchemaListing(connection_id, schema, True, tables, "2026-01-01T00:00:00+00:00")


def lines(folder: Path) -> dict[str, tuple[str, int | None]]:
    project = load_project(folder, ENV, lister=lister)
    return {p.name: (p.file.name, p.line) for p in project.pipelines}


def test_each_pipeline_keeps_the_line_it_starts_on(tmp_path: Path) -> None:
    (tmp_path / "list.yaml").write_text(LIST)
    (tmp_path / "top.yaml").write_text(TOP_LEVEL)
    (tmp_path / "catalog.yaml").write_text(WILDCARD)
    assert lines(tmp_path) == {
        "landing_a": ("list.yaml", 3),
        "b": ("list.yaml", 11),
        "landing_c": ("top.yaml", 5),  # the first pipeline key, after `connections:`
        "catalog_parts": ("catalog.yaml", 12),  # its `tables:` entry
        "catalog_tools": ("catalog.yaml", 1),  # no entry: the schema-wide spec's
    }


def test_parsed_mappings_are_plain_mappings_that_survive_a_deep_copy() -> None:
    document = parse_yaml(LIST)
    assert document["pipelines"][1]["sink"] == {
        "type": "postgres",
        "connection_id": "warehouse",
        "strategy": {"mode": "full_refresh"},
        "table": {"schema": "landing", "name": "b"},
    }
    copied = copy.deepcopy(document["pipelines"][1])
    assert isinstance(copied, LinedDict) and copied.line == 11
    assert copied.key_lines == {"name": 11, "source": 12, "sink": 13}
