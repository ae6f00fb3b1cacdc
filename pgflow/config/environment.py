"""The environment variables the specs depend on: where they are, and a connection's URI."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

DEFAULT_CONFIG_PATH = "pipelines"


def env_var_for(connection_id: str) -> str:
    """`PGFLOW_CONN_<ID>`: upper-cased, anything but letters and digits as `_`."""
    return "PGFLOW_CONN_" + re.sub(r"[^A-Z0-9]", "_", connection_id.upper())


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    return Path(environ.get("PGFLOW_CONFIG") or DEFAULT_CONFIG_PATH)
