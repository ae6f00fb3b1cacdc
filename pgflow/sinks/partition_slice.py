"""The slice of the target a partition_replace run replaces; the same for every sink."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PartitionSlice:
    """An explicit slice for partition_replace: rows with lower <= column < upper.

    A Dagster time partition passes its window here, so a run replaces exactly its slice
    (even when the source has no rows for it). Without a slice, partition_replace replaces
    the partitions of the partition values it finds in staging.
    """

    lower: object
    upper: object
