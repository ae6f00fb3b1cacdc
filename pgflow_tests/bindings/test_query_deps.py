"""A `source.query`'s asset depends on the source assets of the tables Postgres plans to read:
cached next to the spec (`<spec>.queries.json`) by `pgflow specs refresh` or by the first
code location that loads without it; a changed query is asked again; a source that cannot
be asked leaves the asset without deps and a warning, never a failed code location."""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

import dagster as dg
import pytest
import yaml

from pgflow.bindings.definitions import load_definitions
from pgflow.config.loader import load_project
from pgflow.config.query_cache import query_cache_path, query_digest
from pgflow.config.read_query import strip_query
from pgflow.sources.query_shape import query_name
from pgflow.sources.query_tables import live_query_inspector
from pgflow.specs_cli import specs_main
from pgflow_tests.bindings.checks.support import ITEMS_KEY, load_and_check, pipeline
from pgflow_tests.bindings.conftest import REPO, Env
from pgflow_tests.bindings.test_definitions_dg import DG, without_settings
from pgflow_tests.bindings.test_query_source import KINDS, MERGE, QUERY
from pgflow_tests.pg import execute

ITEMS = dg.AssetKey(["shop", "public", "items"])
KATE = dg.AssetKey(["shop", "public", "kate_gorie"])  # public."Kate gorie"
DOWN = "postgresql://app:s3cr3t-pw@127.0.0.1:1/shop"


def write_spec(env: Env, query: str) -> Path:
    spec = pipeline(MERGE)
    spec["source"] = {"type": "postgres", "connection_id": "shop", "query": query}
    file = env.specs / "pipelines.yaml"
    file.write_text(yaml.safe_dump({"pipelines": [spec]}))
    return file


def deps(defs: dg.Definitions) -> set[dg.AssetKey]:
    return set(defs.resolve_asset_graph().get(ITEMS_KEY).parent_keys)


def cached(file: Path) -> list[dict[str, object]]:
    entries: list[dict[str, object]] = json.loads(query_cache_path(file).read_text())["queries"]
    return entries


