"""CDC runs against a real cluster (wal_level=logical): the helpers the tests share."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from pgflow.config.model import StrategySpec, TableName
from pgflow.flows.cdc.model import CdcResult, CdcSettings, CdcTarget, ConnectSink
from pgflow.flows.cdc.run import replicate
from pgflow_tests.pg import drop_slots, slot_name_for, table_text

SOURCE = TableName("public", "orders")
TARGET = TableName("landing", "orders")
MERGE = StrategySpec(mode="incremental_merge", unique_key=("id",))
ORDERS = """
CREATE TABLE public.orders (id bigint PRIMARY KEY, status text NOT NULL, amount numeric(10,2),
                            note text, tags text[], placed timestamptz DEFAULT now());
INSERT INTO public.orders (id, status, amount, note, tags)
SELECT g, 'new', g * 1.5, CASE WHEN g % 7 = 0 THEN NULL ELSE 'n' || g END, ARRAY['a', 'b' || g]
FROM generate_series(1, 1000) g;
"""


@pytest.fixture
def slot(source_uri: str) -> Iterator[str]:
    """A slot name unique in the cluster (tests share it); dropped afterwards, as slots pin WAL."""
    name = slot_name_for(source_uri)
    yield name
    drop_slots(source_uri, name)


def connector(uri: str) -> Callable[..., Any]:
    @contextmanager
    def connect(**kwargs: Any) -> Iterator[psycopg.Connection]:
        with psycopg.connect(uri, **kwargs) as conn:
            yield conn

    return connect


def run(
    source_uri: str,
    sink_uri: str,
    slot: str,
    strategy: StrategySpec = MERGE,
    *,
    table: TableName = SOURCE,
    target: TableName = TARGET,
    connect_sink: ConnectSink | None = None,
    **options: Any,
) -> CdcResult:
    target_options = {k: options.pop(k) for k in ("deleted_column", "on_truncate") if k in options}
    settings = CdcSettings(slot=slot, publication=slot, **options)
    return replicate(
        connector(source_uri),
        connect_sink or connector(sink_uri),
        table,
        CdcTarget(target, strategy, **target_options),
        settings,
        pipeline="orders",
    )


def same(
    source_uri: str, sink_uri: str, source: str = "public.orders", target: str = "landing.orders"
) -> bool:
    return table_text(source_uri, source) == table_text(sink_uri, target)
