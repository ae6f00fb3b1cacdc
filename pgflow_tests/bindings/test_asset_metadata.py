"""What the definitions tell the UI before any run: each asset's table name, its code
references (spec file and line, linked to the repository when it has a GitHub/GitLab remote),
and the source tables as external assets with their table names, upstream of the pipelines."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from pgflow.bindings.code_references import https_url
from pgflow.bindings.definitions import build_definitions
from pgflow.config.loader import load_project
from pgflow.sources.table_listing import live_lister
from pgflow_tests.bindings.conftest import PIPELINE_YAML, Env

ITEMS, SOURCE = dg.AssetKey(["landing", "items"]), dg.AssetKey(["shop", "public", "items"])

WILDCARD_YAML = """\
# every table of the catalog schema
source:
  type: postgres
  connection_id: shop
  table: {schema: catalog, name: "*"}
sink:
  type: postgres
  connection_id: warehouse
  table: {schema: landing_catalog}
  strategy: {mode: full_refresh}
name: catalog
tables:
  # products differ
  products:
    description: Products, described on their own.
  parts: {tags: {kind: parts}}
freshness: {warn_after: 1h, fail_after: 6h}
"""

DELTA_SOURCE_YAML = """
source: {{type: delta, path: {path}}}
sink:
  type: postgres
  connection_id: warehouse
  table: {{schema: landing, name: events}}
  strategy: {{mode: incremental_merge, unique_key: [id]}}
"""


def database(uri: str) -> str:
    return str(psycopg.conninfo.conninfo_to_dict(uri)["dbname"])


def node(defs: dg.Definitions, key: dg.AssetKey) -> dg.AssetSpec:
    return defs.resolve_asset_graph().get(key).to_asset_spec()


def references(spec: dg.AssetSpec) -> list[object]:
    return list(spec.metadata["dagster/code_references"].code_references)


def items_definitions(env: Env, extra: str = "") -> dg.Definitions:
    (env.specs / "items.yaml").write_text(PIPELINE_YAML.format(method="exchange") + extra)
    return build_definitions(load_project(env.specs))


def test_a_one_table_spec_names_its_tables_and_points_at_its_first_line(env: Env) -> None:
    defs = items_definitions(env)
    target = node(defs, ITEMS)
    assert target.metadata["dagster/table_name"] == f"{database(env.sink_uri)}.landing.items"
    # PIPELINE_YAML starts with an empty line: `source:` is line 2.
    assert references(target) == [
        dg.LocalFileCodeReference(
            file_path=str((env.specs / "items.yaml").resolve()), line_number=2, label="pgflow spec"
        )
    ]
    # The source table: an external asset with its own full name, upstream of the target.
    graph = defs.resolve_asset_graph()
    assert graph.get(ITEMS).parent_keys == {SOURCE}
    assert not graph.get(SOURCE).is_materializable
    source = node(defs, SOURCE)
    assert source.metadata["dagster/table_name"] == f"{database(env.source_uri)}.public.items"
    assert source.kinds == {"postgres"}
    assert set(graph.materializable_asset_keys) == {ITEMS}
    # The database came from the connection URI; nothing else of it did.
    everything = repr([node(defs, key).metadata for key in (ITEMS, SOURCE)])
    for uri in (env.source_uri, env.sink_uri):
        password = psycopg.conninfo.conninfo_to_dict(uri)["password"]
        assert password and str(password) not in everything


def test_a_schema_wide_spec_points_each_table_at_its_tables_entry(env: Env) -> None:
    with psycopg.connect(env.source_uri, autocommit=True) as conn:
        conn.execute(
            "CREATE SCHEMA catalog; CREATE TABLE catalog.products (sku text PRIMARY KEY);"
            "CREATE TABLE catalog.parts (id int PRIMARY KEY);"
            "CREATE TABLE catalog.colours (id int PRIMARY KEY)"
        )
    spec = env.specs / "catalog.yaml"
    spec.write_text(WILDCARD_YAML)
    defs = build_definitions(load_project(env.specs, lister=live_lister()))
    lines = {
        table: references(node(defs, dg.AssetKey(["landing_catalog", table])))[0]
        for table in ("products", "parts", "colours")
    }
    assert {t: r.line_number for t, r in lines.items()} == {  # type: ignore[attr-defined]
        "products": 14,  # its `tables:` entry
        "parts": 16,  # a one-line entry
        "colours": 2,  # no entry: the schema-wide spec's first line
    }
    assert {r.file_path for r in lines.values()} == {str(spec.resolve())}  # type: ignore[attr-defined]
    sink_db, source_db = database(env.sink_uri), database(env.source_uri)
    products = node(defs, dg.AssetKey(["landing_catalog", "products"]))
    assert products.metadata["dagster/table_name"] == f"{sink_db}.landing_catalog.products"
    assert products.description == "Products, described on their own."
    # Each table of the spec's one step carries Dagster's freshness policy (the daemon's),
    # beside pgflow's freshness check.
    assert products.freshness_policy == dg.FreshnessPolicy.time_window(
        fail_window=timedelta(hours=6), warn_window=timedelta(hours=1)
    )
    assert (
        dg.AssetCheckKey(products.key, "freshness") in defs.resolve_asset_graph().asset_check_keys
    )
    source = node(defs, dg.AssetKey(["shop", "catalog", "parts"]))
    assert source.metadata["dagster/table_name"] == f"{source_db}.catalog.parts"
    graph = defs.resolve_asset_graph()
    assert graph.get(dg.AssetKey(["landing_catalog", "parts"])).parent_keys == {source.key}


def test_a_delta_source_and_an_unknown_database_keep_what_is_known(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Delta source is named by its URI; a connection not in the environment at load (here
    the sink's, as `dg check defs` in a fresh clone) by schema and table only."""
    path = str(env.lake / "events")
    (env.specs / "events.yaml").write_text(DELTA_SOURCE_YAML.format(path=path))
    monkeypatch.delenv("PGFLOW_CONN_WAREHOUSE")
    defs = build_definitions(load_project(env.specs, environ={"PGFLOW_CONN_WAREHOUSE": "x"}))
    source = node(defs, dg.AssetKey(["delta_source", "events"]))
    assert source.metadata["dagster/table_name"] == path
    assert source.kinds == {"delta"}
    target = node(defs, dg.AssetKey(["landing", "events"]))
    assert target.metadata["dagster/table_name"] == "landing.events"
    assert defs.resolve_asset_graph().get(target.key).parent_keys == {source.key}


