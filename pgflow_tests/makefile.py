"""What the Makefile exports to every `make` run, for runs that do not go through make."""

from __future__ import annotations

import re
from pathlib import Path

MAKEFILE = Path(__file__).resolve().parents[1] / "Makefile"

# jemalloc's page decay for polars and deltalake (README "Memory"): a deployment setting.
JEMALLOC_SETTING = "_RJEM_MALLOC_CONF"


def exported_default(name: str) -> str:
    """The value of the Makefile's `export NAME ?= value` line."""
    pattern = rf"^export {re.escape(name)} \?= (\S+)$"
    match = re.search(pattern, MAKEFILE.read_text(), re.MULTILINE)
    if match is None:
        raise LookupError(f"the Makefile exports no default for {name}")
    return match.group(1)
