"""The pgflow code location: `dagster dev -m pgflow.definitions` or workspace.yaml.

Specs are read from $PGFLOW_CONFIG (a file or a folder; default ./pipelines) and validated
here, so a bad spec fails the code location load with a message naming file and field. A
schema-wide spec expands from the table cache next to it; without one, the source schema is
listed once and the cache written.
"""

import logging

from pgflow.bindings.definitions import build_definitions, collector_paused
from pgflow.config.loader import load_project
from pgflow.sources.table_listing import live_lister

with collector_paused():
    project = load_project(lister=live_lister())
    for note in project.notes:
        logging.getLogger("pgflow").warning(note)
    defs = build_definitions(project)
    defs.get_repository_def()  # resolved here, with the collector paused; Dagster reuses it
