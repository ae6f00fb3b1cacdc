"""CDC pipelines grouped by slot: who shares a slot and publication, what a group must agree
on, and what no two groups may share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pgflow.config.cdc_groups import cdc_groups
from pgflow.config.loader import load_project
from pgflow.config.model import Project
from pgflow_tests.config.specs import ENV, MERGE_SINK, only_problem, pipeline, problems_of, write

ENV_TWO_SOURCES = {**ENV, "PGFLOW_CONN_SHOP_EU": "postgresql://app@shop-eu:5432/shop"}


def cdc(table: str, connection: str = "shop", **options: Any) -> dict[str, Any]:
    """A CDC pipeline of source table public.<table> into landing.<table>."""
    return pipeline(
        source={
            "connection_id": connection,
            "table": {"name": table},
            "options": {"incremental_strategy": "cdc", **options},
        },
        sink={**MERGE_SINK, "table": {"name": table}},
    )


def load(tmp_path: Path, *pipelines: dict[str, Any]) -> Project:
    spec = write(tmp_path / "p.yaml", {"pipelines": list(pipelines)})
    return load_project(spec, environ=ENV_TWO_SOURCES)


def test_pipelines_naming_one_slot_share_it_and_its_publication(tmp_path: Path) -> None:
    project = load(
        tmp_path,
        cdc("orders", slot_name="shop", target_batch_size=5000),
        cdc("lines", slot_name="shop", target_batch_size=5000, deleted_column="_deleted"),
        cdc("users"),
        pipeline(name="plain", sink={"table": {"name": "plain"}}),
    )
    by_name = {g.name: g for g in cdc_groups(project)}
    assert sorted(by_name) == ["landing_users", "shop"]
    shared = by_name["shop"]
    assert [p.name for p in shared.pipelines] == ["landing_lines", "landing_orders"]
    assert (shared.connection_id, shared.connection_type) == ("shop", "env")
    assert (shared.slot_name, shared.publication_name, shared.shared) == ("shop", "shop", True)
    assert (shared.auto_cleanup, shared.batch_changes, shared.max_changes) == (False, 5000, None)
    # Existing code reads the filled options: every member names the group's slot and publication.
    for member in shared.pipelines:
        options = member.source.options
        assert (options.slot_name, options.publication_name, options.slot_named) == (
            "shop",
            "shop",
            True,
        )
    own = by_name["landing_users"]
    assert (own.slot_name, own.publication_name, own.shared) == (
        "pgflow_landing_users",
        "pgflow_landing_users",
        False,
    )
    assert project.cdc_group_of("landing_orders") == shared
    assert project.cdc_group_of("plain") is None


def test_a_named_slot_of_one_pipeline_is_a_shared_group_of_one(tmp_path: Path) -> None:
    (group,) = cdc_groups(load(tmp_path, cdc("orders", slot_name="shop", auto_cleanup=True)))
    assert (group.name, group.shared, group.auto_cleanup) == ("shop", True, True)
    assert [p.name for p in group.pipelines] == ["landing_orders"]


def test_one_member_may_name_the_publication_for_the_group(tmp_path: Path) -> None:
    project = load(
        tmp_path,
        cdc("orders", slot_name="shop"),
        cdc("lines", slot_name="shop", publication_name="shop_tables"),
    )
    (group,) = cdc_groups(project)
    assert group.publication_name == "shop_tables"
    assert {p.source.options.publication_name for p in project.pipelines} == {"shop_tables"}


def test_the_group_spans_files(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", cdc("orders", slot_name="shop"))
    write(tmp_path / "b.yaml", cdc("lines", slot_name="shop"))
    (group,) = cdc_groups(load_project(tmp_path, environ=ENV))
    assert [p.file.name for p in group.pipelines] == ["b.yaml", "a.yaml"]


def test_per_table_options_may_differ(tmp_path: Path) -> None:
    other_sink = pipeline(
        source={"table": {"name": "lines"}, "options": {"incremental_strategy": "cdc"}},
        sink={
            "connection_id": "shop",  # another warehouse
            "table": {"name": "lines"},
            "strategy": {"mode": "incremental_append", "only_new_rows": True, "unique_key": ["id"]},
        },
    )
    other_sink["source"]["options"].update(
        slot_name="shop",
        snapshot="never",
        deleted_column="_deleted",
        on_truncate="fail",
        include_columns=["id", "total"],
        reset=True,
    )
    (group,) = cdc_groups(load(tmp_path, cdc("orders", slot_name="shop"), other_sink))
    assert len(group.pipelines) == 2


def test_members_disagreeing_on_the_publication(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "p.yaml",
        {
            "pipelines": [
                cdc("orders", slot_name="shop", publication_name="pub_a"),
                cdc("lines", slot_name="shop"),
                cdc("users", slot_name="shop", publication_name="pub_b"),
            ]
        },
    )
    assert only_problem(spec) == (
        f"{spec}: pipeline 'landing_users': field 'source.options.publication_name': is "
        f"'pub_b', but pipeline 'landing_orders' ({spec}) on the same slot shop sets 'pub_a'; "
        "the pipelines of one slot stream one publication: set the same publication_name on "
        "each, or omit it (default: the slot's name, shop)"
    )


@pytest.mark.parametrize(
    ("option", "first", "second", "shown"),
    [
        ("auto_cleanup", True, None, "is false here but true"),
        ("target_batch_size", 1000, 2000, "is 2000 here but 1000"),
        ("max_changes_per_run", None, 10, "is 10 here but not set (the default)"),
    ],
)
def test_members_disagreeing_on_a_slot_option(
    tmp_path: Path, option: str, first: object, second: object, shown: str
) -> None:
    def options(value: object) -> dict[str, Any]:
        return {"slot_name": "shop", **({option: value} if value is not None else {})}

    spec = write(
        tmp_path / "p.yaml",
        {"pipelines": [cdc("orders", **options(first)), cdc("lines", **options(second))]},
    )
    assert only_problem(spec) == (
        f"{spec}: pipeline 'landing_lines': field 'source.options.{option}': {shown} in "
        f"pipeline 'landing_orders' ({spec}); it is a setting of slot shop, shared by "
        "pipelines 'landing_orders', 'landing_lines': set the same value on each"
    )


def test_one_slot_name_on_two_connections(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "p.yaml",
        {"pipelines": [cdc("orders", slot_name="shop"), cdc("lines", "shop_eu", slot_name="shop")]},
    )
    assert only_problem(spec, ENV_TWO_SOURCES) == (
        f"{spec}: pipeline 'landing_lines': field 'source.options.slot_name': slot shop on "
        "connection 'shop_eu' has the name of the slot of pipeline 'landing_orders' "
        f"({spec}) on connection 'shop'; a slot name is per server and pgflow cannot tell "
        "whether two connection ids reach the same one: give each connection's pipelines their "
        "own slot_name"
    )


def test_other_slot_names_on_other_connections_are_fine(tmp_path: Path) -> None:
    project = load(tmp_path, cdc("orders", slot_name="shop"), cdc("lines", "shop_eu"))
    assert len(cdc_groups(project)) == 2


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param({}, {}, id="two-slots-of-their-own"),
        pytest.param({"slot_name": "a"}, {"slot_name": "b"}, id="two-groups"),
        pytest.param({"slot_name": "a"}, {"slot_name": "a"}, id="twice-in-one-group"),
    ],
)
def test_a_table_in_two_cdc_pipelines(
    tmp_path: Path, first: dict[str, str], second: dict[str, str]
) -> None:
    again = cdc("orders", **second)
    again["name"], again["sink"]["table"]["name"] = "orders_copy", "orders_copy"
    spec = write(tmp_path / "p.yaml", {"pipelines": [cdc("orders", **first), again]})
    slot = first.get("slot_name", "pgflow_landing_orders")
    assert only_problem(spec) == (
        f"{spec}: pipeline 'orders_copy': field 'source.table': public.orders on connection "
        f"'shop' is already replicated by pipeline 'landing_orders' ({spec}, slot {slot}); a "
        "source table is in one CDC pipeline only, so that one slot and one position cover its "
        "changes: keep one of the two, or read this one with incremental_strategy column or xmin"
    )


def test_one_table_on_two_connections_is_two_tables(tmp_path: Path) -> None:
    again = cdc("orders", "shop_eu")
    again["name"], again["sink"]["table"]["name"] = "orders_eu", "orders_eu"
    assert len(cdc_groups(load(tmp_path, cdc("orders"), again))) == 2


def test_a_publication_streamed_by_two_slots(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "p.yaml",
        {
            "pipelines": [
                cdc("orders", slot_name="a", publication_name="shared_pub"),
                cdc("lines", slot_name="shared_pub"),  # its publication defaults to its slot
            ]
        },
    )
    assert only_problem(spec) == (
        f"{spec}: pipeline 'landing_lines': field 'source.options.publication_name': publication "
        "shared_pub of slot shared_pub is also the publication of slot a (pipeline "
        f"'landing_orders', {spec}); each slot streams a publication of its own: choose another "
        "publication_name (it defaults to the slot's name)"
    )


def test_a_default_slot_name_is_never_shared(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "p.yaml",
        {"pipelines": [cdc("orders"), cdc("lines", slot_name="pgflow_landing_orders")]},
    )
    assert only_problem(spec) == (
        f"{spec}: pipeline 'landing_lines': field 'source.options.slot_name': uses replication "
        f"slot pgflow_landing_orders, as pipeline 'landing_orders' ({spec}) does, but that is "
        "the default slot name (pgflow_<pipeline name>) of 'landing_orders', a slot of its own; "
        "pipelines share a slot only when each names it: set the same slot_name on each, or "
        "give this one another slot_name"
    )


def test_every_problem_of_a_bad_group_is_reported(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "p.yaml",
        {
            "pipelines": [
                cdc("orders", slot_name="shop", auto_cleanup=True, publication_name="p1"),
                cdc("lines", slot_name="shop", publication_name="p2", target_batch_size=10),
            ]
        },
    )
    fields = [problem.split("field ")[1].split(":")[0] for problem in problems_of(spec)]
    assert fields == [
        "'source.options.publication_name'",
        "'source.options.auto_cleanup'",
        "'source.options.target_batch_size'",
    ]


def test_a_slot_named_as_a_pipeline_with_a_slot_of_its_own(tmp_path: Path) -> None:
    own = cdc("orders")
    own["name"] = "shop"
    spec = write(tmp_path / "p.yaml", {"pipelines": [own, cdc("lines", slot_name="shop")]})
    assert only_problem(spec) == (
        f"{spec}: pipeline 'landing_lines': field 'source.options.slot_name': 'shop' is also the "
        f"name of pipeline 'shop' ({spec}), whose slot is its own; a slot's group is named after "
        "the slot, so the two would share a name: choose another slot_name"
    )
