"""The pgflow code location: `dagster dev -m pgflow.definitions` or workspace.yaml.

Specs are read from $PGFLOW_CONFIG (a file or a folder; default ./pipelines) and validated
here, so a bad spec fails the code location load with a message naming file and field.
"""

from pgflow.bindings.definitions import build_definitions
from pgflow.config.loader import load_project

defs = build_definitions(load_project())
