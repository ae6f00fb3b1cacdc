"""Asset keys from table names: readable lower snake case, and no two tables on one key."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgflow.config.errors import SpecError
from pgflow.config.loader import load_project
from pgflow.config.naming import key_part
from pgflow_tests.config.specs import ENV, load_one, pipeline, problems_of, write


@pytest.mark.parametrize(
    ("name", "part"),
    [
        ("order_items", "order_items"),  # lower snake case already: unchanged
        ("_tmp", "_tmp"),
        ("a__b", "a__b"),
        ("Mixed Case", "mixed_case"),
        ("Odd Table", "odd_table"),
        (" Odd  Table ", "odd_table"),
        ('we"ird;--', "we_ird"),
        ("order-items", "order_items"),
        ("Größe", "grosse"),
        ("zielö", "zielo"),
        ("ziel€", "ziel"),
        ("訂單", "u8a02_u55ae"),
        ("Заказы 2026", "u0437_u0430_u043a_u0430_u0437_u044b_2026"),
        ("-", "u002d"),
    ],
)
def test_a_key_part_is_the_lower_snake_case_of_the_name(name: str, part: str) -> None:
    assert key_part(name) == part


def test_a_mixed_case_table_gets_a_readable_key(tmp_path: Path) -> None:
    table = {"schema": "Mixed Case", "name": "Odd Table"}
    spec = write(tmp_path / "p.yaml", pipeline(sink={"table": table}))
    assert load_one(spec).asset_key == ("mixed_case", "odd_table")


def test_names_with_leading_or_trailing_spaces_are_accepted(tmp_path: Path) -> None:
    """Postgres keeps the spaces in a quoted name; pgflow quotes every name, so it reads and
    creates exactly those tables."""
    spec = write(
        tmp_path / "p.yaml",
        pipeline(
            source={"table": {"schema": "public", "name": " Orders "}},
            sink={"table": {"schema": "landing ", "name": " Orders"}},
        ),
    )
    loaded = load_one(spec)
    assert (loaded.source.table.schema, loaded.source.table.name) == ("public", " Orders ")
    assert (loaded.sink.table.schema, loaded.sink.table.name) == ("landing ", " Orders")
    assert loaded.asset_key == ("landing", "orders")


def test_two_targets_on_one_key_are_refused_naming_both(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", pipeline(name="upper", sink={"table": {"name": "Orders"}}))
    write(tmp_path / "b.yaml", pipeline(name="lower"))
    assert problems_of(tmp_path) == [
        f"{tmp_path / 'b.yaml'}: pipeline 'lower': field 'asset_key': target landing.orders on "
        "connection 'warehouse' has the asset key landing/orders, as target landing.\"Orders\" "
        f"on connection 'warehouse' of pipeline 'upper' in {tmp_path / 'a.yaml'}; give one of "
        "them another `asset_key:` (e.g. asset_key: landing/orders_v2)"
    ]


def test_an_explicit_asset_key_resolves_the_clash(tmp_path: Path) -> None:
    upper = pipeline(name="upper", asset_key="landing/orders_upper")
    write(
        tmp_path / "a.yaml",
        {**upper, "sink": {**upper["sink"], "table": {"schema": "landing", "name": "Orders"}}},
    )
    write(tmp_path / "b.yaml", pipeline(name="lower"))
    assert problems_of_or_none(tmp_path) is None


def test_two_source_tables_on_one_key_are_refused_naming_both(tmp_path: Path) -> None:
    source = {"table": {"schema": "public", "name": "Orders"}}
    write(tmp_path / "a.yaml", pipeline(name="upper", source=source))
    other = {"table": {"schema": "landing", "name": "orders_2"}}
    write(tmp_path / "b.yaml", pipeline(name="lower", sink=other))
    assert problems_of(tmp_path) == [
        f"{tmp_path / 'b.yaml'}: pipeline 'lower': field 'source.table': source public.orders "
        "on connection 'shop' has the asset key shop/public/orders, as source "
        "public.\"Orders\" on connection 'shop' of pipeline 'upper' in "
        f"{tmp_path / 'a.yaml'}; read one of them through a second connection id for the same "
        "database (the id is the key's first part)"
    ]


def test_two_pipelines_may_read_one_source_table(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", pipeline(name="one"))
    write(tmp_path / "b.yaml", pipeline(name="two", sink={"table": {"name": "orders_2"}}))
    assert problems_of_or_none(tmp_path) is None


def problems_of_or_none(path: Path) -> list[str] | None:
    try:
        load_project(path, environ=ENV)
    except SpecError as error:
        return [str(p) for p in error.problems]
    return None
