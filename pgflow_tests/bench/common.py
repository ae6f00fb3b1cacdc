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
