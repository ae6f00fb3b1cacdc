"""source: and its options: CDC and column-cursor settings, lookback, CDC defaults."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from pgflow_tests.config.specs import (
    DELTA_SOURCE,
    MERGE_SINK,
    load_one,
    only_problem,
    pipeline,
    write,
)

CDC_OPTIONS = {
    "incremental_strategy": "cdc",
    "slot_name": "pgflow_orders",
    "publication_name": "pgflow_pub",
    "snapshot": "never",
    "auto_cleanup": True,
    "deleted_column": "_deleted",
    "on_truncate": "fail",
    "target_batch_size": 10000,
    "max_changes_per_run": 500000,
    "reset": False,
}

COLUMN_OPTIONS = {
    "incremental_strategy": "column",
    "incremental_column": "updated_at",
    "lookback": "5 minutes",
    "on_null_cursor": "include",
}


def test_a_delta_source_syncs_into_a_keyed_postgres_target(tmp_path: Path) -> None:
    source = {**DELTA_SOURCE, "options": {"deletes": "key_pass"}}
    spec = write(tmp_path / "p.yaml", pipeline(source=source, sink=MERGE_SINK))
    loaded = load_one(spec)
    assert (loaded.source.type, loaded.source.path) == ("delta", "/lake/orders")
    assert loaded.source.options.deletes == "key_pass"


def test_cdc_options_load(tmp_path: Path) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(source={"options": CDC_OPTIONS}, sink=MERGE_SINK))
    options = load_one(spec).source.options
    assert (options.slot_name, options.publication_name) == ("pgflow_orders", "pgflow_pub")
    assert (options.snapshot, options.deleted_column, options.on_truncate) == (
        "never",
        "_deleted",
        "fail",
    )
    assert (options.target_batch_size, options.max_changes_per_run) == (10000, 500000)


def test_cdc_slot_and_publication_default_to_the_pipeline_name(tmp_path: Path) -> None:
    cdc = {"incremental_strategy": "cdc"}
    spec = write(
        tmp_path / "p.yaml",
        pipeline(name="Orders_EU", source={"options": cdc}, sink=MERGE_SINK),
    )
    options = load_one(spec).source.options
    assert (options.slot_name, options.publication_name) == ("pgflow_orders_eu",) * 2
    assert not options.slot_named


def test_the_publication_defaults_to_a_named_slot(tmp_path: Path) -> None:
    cdc = {"incremental_strategy": "cdc", "slot_name": "shop"}
    spec = write(tmp_path / "p.yaml", pipeline(source={"options": cdc}, sink=MERGE_SINK))
    options = load_one(spec).source.options
    assert (options.slot_name, options.publication_name, options.slot_named) == (
        "shop",
        "shop",
        True,
    )


def test_column_cursor_options_load(tmp_path: Path) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(source={"options": COLUMN_OPTIONS}, sink=MERGE_SINK))
    options = load_one(spec).source.options
    assert options.lookback == timedelta(minutes=5)
    assert options.on_null_cursor == "include"


@pytest.mark.parametrize(("raw", "expected"), [(100, Decimal(100)), (0.5, Decimal("0.5"))])
def test_a_numeric_lookback_is_a_number_of_cursor_units(
    tmp_path: Path, raw: float, expected: Decimal
) -> None:
    options = {**COLUMN_OPTIONS, "lookback": raw}
    spec = write(tmp_path / "p.yaml", pipeline(source={"options": options}, sink=MERGE_SINK))
    assert load_one(spec).source.options.lookback == expected


def test_a_negative_lookback_is_refused(tmp_path: Path) -> None:
    options = {**COLUMN_OPTIONS, "lookback": -5}
    spec = write(tmp_path / "p.yaml", pipeline(source={"options": options}, sink=MERGE_SINK))
    assert only_problem(spec) == (
        f"{spec}: pipeline 'landing_orders': field 'source.options.lookback': "
        "-5 must be a number of 0 or more"
    )


def test_unknown_source_option_lists_the_allowed_ones(tmp_path: Path) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(source={"options": {"incremental_colum": "x"}}))
    problem = only_problem(spec)
    assert (
        "field 'source.options.incremental_colum': is not a known field; allowed here: " in problem
    )
    for key in (
        "auto_cleanup",
        "incremental_column",
        "incremental_strategy",
        "lookback",
        "include_columns",
        "slot_name",
        "target_batch_size",
    ):
        assert key in problem
