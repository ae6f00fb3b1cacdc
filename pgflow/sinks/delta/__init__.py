"""The Delta Lake sink: Postgres tables streamed into Delta tables, one commit per load."""

from pgflow.sinks.delta.load import DeltaLoadResult, load_delta
from pgflow.sinks.delta.scan import scan_delta_table
from pgflow.sinks.delta.state import stored_position

__all__ = ["DeltaLoadResult", "load_delta", "scan_delta_table", "stored_position"]