def test_the_code_location_caches_the_tables_and_draws_the_edges(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    execute(env.source_uri, KINDS)
    file = write_spec(env, QUERY)
    assert query_digest(QUERY) == query_name(QUERY).name  # the digest the source read uses
    defs = load_definitions(env.specs, resolve=False)
    assert deps(defs) == {ITEMS, KATE}
    graph = defs.resolve_asset_graph()
    for key in (ITEMS, KATE):  # external source assets, as a table pipeline's source is
        node = graph.get(key)
        assert not node.is_materializable
        assert node.kinds == {"postgres"} and node.group_name == "shop"
    assert graph.get(KATE).metadata["dagster/table_name"].endswith(".public.Kate gorie")
    (entry,) = cached(file)
    assert entry["pipeline"] == "landing_items" and entry["connection_id"] == "shop"
    assert entry["digest"] == query_digest(strip_query(QUERY))  # as the spec reader keeps it
    assert entry["tables"] == [["public", "Kate gorie"], ["public", "items"]]

    # The cache is all a later load needs: the source may be down.
    monkeypatch.setenv("PGFLOW_CONN_SHOP", DOWN)
    assert deps(load_definitions(env.specs, resolve=False)) == {ITEMS, KATE}
    # Blanks laid out anew: the same digest, still no connection needed.
    write_spec(env, "  " + QUERY.replace("\n", "\n   "))
    assert deps(load_definitions(env.specs, resolve=False)) == {ITEMS, KATE}

    # A changed query is asked again; the old entry leaves the cache.
    monkeypatch.setenv("PGFLOW_CONN_SHOP", env.source_uri)
    changed = "SELECT id, name, price, added FROM items"
    write_spec(env, changed)
    assert deps(load_definitions(env.specs, resolve=False)) == {ITEMS}
    (entry,) = cached(file)
    assert entry["digest"] == query_digest(changed)
    assert entry["tables"] == [["public", "items"]]


def test_a_source_down_at_load_leaves_no_deps_and_a_warning(
    env: Env, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    file = write_spec(env, QUERY)
    monkeypatch.setenv("PGFLOW_CONN_SHOP", DOWN)
    with caplog.at_level(logging.WARNING, logger="pgflow"):
        defs = load_definitions(env.specs, resolve=False)
    assert deps(defs) == set()
    assert ITEMS not in defs.resolve_asset_graph().get_all_asset_keys()
    (warning,) = [r.getMessage() for r in caplog.records if "source queries" in r.getMessage()]
    assert "cannot ask connection 'shop'" in warning and "'landing_items'" in warning
    assert "s3cr3t-pw" not in warning
    assert not query_cache_path(file).exists()  # asked again at the next load


def test_a_refresh_with_the_source_down_keeps_the_cached_tables(
    env: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    execute(env.source_uri, KINDS)
    file = write_spec(env, QUERY)
    assert specs_main(["refresh", "--config", str(env.specs)]) == 0
    before = query_cache_path(file).read_text()
    capsys.readouterr()
    monkeypatch.setenv("PGFLOW_CONN_SHOP", DOWN)
    assert specs_main(["refresh", "--config", str(env.specs)]) == 0
    out = capsys.readouterr().out
    assert "cannot ask connection 'shop'" in out and "s3cr3t-pw" not in out
    assert 'landing_items  shop        public."Kate gorie", public.items' in out
    assert query_cache_path(file).read_text() == before


def test_a_query_postgres_refuses_is_a_warning_not_a_failed_load(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    write_spec(env, "SELECT id, name, price, added FROM no_such_table")
    with caplog.at_level(logging.WARNING, logger="pgflow"):
        defs = load_definitions(env.specs, resolve=False)
    assert deps(defs) == set()
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "pipeline 'landing_items': the tables its source.query reads are unknown" in messages
    assert 'relation "no_such_table" does not exist' in messages


def test_specs_refresh_writes_the_cache_and_prints_the_tables(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    execute(env.source_uri, KINDS)
    file = write_spec(env, QUERY)
    assert specs_main(["refresh", "--config", str(env.specs)]) == 0
    out = capsys.readouterr().out
    assert "pgflow: refreshed the tables of 1 source query(ies)" in out
    assert 'landing_items  shop        public."Kate gorie", public.items' in out
    (first,) = cached(file)
    assert first["tables"] == [["public", "Kate gorie"], ["public", "items"]]
    lines = query_cache_path(file).read_text().splitlines()  # one entry a line, for diffs
    assert lines[0] == '{"format": "pgflow.queries/1", "queries": ['
    assert lines[1].startswith('  {"connection_id": "shop", "digest": ') and lines[2] == "]}"

    # The source changes under the same query text: the refresh sees it (a view now).
    execute(
        env.source_uri,
        'ALTER TABLE public."Kate gorie" RENAME TO kinds;'
        'CREATE VIEW public."Kate gorie" AS SELECT * FROM kinds',
    )
    assert specs_main(["refresh", "--config", str(env.specs)]) == 0
    # The plan reads the view's table; "Bezeichnung" is the view's column as it is (the
    # column lineage names the view), so the view is a dep too.
    (after,) = cached(file)
    assert after["tables"] == [
        ["public", "Kate gorie"],
        ["public", "items"],
        ["public", "kinds"],
    ]


def test_column_lineage_points_at_the_deps(env: Env, instance: dg.DagsterInstance) -> None:
    execute(env.source_uri, KINDS)
    write_spec(env, QUERY)
    project = load_project(env.specs, inspector=live_query_inspector())
    (spec,) = project.pipelines
    assert spec.source.reads is not None and len(spec.source.reads) == 2
    result = load_and_check(project, instance)
    (materialization,) = result.asset_materializations_for_node("landing__items")
    lineage = materialization.metadata["dagster/column_lineage"].value
    assert isinstance(lineage, dg.TableColumnLineage)
    keys = {dep.asset_key for column in lineage.deps_by_column.values() for dep in column}
    assert keys == {ITEMS, KATE}


def test_dg_lists_the_deps_from_the_cache_without_a_connection(env: Env) -> None:
    execute(env.source_uri, KINDS)
    write_spec(env, QUERY)
    assert specs_main(["refresh", "--config", str(env.specs)]) == 0
    shell = {
        "PGFLOW_CONFIG": str(env.specs),
        "PGFLOW_CONN_SHOP": DOWN,
        "PGFLOW_CONN_WAREHOUSE": env.sink_uri,
    }
    listed = subprocess.run(
        [DG, "list", "defs", "--json"],
        env={**without_settings(), **shell},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert listed.returncode == 0, listed.stderr[-3000:]
    assets = {a["asset_key"]: a for a in json.loads(listed.stdout)["assets"]}
    assert set(assets["landing/items"]["dependency_keys"]) == {
        "shop/public/items",
        "shop/public/kate_gorie",
    }
    assert "shop/public/kate_gorie" in assets
    assert "cannot ask" not in listed.stderr  # the cache answered: no connection tried
    checked = subprocess.run(
        [DG, "check", "defs"],
        env={**without_settings(), **shell},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert checked.returncode == 0, checked.stdout[-2000:] + checked.stderr[-3000:]
    assert "All definitions loaded successfully." in checked.stdout


def test_a_broken_cache_is_a_warning_and_is_rewritten(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    execute(env.source_uri, KINDS)
    file = write_spec(env, QUERY)
    query_cache_path(file).write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="pgflow"):
        assert deps(load_definitions(env.specs, resolve=False)) == {ITEMS, KATE}
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert f"{query_cache_path(file)} is not a pgflow query cache" in messages
    (entry,) = cached(file)
    assert entry["tables"] == [["public", "Kate gorie"], ["public", "items"]]
    # A reader that never connects (pgflow report, cdc cleanup) takes the cache as it is.
    (spec,) = load_project(env.specs).pipelines
    assert spec.source.reads is not None
    assert [(t.schema, t.name) for t in spec.source.reads] == [
        ("public", "Kate gorie"),
        ("public", "items"),
    ]


def test_a_source_down_is_tried_once_per_load_for_every_spec_file(
    env: Env, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("first", "second"):
        spec = pipeline(MERGE)
        spec["source"] = {"type": "postgres", "connection_id": "shop", "query": QUERY}
        spec["sink"]["table"] = {"schema": "landing", "name": name}
        (env.specs / f"{name}.yaml").write_text(yaml.safe_dump(spec))
    monkeypatch.setenv("PGFLOW_CONN_SHOP", DOWN)
    with caplog.at_level(logging.WARNING, logger="pgflow"):
        load_definitions(env.specs, resolve=False)
    warned = [r.getMessage() for r in caplog.records if "cannot ask" in r.getMessage()]
    assert len(warned) == 2 and "'landing_first'" in warned[0] and "'landing_second'" in warned[1]
    assert warned[0].split(" read (")[1] == warned[1].split(" read (")[1]  # the first failure
