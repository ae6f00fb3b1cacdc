"""Schema-wide specs: a glob in `source.table.name` expands into one pipeline per table of a
listed schema (the listing is what the source catalog or the cache next to the spec says; the
catalog query itself is tested against a real cluster in sources/test_table_listing.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pgflow.config.catalog_cache import cache_path, read_cache
from pgflow.config.errors import SpecError
from pgflow.config.loader import load_project
from pgflow.config.model import Project
from pgflow.config.wildcards import ListedTable, SchemaListing
from pgflow_tests.config.specs import ENV, pipeline, write

LISTED_AT = "2026-12-04T21:00:00+00:00"
SHOP = (
    ListedTable("orders", "table", ("id",)),
    ListedTable("OrderLines", "table", ("order_id", "line")),
    ListedTable("order lines", "table", ("id",)),
    ListedTable("tmp_scratch", "table", ()),
    ListedTable("audit_log", "table", ()),
    ListedTable("events", "table", ()),
    ListedTable("v_sales", "view", ()),
    ListedTable("Größe 訂單", "table", ("id",)),
)


class Lister:
    """Lists the schemas it is given, counting the calls (a source that is down: no tables)."""

    def __init__(self, tables: tuple[ListedTable, ...] = SHOP, exists: bool = True) -> None:
        self.tables, self.exists, self.calls = tables, exists, 0

    def __call__(self, connection_id: str, connection_type: str, schema: str) -> SchemaListing:
        self.calls += 1
        return SchemaListing(connection_id, schema, self.exists, self.tables, LISTED_AT)


def wildcard(**overrides: Any) -> dict[str, Any]:
    """The issue's spec: every table of shop's public schema upserted into landing."""
    spec = pipeline(
        source={
            "table": {"schema": "public", "name": "*", "exclude": ["tmp_*", "audit_log"]},
            "options": {"keyless": "full_refresh"},
        },
        sink={
            "table": {"schema": "landing"},
            "strategy": {"mode": "incremental_merge", "merge_policy": "upsert"},
        },
    )
    del spec["sink"]["table"]["name"]
    spec.update(overrides)
    return spec


def load(tmp_path: Path, spec: dict[str, Any], lister: Lister | None = None, **kw: Any) -> Project:
    file = write(tmp_path / "shop_all.yaml", spec)
    return load_project(file, environ=ENV, lister=lister, **kw)


def problems(tmp_path: Path, spec: dict[str, Any], lister: Lister | None = None) -> str:
    with pytest.raises(SpecError) as exc:
        load(tmp_path, spec, lister or Lister())
    return str(exc.value)


def by_table(project: Project) -> dict[str, Any]:
    return {p.source.table.name: p for p in project.pipelines if p.source.table}


def test_one_pipeline_per_matched_table_with_its_own_name_and_key(tmp_path: Path) -> None:
    project = load(tmp_path, wildcard(), Lister())
    tables = by_table(project)
    assert sorted(tables) == sorted(["orders", "OrderLines", "order lines", "events", "Größe 訂單"])
    lines = tables["OrderLines"]
    assert str(lines.sink.table) == "landing.OrderLines"
    assert lines.sink.strategy.key == "incremental_merge/upsert"
    assert lines.sink.strategy.unique_key == ("order_id", "line")  # the listed primary key
    assert lines.asset_key == ("landing", "orderlines")
    assert lines.name == "landing_orderlines" and lines.group == "shop"
    assert tables["Größe 訂單"].asset_key == ("landing", "grosse_u8a02_u55ae")
    assert lines.expansion is not None and lines.expansion.wildcard == "landing"


def test_keyless_tables_follow_the_keyless_policy(tmp_path: Path) -> None:
    events = by_table(load(tmp_path, wildcard(), Lister()))["events"]
    assert events.sink.strategy.key == "full_refresh/truncate_insert"
    assert events.expansion is not None and "keyless" in (events.expansion.note or "")

    skip = wildcard()
    skip["source"]["options"]["keyless"] = "skip"
    project = load(tmp_path, skip, Lister())
    assert "events" not in by_table(project)
    assert any("events" in note and "skipped" in note for note in project.notes)

    fail = wildcard()
    del fail["source"]["options"]
    message = problems(tmp_path, fail)
    assert "field 'source.options.keyless'" in message and "events" in message
    assert "keyless: full_refresh" in message


def test_the_cache_next_to_the_spec_makes_loads_need_no_source(tmp_path: Path) -> None:
    lister = Lister()
    first = load(tmp_path, wildcard(), lister)
    assert lister.calls == 1
    cached = read_cache(tmp_path / "shop_all.yaml")
    names = [t.name for t in cached[("shop", "public")].tables]
    assert names == sorted(t.name for t in SHOP)  # sorted: a refresh reads as a diff
    again = load(tmp_path, wildcard())  # no lister: the cache alone
    assert [p.name for p in again.pipelines] == [p.name for p in first.pipelines]


def test_a_refresh_relists_and_keeps_a_dropped_table_marked(tmp_path: Path) -> None:
    load(tmp_path, wildcard(), Lister())
    smaller = tuple(t for t in SHOP if t.name != "events")
    project = load(tmp_path, wildcard(), Lister(smaller), refresh=True)
    events = by_table(project)["events"]
    assert events.expansion is not None and events.expansion.dropped_at == LISTED_AT
    entry = next(
        t
        for t in json.loads(cache_path(tmp_path / "shop_all.yaml").read_text())["listings"][0][
            "tables"
        ]
        if t["name"] == "events"
    )
    assert entry["dropped_at"] == LISTED_AT


def test_without_cache_or_source_the_load_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as exc:
        load(tmp_path, wildcard())
    assert "no cached table list for schema public on connection 'shop'" in str(exc.value)
    assert "pgflow specs refresh" in str(exc.value)


def test_overrides_change_one_table(tmp_path: Path) -> None:
    spec = wildcard(
        tables={
            "orders": {"strategy": {"mode": "full_refresh"}, "schedule": {"cron": "0 * * * *"}},
            "OrderLines": {
                "strategy": {"merge_policy": "delete_insert"},
                "asset_key": "landing/lines",
            },
        }
    )
    tables = by_table(load(tmp_path, spec, Lister()))
    assert tables["orders"].sink.strategy.key == "full_refresh/truncate_insert"
    assert tables["orders"].schedule is not None
    assert tables["OrderLines"].sink.strategy.key == "incremental_merge/delete_insert"
    assert tables["OrderLines"].asset_key == ("landing", "lines")
    assert tables["events"].schedule is None


def test_an_explicit_spec_wins_over_the_wildcard_and_says_so(tmp_path: Path) -> None:
    write(tmp_path / "orders.yaml", pipeline(name="orders_by_hand"))
    file = write(tmp_path / "shop_all.yaml", wildcard())
    project = load_project(tmp_path, environ=ENV, lister=Lister())
    orders = [p for p in project.pipelines if p.source.table and p.source.table.name == "orders"]
    assert [p.name for p in orders] == ["orders_by_hand"]
    assert any("orders_by_hand" in n and "wins" in n and str(file) in n for n in project.notes)


@pytest.mark.parametrize(
    ("change", "field", "text"),
    [
        (
            {"sink": {"table": {"schema": "landing", "name": "x"}}},
            "sink.table.name",
            "must be left out",
        ),
        (
            {"source": {"table": {"schema": "public", "name": "zz*"}}},
            "source.table.name",
            "matches no table",
        ),
        (
            {"source": {"table": {"schema": "public", "name": "*", "exclude": ["*"]}}},
            "source.table.exclude",
            "leaves none",
        ),
        (
            {"source": {"table": {"schema": "public", "name": "*", "kinds": ["tables"]}}},
            "source.table.kinds",
            "must be a list of",
        ),
        (
            {"tables": {"nope": {"schedule": {"cron": "0 * * * *"}}}},
            "tables.nope",
            "is not in the schema",
        ),
        ({"tables": {"tmp_scratch": {"description": "x"}}}, "tables.tmp_scratch", "is excluded"),
        ({"tables": {"orders": {"sink": {}}}}, "tables.orders.sink", "cannot be set for one table"),
        ({"parallel_tables": 99}, "parallel_tables", "at most 16"),
        ({"asset_key": "landing/all"}, "asset_key", "each table's own"),
    ],
)
def test_bad_wildcards_name_the_field_and_the_fix(
    tmp_path: Path, change: dict[str, Any], field: str, text: str
) -> None:
    spec = wildcard()
    for key, value in change.items():
        spec[key] = {**spec[key], **value} if isinstance(spec.get(key), dict) else value
    message = problems(tmp_path, spec)
    assert f"field '{field}'" in message and text in message


def test_a_missing_schema_and_a_failing_source_are_clear(tmp_path: Path) -> None:
    assert "does not exist" in problems(tmp_path, wildcard(), Lister(exists=False))

    def down(connection_id: str, connection_type: str, schema: str) -> SchemaListing:
        raise ConnectionError("connection refused")

    with pytest.raises(SpecError) as exc:
        load(tmp_path, wildcard(), down, refresh=True)  # type: ignore[arg-type]
    assert "cannot list the tables of schema public on connection 'shop'" in str(exc.value)
    assert "connection refused" in str(exc.value)


def test_unreadable_tables_fail_the_load_naming_them(tmp_path: Path) -> None:
    tables = (*SHOP[:2], ListedTable("payroll", "table", ("id",), readable=False))
    message = problems(tmp_path, wildcard(), Lister(tables))
    assert "may not read payroll" in message and "GRANT SELECT" in message


def test_a_delta_sink_takes_a_path_template(tmp_path: Path) -> None:
    spec = wildcard()
    spec["sink"] = {
        "type": "delta",
        "path": str(tmp_path / "lake" / "{table}"),
        "strategy": {"mode": "full_refresh"},
    }
    tables = by_table(load(tmp_path, spec, Lister()))
    assert tables["OrderLines"].sink.path == str(tmp_path / "lake" / "orderlines")
    assert tables["OrderLines"].asset_key == ("delta", "orderlines")
    spec["sink"]["path"] = str(tmp_path / "lake" / "all")
    assert "must hold {table}" in problems(tmp_path, spec)


def test_views_only_when_kinds_list_them_and_never_for_cdc(tmp_path: Path) -> None:
    assert "v_sales" not in by_table(load(tmp_path, wildcard(), Lister()))
    spec = wildcard()
    spec["source"]["table"]["kinds"] = ["table", "view"]
    assert "v_sales" in by_table(load(tmp_path, spec, Lister()))
    spec["source"]["options"] = {"incremental_strategy": "cdc"}
    assert "cannot be read with incremental_strategy: cdc" in problems(tmp_path, spec)


def test_cdc_wildcards_share_one_slot(tmp_path: Path) -> None:
    spec = wildcard()
    spec["source"]["options"] = {"incremental_strategy": "cdc", "keyless": "skip"}
    project = load(tmp_path, spec, Lister())
    slots = {p.source.options.slot_name for p in project.pipelines}
    publications = {p.source.options.publication_name for p in project.pipelines}
    assert slots == {"pgflow_landing"} and publications == {"pgflow_landing"}
    assert len(project.pipelines) == 4


def test_two_wildcards_writing_one_target_are_refused(tmp_path: Path) -> None:
    other = wildcard(name="again")
    write(tmp_path / "again.yaml", other)
    write(tmp_path / "shop_all.yaml", wildcard())
    with pytest.raises(SpecError) as exc:
        load_project(tmp_path, environ=ENV, lister=Lister())
    assert "writes the same target as" in str(exc.value)


def test_ten_thousand_tables_load(tmp_path: Path) -> None:
    many = tuple(ListedTable(f"t{i:05d}", "table", ("id",)) for i in range(10_000))
    project = load(tmp_path, wildcard(), Lister(many))
    assert len(project.pipelines) == 10_000
    assert len(load(tmp_path, wildcard()).pipelines) == 10_000  # and again from the cache


def test_tables_mapping_to_one_asset_key_are_refused_naming_both(tmp_path: Path) -> None:
    tables = (ListedTable("Orders", "table", ("id",)), ListedTable("orders", "table", ("id",)))
    message = problems(tmp_path, wildcard(), Lister(tables))
    assert "has the asset key landing/orders" in message
    assert '"Orders"' in message and "landing.orders" in message
    spec = wildcard()
    spec["source"]["table"]["exclude"] = ["Orders"]
    project = load(tmp_path, spec, Lister(tables), refresh=True)
    assert [p.source.table.name for p in project.pipelines if p.source.table] == ["orders"]
