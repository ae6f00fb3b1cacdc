"""`checks.value_parity` of a pipeline (its own module: model.py stays small)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

# Statements of the value_parity check may run this long unless the spec says otherwise.
DEFAULT_VALUE_PARITY_TIMEOUT = timedelta(minutes=5)


@dataclass(frozen=True)
class ValueParitySpec:
    """`checks.value_parity`: hash every row (or a sample of key buckets) on both sides."""

    enabled: bool = True
    sample: float = 1.0  # fraction of the key buckets whose rows are hashed (needs a key)
    timeout: timedelta = DEFAULT_VALUE_PARITY_TIMEOUT