def git(folder: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True)


def git_repository(env: Env, remote: str | None) -> Path:
    """The specs folder inside a repository (committed on branch `specs`) with `remote`."""
    root = env.specs.parent
    git(root, "init", "-q", "-b", "specs")
    git(root, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q",
        "--allow-empty", "-m", "specs")  # fmt: skip
    if remote:
        git(root, "remote", "add", "origin", remote)
    return root


def test_a_github_remote_turns_the_references_into_links_to_the_lines(env: Env) -> None:
    git_repository(env, "https://ci-bot:s3cr3t@github.com/acme/warehouse-specs.git")
    target = node(items_definitions(env), ITEMS)
    assert references(target) == [
        dg.UrlCodeReference(
            url="https://github.com/acme/warehouse-specs/tree/specs/specs/items.yaml#L2",
            label="pgflow spec",
        )
    ]
    assert "s3cr3t" not in repr(target.metadata)


def test_no_remote_keeps_local_references_and_the_environment_names_one(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    git_repository(env, None)
    local = references(node(items_definitions(env), ITEMS))[0]
    assert isinstance(local, dg.LocalFileCodeReference) and local.line_number == 2

    # An image without the checkout: the environment names the repository and branch.
    monkeypatch.setenv("PGFLOW_GIT_URL", "git@gitlab.example.com:data/specs.git")
    monkeypatch.setenv("PGFLOW_GIT_BRANCH", "release")
    linked = references(node(items_definitions(env), ITEMS))[0]
    assert linked == dg.UrlCodeReference(
        url="https://gitlab.example.com/data/specs/-/tree/release/specs/items.yaml#L2",
        label="pgflow spec",
    )


@pytest.mark.parametrize(
    ("remote", "url"),
    [
        ("git@github.com:acme/specs.git", "https://github.com/acme/specs"),
        ("ssh://git@gitlab.com:2222/acme/specs.git", "https://gitlab.com/acme/specs"),
        ("https://user:token@github.com/acme/specs/", "https://github.com/acme/specs"),
        ("https://bitbucket.org/acme/specs.git", None),  # Dagster links GitHub and GitLab only
        ("/srv/git/specs.git", None),
    ],
)
def test_remotes_become_https_addresses_without_credentials(remote: str, url: str | None) -> None:
    assert https_url(remote) == url
