"""`pgflow specs refresh` and `pgflow specs show`, against a real source and real spec files."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

from pgflow.cli import main
from pgflow.config.catalog_cache import cache_path
from pgflow_tests.pg import execute

SHOP_SQL = """
CREATE SCHEMA shop;
CREATE TABLE shop.orders (id int PRIMARY KEY, total numeric);
CREATE TABLE shop."OrderLines" (a int, b int, qty int, PRIMARY KEY (b, a));
CREATE TABLE shop.audit_log (at timestamptz, what text);
CREATE TABLE shop.tmp_scratch (x int);
CREATE VIEW shop.v_orders AS SELECT id FROM shop.orders;
"""

WILDCARD = """
name: shop_all
source:
  type: postgres
  connection_id: shop
  table: {schema: shop, name: "*", exclude: ["tmp_*"]}
  options: {keyless: full_refresh}
sink:
  type: postgres
  connection_id: warehouse
  table: {schema: landing}
  strategy: {mode: incremental_merge, merge_policy: upsert}
"""

EXPLICIT_ORDERS = """
name: orders_by_hand
source:
  type: postgres
  connection_id: shop
  table: {schema: shop, name: orders}
sink:
  type: postgres
  connection_id: warehouse
  table: {schema: landing, name: orders}
  strategy: {mode: full_refresh}
"""


@pytest.fixture
def specs(tmp_path: Path, source_uri: str, sink_uri: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A spec folder with one schema-wide spec over the source's `shop` schema."""
    execute(source_uri, SHOP_SQL)
    monkeypatch.setenv("PGFLOW_CONN_SHOP", source_uri)
    monkeypatch.setenv("PGFLOW_CONN_WAREHOUSE", sink_uri)
    monkeypatch.delenv("PGFLOW_CONFIG", raising=False)
    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / "shop_all.yaml").write_text(textwrap.dedent(WILDCARD))
    return folder


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["specs", *argv])
    return code, capsys.readouterr().out


def rows(out: str) -> dict[str, list[str]]:
    """The table rows printed, by their first column (cells split on runs of 2+ spaces)."""
    found = {}
    for line in out.splitlines():
        if line.startswith("  ") and not line.startswith("  - "):
            cells = re.split(r"\s{2,}", line.strip())
            found[cells[0]] = cells
    return found


