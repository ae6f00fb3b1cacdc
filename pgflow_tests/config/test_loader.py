"""load_project: finding spec files, reading each file, and reporting every mistake of a load."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgflow.config.environment import config_path
from pgflow.config.errors import SpecError
from pgflow.config.loader import load_project
from pgflow.config.model import Project, SourceOptions, StrategySpec, TableName
from pgflow_tests.config.specs import ENV, PIPELINE_KEYS, only_problem, pipeline, problems_of, write


def test_a_file_with_one_pipeline_at_top_level(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "orders.yaml",
        """
        source:
          type: postgres
          connection_id: shop
          table: {schema: public, name: orders}
        sink:
          type: postgres
          connection_id: warehouse
          table: {schema: landing, name: orders}
          strategy:
            mode: full_refresh
        """,
    )
    project = load_project(spec, environ=ENV)
    assert isinstance(project, Project)
    (p,) = project.pipelines
    assert p.file == spec
    assert p.name == "landing_orders"
    assert p.asset_key == ("landing", "orders")
    assert p.group == "shop"
    assert p.description is None
    assert p.schedule is None
    assert p.freshness is None
    assert p.tags == {}
    assert p.owners == ()
    assert p.source.type == "postgres"
    assert p.source.connection_id == "shop"
    assert p.source.connection_type == "env"
    assert p.source.table == TableName("public", "orders")
    assert p.source.options == SourceOptions()
    assert p.source.options.incremental_strategy == "full"
    assert p.sink.type == "postgres"
    assert p.sink.connection_id == "warehouse"
    assert p.sink.connection_type == "env"
    assert p.sink.table == TableName("landing", "orders")
    assert p.sink.strategy == StrategySpec(mode="full_refresh")
    assert p.sink.strategy.method == "truncate_insert"
    assert p.sink.target_id == "postgres:warehouse:landing.orders"
    assert project.connections == {}
    assert project.source_connection_ids() == ["shop"]


def test_a_file_with_a_pipelines_list(tmp_path: Path) -> None:
    customers = pipeline(
        source={"table": {"name": "customers"}},
        sink={"table": {"name": "customers"}, "strategy": {"method": "exchange"}},
    )
    spec = write(tmp_path / "shop.yml", {"pipelines": [pipeline(), customers]})
    project = load_project(spec, environ=ENV)
    assert [p.name for p in project.pipelines] == ["landing_orders", "landing_customers"]
    assert [p.asset_key for p in project.pipelines] == [
        ("landing", "orders"),
        ("landing", "customers"),
    ]
    assert project.pipelines[1].sink.strategy.method == "exchange"
    assert all(p.file == spec for p in project.pipelines)


def test_a_folder_is_searched_recursively_for_yaml_and_yml(tmp_path: Path) -> None:
    root = tmp_path / "specs"
    write(root / "a.yaml", pipeline(name="a", sink={"table": {"name": "a"}}))
    write(root / "crm" / "b.yml", pipeline(name="b", sink={"table": {"name": "b"}}))
    write(
        root / "crm" / "deep" / "c.yaml",
        {"pipelines": [pipeline(name="c", sink={"table": {"name": "c"}})]},
    )
    write(root / "empty.yaml", "")  # an empty file holds no pipeline
    write(root / "README.md", "source: [this is : not a spec")  # other files are ignored
    write(root / "notes.txt", "not: {valid")
    write(root / "old.yaml.bak", "not: {valid")
    project = load_project(root, environ=ENV)
    assert sorted(p.name for p in project.pipelines) == ["a", "b", "c"]
    files = {p.name: p.file for p in project.pipelines}
    assert files == {
        "a": root / "a.yaml",
        "b": root / "crm" / "b.yml",
        "c": root / "crm" / "deep" / "c.yaml",
    }


def test_an_empty_folder_is_an_empty_project(tmp_path: Path) -> None:
    project = load_project(tmp_path, environ=ENV)
    assert project.pipelines == ()
    assert project.connections == {}


def test_path_as_string(tmp_path: Path) -> None:
    spec = write(tmp_path / "p.yaml", pipeline())
    assert len(load_project(str(spec), environ=ENV).pipelines) == 1


def test_pgflow_config_is_used_when_no_path_is_given(tmp_path: Path) -> None:
    spec = write(tmp_path / "elsewhere" / "orders.yaml", pipeline(name="from_env"))
    environ = {**ENV, "PGFLOW_CONFIG": str(spec.parent)}
    project = load_project(None, environ=environ)
    assert [p.name for p in project.pipelines] == ["from_env"]
    assert config_path(environ) == spec.parent
    # A single file works too.
    assert load_project(environ={**ENV, "PGFLOW_CONFIG": str(spec)}).pipelines[0].file == spec


def test_default_is_the_pipelines_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "pipelines" / "orders.yaml", pipeline(name="default_folder"))
    monkeypatch.chdir(tmp_path)
    assert config_path(ENV) == Path("pipelines")
    assert config_path({**ENV, "PGFLOW_CONFIG": ""}) == Path("pipelines")
    project = load_project(environ=ENV)
    assert [p.name for p in project.pipelines] == ["default_folder"]


def test_a_path_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    assert only_problem(missing) == (
        f"{missing}: does not exist; set PGFLOW_CONFIG to a spec file or a folder of *.yaml specs"
    )


def test_pgflow_config_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "typo"
    problems = problems_of(None, {**ENV, "PGFLOW_CONFIG": str(missing)})
    assert problems == [
        f"{missing}: does not exist; set PGFLOW_CONFIG to a spec file or a folder of *.yaml specs"
    ]


def test_unknown_key_in_a_pipelines_list_and_at_file_level(tmp_path: Path) -> None:
    spec = write(tmp_path / "p.yaml", {"pipelines": [pipeline(descripton="x")], "conections": {}})
    assert problems_of(spec) == [
        f"{spec}: field 'conections': is not a known field; allowed here: connections, groups, pipelines",
        f"{spec}: pipeline 'landing_orders': field 'descripton': "
        f"is not a known field; allowed here: {PIPELINE_KEYS}",
    ]


def test_a_file_without_source_sink_or_pipelines(tmp_path: Path) -> None:
    spec = write(tmp_path / "p.yaml", {"sourse": pipeline()["source"]})
    assert problems_of(spec) == [
        f"{spec}: field 'source': is required: a spec holds `source` and `sink`, or `pipelines:`",
        f"{spec}: field 'sourse': is not a known field; allowed here: connections, groups",
    ]


def test_a_file_that_is_not_a_mapping(tmp_path: Path) -> None:
    spec = write(tmp_path / "p.yaml", [pipeline()])
    assert only_problem(spec) == (
        f"{spec}: must hold a mapping with `source` and `sink`, or `pipelines:`"
    )


def test_pipelines_must_be_a_list_of_mappings(tmp_path: Path) -> None:
    not_a_list = write(tmp_path / "a.yaml", {"pipelines": pipeline()})
    assert only_problem(not_a_list) == (
        f"{not_a_list}: field 'pipelines': must be a list of pipelines, each with `source` and `sink`"
    )
    not_mappings = tmp_path / "b" / "b.yaml"
    write(not_mappings, {"pipelines": [pipeline(), "orders"]})
    assert only_problem(not_mappings) == (
        f"{not_mappings}: field 'pipelines[1]': must be a mapping with `source` and `sink`"
    )


def test_invalid_yaml(tmp_path: Path) -> None:
    spec = write(tmp_path / "p.yaml", "source: {type: postgres\nsink: [\n")
    problem = only_problem(spec)
    assert problem.startswith(f"{spec}: is not valid YAML: ")
    assert "line" in problem  # the YAML error says where


def test_a_file_that_is_not_utf8_text(tmp_path: Path) -> None:
    spec = tmp_path / "p.yaml"
    spec.write_bytes(b"source: \xff\xfe\n")
    assert only_problem(spec).startswith(f"{spec}: cannot be read as UTF-8 text: ")


def test_every_problem_of_a_load_is_reported(tmp_path: Path) -> None:
    broken = write(
        tmp_path / "broken.yaml",
        {
            "pipelines": [
                pipeline(name="one", sink={"strategy": {"mode": "fulll", "uniqe_key": ["id"]}}),
                pipeline(
                    name="two",
                    schedule="every day",
                    freshness="2 fortnights",
                    sink={"table": {"name": "two"}},
                ),
                pipeline(
                    name="three", sink={"table": {"name": "three"}, "strategy": {"mode": "replace"}}
                ),
            ]
        },
    )
    invalid = write(tmp_path / "sub" / "invalid.yml", "pipelines: [\n")
    unknown = write(
        tmp_path / "sub" / "unknown.yaml",
        pipeline(name="four", source={"connection_id": "crm"}, sink={"table": {"name": "four"}}),
    )
    with pytest.raises(SpecError) as exc:
        load_project(tmp_path, environ=ENV)
    problems = [str(p) for p in exc.value.problems]
    expected = [
        f"{broken}: pipeline 'one': field 'sink.strategy.mode': 'fulll' is not allowed",
        f"{broken}: pipeline 'one': field 'sink.strategy.uniqe_key': is not a known field",
        f"{broken}: pipeline 'two': field 'schedule': 'every day' is not a valid cron expression",
        f"{broken}: pipeline 'two': field 'freshness': '2 fortnights' is not a duration",
        f"{broken}: pipeline 'three': field 'sink.strategy.custom_predicate': is required for mode replace",
        f"{invalid}: is not valid YAML",
        f"{unknown}: pipeline 'four': field 'source.connection_id': connection 'crm' is unknown: set PGFLOW_CONN_CRM",
    ]
    assert len(problems) == len(expected), problems
    for fragment in expected:
        assert any(p.startswith(fragment) for p in problems), (fragment, problems)
    message = str(exc.value)
    assert message.startswith(f"pgflow found {len(expected)} problems in the pipeline specs:\n  - ")
    assert all(f"  - {p}" in message for p in problems)
