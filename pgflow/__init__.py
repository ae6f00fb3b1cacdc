"""pgflow: PostgreSQL tables replicated into Postgres and Delta Lake as Dagster assets."""

import os

# polars and deltalake each bundle jemalloc, which keeps freed pages resident for a while
# (polars sets 0.5 s dirty + 1 s muzzy): under a streaming Delta load that is some 30 MB on
# top of the live batches. Give them back sooner (measured no slower). jemalloc reads this
# when the first of the two loads, so it is set here, before either is imported; polars
# puts its defaults in front and the last value wins, so a value set by the user wins.
os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:200,muzzy_decay_ms:0")
