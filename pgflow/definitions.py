"""The pgflow code location: `dg dev` / `dg launch` in this project, `dagster dev -m
pgflow.definitions`, or workspace.yaml. A Dagster project of its own adds pgflow as a
Component instead (`type: pgflow.PgflowComponent`, pgflow/component.py).

Specs are read from $PGFLOW_CONFIG (a file or a folder; default ./pipelines) and validated
here, so a bad spec fails the code location load with a message naming file and field. A
schema-wide spec expands from the table cache next to it; without one, the source schema is
listed once and the cache written.
"""

from pgflow.bindings.definitions import load_definitions

defs = load_definitions()
