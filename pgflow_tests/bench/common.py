"""What the benchmarks share: a throwaway local cluster that is always stopped and removed."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from pgflow.localdb.cluster import ClusterInfo, LocalPostgres


@contextmanager
def throwaway_cluster(databases: Sequence[str]) -> Iterator[ClusterInfo]:
    """A fresh local cluster holding `databases`; stopped and deleted on exit, even on failure."""
    root = Path(tempfile.mkdtemp(prefix="pgflow-bench-"))
    root.chmod(0o755)  # as root the server runs as OS user postgres: it must enter the folder
    cluster = LocalPostgres(root / "cluster")
    try:
        yield cluster.start(databases=databases)
    finally:
        cluster.destroy()
        shutil.rmtree(root, ignore_errors=True)


# The realistic orders table the incremental and CDC benches share.
ORDERS_DDL = """
CREATE TABLE {table} (
    id bigint PRIMARY KEY, customer_id integer NOT NULL, status text NOT NULL,
    amount numeric(12,2) NOT NULL, note text, tags text[], attrs jsonb,
    created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL, paid boolean NOT NULL,
    ref uuid NOT NULL
)"""
# Rows with ids lo..hi.
ORDERS_FILL = """
INSERT INTO {table}
SELECT g, g %% 50000, (ARRAY['new', 'paid', 'shipped', 'cancelled'])[1 + g %% 4],
       round((g %% 100000)::numeric / 7, 2),
       CASE WHEN g %% 5 = 0 THEN NULL ELSE 'note ' || md5(g::text) END,
       ARRAY['t' || g %% 13, 'u' || g %% 7],
       jsonb_build_object('sku', 'SKU-' || g %% 997, 'qty', 1 + g %% 7, 'gift', g %% 11 = 0),
       '2024-01-01'::timestamptz + g * interval '10 s',
       '2024-01-01'::timestamptz + g * interval '10 s' + (g %% 3600) * interval '1 s',
       g %% 3 <> 0, md5(g::text)::uuid
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) g
"""
