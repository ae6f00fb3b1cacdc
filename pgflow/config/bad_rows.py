"""`sink.strategy.on_bad_rows` and `max_rejected`: which loads may keep rejected rows.

Rejects are found by re-running the failed rows through the target's casts and constraints
(pgflow.sinks.postgres.rejects); that is built for one-stream Postgres table loads of the
strategies below. Every other load refuses `reject` at load, never silently failing later.
"""

from __future__ import annotations

from typing import Literal

from pgflow.config.model import SinkSpec, SourceSpec
from pgflow.config.reader import Report, Section

BadRowPolicy = Literal["fail", "reject"]
BAD_ROW_POLICIES: tuple[BadRowPolicy, ...] = ("fail", "reject")
# StrategySpec.key of the strategies whose loads can reject rows.
REJECT_STRATEGIES = (
    "full_refresh/truncate_insert",
    "full_refresh/exchange",
    "incremental_append",
    "incremental_merge/delete_insert",
    "incremental_merge/upsert",
)


def read_max_rejected(s: Section) -> int:
    value = s.raw("max_rejected")
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        s.problem("max_rejected", f"must be a whole number of rows, 0 or more, got {value!r}")
        return 0
    return value


def check_bad_rows(source: SourceSpec, sink: SinkSpec, report: Report) -> None:
    """Report `on_bad_rows: reject` (and `max_rejected`) on a load that cannot reject rows."""
    strategy = sink.strategy
    field = "sink.strategy.on_bad_rows"
    if strategy.on_bad_rows != "reject":
        if strategy.max_rejected:
            report("sink.strategy.max_rejected", "applies with on_bad_rows: reject only")
        return
    if sink.type != "postgres":
        report(field, "reject is not supported yet for Delta sinks; use fail")
    elif source.type != "postgres" or source.options.incremental_strategy == "cdc":
        report(
            field,
            "reject is not supported yet for CDC or Delta sources (it applies to loads of a "
            "postgres table read in full, by column or by xmin); use fail",
        )
    elif strategy.key not in REJECT_STRATEGIES:
        report(
            field,
            f"reject is not supported yet for {strategy.key} (only for "
            f"{', '.join(REJECT_STRATEGIES)}); use fail",
        )
    elif strategy.parallelism > 1:
        report(field, "reject is not supported yet with parallelism > 1; use parallelism: 1")
