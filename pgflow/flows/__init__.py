"""Orchestration: the runs that drive a source and a sink together (table loads, CDC, the
Delta -> Postgres sync). Above sources and sinks, below the Dagster bindings."""
