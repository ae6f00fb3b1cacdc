"""Object-store settings for Delta tables (`storage_options` of delta-rs), as a resource.

Values come from the environment, never from specs: `PGFLOW_DELTA_<OPTION>` sets option
`<option>` (e.g. PGFLOW_DELTA_AWS_REGION -> aws_region). Local paths need none.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import dagster as dg
from pydantic import Field

from pgflow.connections.delta_writes import PREFIX, UnsafeDeltaStorage, write_storage_options

__all__ = ["PREFIX", "DeltaStorage", "UnsafeDeltaStorage", "write_storage_options"]


def storage_options_from_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    environ = os.environ if environ is None else environ
    return {k[len(PREFIX) :].lower(): v for k, v in environ.items() if k.startswith(PREFIX)}


class DeltaStorage(dg.ConfigurableResource["DeltaStorage"]):
    """delta-rs storage options; empty means each option comes from PGFLOW_DELTA_* at run time."""

    options: dict[str, str] = Field(default_factory=dict)

    def storage_options(self) -> dict[str, str] | None:
        return dict(self.options) or storage_options_from_env() or None
