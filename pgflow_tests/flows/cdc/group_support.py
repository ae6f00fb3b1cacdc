"""Groups of CDC tables on one slot, for the tests: tables, members and a run."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from pgflow.config.model import StrategySpec, TableName
from pgflow.flows.cdc.group_model import GroupMember, GroupSettings
from pgflow.flows.cdc.group_run import GroupOutcome, replicate_group
from pgflow.flows.cdc.model import CdcResult, CdcTarget
from pgflow_tests.flows.cdc.conftest import connector
from pgflow_tests.pg import table_text

MERGE = StrategySpec(mode="incremental_merge", unique_key=("id",))


def tables_sql(*names: str, rows: int = 100) -> str:
    """Tables with a key, text, numeric and array columns, each with `rows` rows."""
    return "".join(
        f"CREATE TABLE public.{n} (id bigint PRIMARY KEY, label text, amount numeric,"
        f" tags int[]); INSERT INTO public.{n} SELECT g, '{n} ' || g, g / 3.0,"
        f" ARRAY[g, -g] FROM generate_series(1, {rows}) g;"
        for n in names
    )


def member(name: str, sink_uri: str, *, sink_id: str = "sink", **options: Any) -> GroupMember:
    return GroupMember(
        pipeline=name,
        table=TableName("public", name),
        target=CdcTarget(TableName("landing", name), options.pop("strategy", MERGE)),
        connect_sink=options.pop("connect_sink", connector(sink_uri)),
        sink_id=sink_id,
        **options,
    )


def run_group(
    source_uri: str,
    slot: str,
    members: Sequence[GroupMember],
    selected: Collection[str] | None = None,
    **settings: Any,
) -> GroupOutcome:
    group = GroupSettings(name=slot, slot=slot, publication=slot, **settings)
    chosen = selected if selected is not None else [m.pipeline for m in members]
    return replicate_group(connector(source_uri), group, list(members), chosen)


def results(outcome: GroupOutcome) -> dict[str, CdcResult]:
    """The outcome's results; fails the test on a member's error."""
    for name, value in outcome.items():
        if isinstance(value, BaseException):
            raise AssertionError(f"member {name} failed") from value
    return {n: v for n, v in outcome.items() if isinstance(v, CdcResult)}


def same_table(source_uri: str, sink_uri: str, name: str, columns: str = "*") -> bool:
    source = table_text(source_uri, f"(SELECT {columns} FROM public.{name})")
    target = table_text(sink_uri, f"(SELECT {columns} FROM landing.{name})")
    return source == target