def test_refresh_writes_the_cache_then_reports_added_and_dropped_tables(
    specs: Path, source_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(capsys, "refresh", "--config", str(specs))
    assert code == 0, out
    spec_file = specs / "shop_all.yaml"
    row = rows(out)[str(spec_file)]
    # FILE, SPEC, SOURCE SCHEMA, TABLES, ASSETS, ADDED, DROPPED
    assert row == [str(spec_file), "shop_all", "shop on 'shop'", "3", "3", "3 (first listing)", "0"]
    cached = json.loads(cache_path(spec_file).read_text())["listings"][0]
    assert [t["name"] for t in cached["tables"]] == [
        "OrderLines",
        "audit_log",
        "orders",
        "tmp_scratch",
        "v_orders",
    ]

    execute(
        source_uri,
        'DROP VIEW shop.v_orders; DROP TABLE shop.orders; CREATE TABLE shop."New One" (id int)'
        "; CREATE TABLE shop.tmp_more (id int)",  # excluded: not reported
    )
    code, out = run(capsys, "refresh", "--config", str(specs))
    assert code == 0, out
    assert rows(out)[str(spec_file)][3:] == ["3", "4", "1", "1"]  # orders stays an asset
    assert '  shop_all: added: "New One"\n' in out
    assert "  shop_all: dropped: orders\n" in out

    code, out = run(capsys, "refresh", "--config", str(specs))  # nothing changed since
    assert rows(out)[str(spec_file)][3:] == ["3", "4", "0", "0"]
    assert "added:" not in out and "dropped:" not in out


def test_show_prints_one_row_per_table(
    specs: Path, source_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    spec_file = specs / "shop_all.yaml"
    # No cache yet: show lists the source live, and writes the cache.
    code, out = run(capsys, "show", str(spec_file), "--config", str(specs))
    assert code == 0, out
    assert cache_path(spec_file).exists()
    assert f"pgflow: {spec_file}: 3 pipeline(s)" in out
    table = rows(out)
    assert table["SOURCE"] == [
        "SOURCE",
        "TARGET",
        "ASSET KEY",
        "STRATEGY",
        "UNIQUE KEY",
        "INCREMENTAL",
        "NOTE",
    ]
    assert table['shop."OrderLines"'][1:6] == [
        'landing."OrderLines"',
        table['shop."OrderLines"'][2],
        "incremental_merge/upsert",
        "b, a",
        "full",
    ]
    assert table["shop.orders"][1:6] == [
        "landing.orders",
        table["shop.orders"][2],
        "incremental_merge/upsert",
        "id",
        "full",
    ]
    assert table["shop.orders"][2].endswith("orders")
    audit = table["shop.audit_log"]
    assert audit[3:5] == ["full_refresh/truncate_insert", "-"]
    assert "full_refresh" in audit[6] and "keyless" in audit[6]
    assert "tmp_scratch" not in out and "v_orders" not in out


def test_show_marks_explicit_specs_and_dropped_tables(
    specs: Path, source_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "refresh", "--config", str(specs))[0] == 0
    execute(source_uri, "DROP TABLE shop.audit_log")
    assert run(capsys, "refresh", "--config", str(specs))[0] == 0
    (specs / "orders.yaml").write_text(textwrap.dedent(EXPLICIT_ORDERS))

    code, out = run(capsys, "show", str(specs / "shop_all.yaml"), "--config", str(specs))
    assert code == 0, out
    table = rows(out)
    assert "shop.orders" not in table  # the explicit spec took it
    assert "dropped at the source (found 20" in table["shop.audit_log"][-1]
    assert "explicit spec wins" in out and "orders_by_hand" in out  # the load's note

    code, out = run(capsys, "show", str(specs / "orders.yaml"), "--config", str(specs))
    assert code == 0, out
    assert rows(out)["shop.orders"][3] == "full_refresh/truncate_insert"
    assert rows(out)["shop.orders"][-1] == "explicit spec wins over shop_all"


def test_show_without_config_loads_the_file_alone(
    specs: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(specs.parent)  # no ./pipelines here, no PGFLOW_CONFIG
    code, out = run(capsys, "show", "specs/shop_all.yaml")
    assert code == 0, out
    assert "pgflow: specs/shop_all.yaml: 3 pipeline(s)" in out


def test_spec_errors_exit_1_with_the_message(
    specs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (specs / "shop_all.yaml").write_text(
        textwrap.dedent(WILDCARD).replace('name: "*"', 'name: "nothing_*"')
    )
    code, out = run(capsys, "refresh", "--config", str(specs))
    assert code == 1
    assert "pgflow found 1 problem" in out and "'nothing_*' matches no table" in out
    code, out = run(capsys, "refresh", "--config", str(specs / "missing"))
    assert code == 1 and "does not exist" in out


def test_unreachable_source_without_cache_exits_1_naming_the_connection(
    specs: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGFLOW_CONN_SHOP", "postgresql://app:s3cr3t-pw@127.0.0.1:1/shop")
    code, out = run(capsys, "show", str(specs / "shop_all.yaml"), "--config", str(specs))
    assert code == 1
    assert "'shop'" in out and "s3cr3t-pw" not in out


def test_show_of_a_file_outside_the_project_exits_1(
    specs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "elsewhere.yaml"
    other.write_text(textwrap.dedent(EXPLICIT_ORDERS))
    code, out = run(capsys, "show", str(other), "--config", str(specs))
    assert code == 1 and "is not a spec file under" in out


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["specs"]) == 2
    assert main(["specs", "show"]) == 2
    assert main(["specs", "bogus"]) == 2
    assert "usage: pgflow specs" in capsys.readouterr().err
    assert main(["specs", "--help"]) == 0


def test_show_names_a_query_source(specs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    by_query = (
        EXPLICIT_ORDERS.replace(
            "  table: {schema: shop, name: orders}\nsink:",
            '  query: "SELECT id, total FROM shop.orders WHERE total > 0"\nsink:',
        )
        .replace("name: orders}\n  strategy", "name: positive_orders}\n  strategy")
        .replace("{mode: full_refresh}", "{mode: incremental_merge, unique_key: [id]}")
    )
    assert "query:" in by_query and "positive_orders" in by_query
    file = specs / "by_query.yaml"
    file.write_text(textwrap.dedent(by_query))
    code, out = run(capsys, "show", "--config", str(specs), str(file))
    assert code == 0, out
    assert rows(out)["(query)"][1:4] == [
        "landing.positive_orders",
        "landing/positive_orders",
        "incremental_merge/delete_insert",
    ]
    assert "tables read: unknown until `pgflow specs refresh`" in out  # show never connects
    code, out = run(capsys, "refresh", "--config", str(specs))
    assert code == 0, out
    code, out = run(capsys, "show", "--config", str(specs), str(file))
    assert rows(out)["(query)"][-1] == "reads shop.orders"
