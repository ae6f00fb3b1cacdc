"""The Delta Lake sink: Postgres tables streamed into Delta tables, one commit per load."""

from pgflow.sinks.delta.scan import scan_delta_table
from pgflow.sinks.delta.state import stored_position

__all__ = ["scan_delta_table", "stored_position"]
