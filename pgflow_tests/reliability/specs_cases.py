"""Malformed and hostile pipeline specs, and what "nothing was written" means.

One table of cases (`CASES`) for the reliability view of spec errors: each is a spec (a
mutation of one valid pipeline, or raw YAML text), the field its error must name, a piece of
the message (the problem or its fix), and where it is caught: when the code location loads
(`load`), or only once a run resolves connections and asks Postgres (`run`, materialized
in-process or, for `cli` cases, with the real `dagster asset materialize`).

`snapshot` is what a database looks like from the outside (relations, schemas, types,
functions, row contents, slots, publications, roles); a failed run must leave it unchanged on
both the sink and the source.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import psycopg
import yaml
from psycopg import sql

DROP = object()  # in a mutation: remove the key

# shop public.items (id PK, name, price, added) -> warehouse landing.items.
BASE: dict[str, Any] = {
    "source": {
        "type": "postgres",
        "connection_id": "shop",
        "table": {"schema": "public", "name": "items"},
    },
    "sink": {
        "type": "postgres",
        "connection_id": "warehouse",
        "table": {"schema": "landing", "name": "items"},
        "strategy": {"mode": "full_refresh"},
    },
}
SPEC_FILE = "items.yaml"
CLOSED_PORT_URI = "postgresql://pgflow:pw@127.0.0.1:1/shop?connect_timeout=2"


@dataclass(frozen=True)
class Case:
    name: str
    spec: Mapping[str, Any] | str  # a mutation of BASE, or the whole file as YAML text
    field: str  # the field path (or variable, Vault path, YAML position) the error must name
    text: str  # a piece of the message: the problem or the fix
    stage: Literal["load", "run"] = "load"
    cli: bool = False  # run through the real `dagster asset materialize` CLI
    env: Mapping[str, str | None] = field(default_factory=dict)  # None: unset the variable
    vault: Mapping[str, Mapping[str, str]] | None = None  # KV v2 secrets under secret/pgflow/
    # A known gap outside the files this suite may change: what is wrong and where. The case
    # must still write nothing and say `text`; it must NOT name the file yet (when it does,
    # the gap is fixed: remove this).
    gap: str = ""

    def yaml_text(self, lake: Path) -> str:
        if isinstance(self.spec, str):
            return self.spec
        document = merge(BASE, self.spec)
        return yaml.safe_dump(document, allow_unicode=True).replace("@LAKE@", str(lake))

    def names_field(self, message: str) -> bool:
        """Spec problems say `field 'x.y'`; runtime errors and YAML positions name it as is."""
        if self.stage == "load" and not self.field.startswith(("line ", "found key", "`")):
            return f"field '{self.field}'" in message
        return self.field in message


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if value is DROP:
            result.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = merge(result[key], value)
        else:
            result[key] = value
    return result


def strategy(**settings: Any) -> dict[str, Any]:
    return {"sink": {"strategy": {"mode": DROP, **settings}}}


def sink_table(**table: Any) -> dict[str, Any]:
    return {"sink": {"table": table}}


def source_table(**table: Any) -> dict[str, Any]:
    return {"source": {"table": table}}


def options(**values: Any) -> dict[str, Any]:
    return {"source": {"options": values}}


MERGE = {"mode": "incremental_merge", "unique_key": ["id"]}
VAULT_SOURCE = {"source": {"connection_type": "vault"}}
DUPLICATE_KEY_YAML = """\
source:
  type: postgres
  connection_id: shop
  table: {schema: public, name: items}
sink:
  type: postgres
  connection_id: warehouse
  table: {schema: landing, name: items}
  strategy:
    mode: incremental_merge
    unique_key: [id]
    mode: full_refresh
"""
PYTHON_TAG_YAML = """\
source: !!python/object/apply:os.system ["touch /tmp/pgflow-pwned"]
sink: {type: postgres, connection_id: warehouse, table: {schema: landing, name: items}}
"""
TABS_YAML = "source:\n\ttype: postgres\n"
LIST_YAML = "- source: {type: postgres}\n- sink: {type: postgres}\n"

CASES: tuple[Case, ...] = (
    # --- wrong types -----------------------------------------------------------------------
    Case(
        "mode_is_a_list",
        strategy(mode=["full_refresh"]),
        "sink.strategy.mode",
        "must be a string, got list",
    ),
    Case(
        "unique_key_is_a_mapping",
        strategy(mode="incremental_merge", unique_key={"id": 1}),
        "sink.strategy.unique_key",
        "must be a non-empty list of column names",
    ),
    Case(
        "table_is_a_dotted_string",
        {"source": {"table": "public.items"}},
        "source.table",
        "must be a mapping, got str 'public.items'",
    ),
    Case(
        "only_new_rows_is_yes_text",
        strategy(mode="incremental_append", unique_key=["id"], only_new_rows="yes"),
        "sink.strategy.only_new_rows",
        "must be true or false, got str 'yes'",
    ),
    Case(
        "batch_size_is_negative",
        options(incremental_strategy="cdc", target_batch_size=-5) | {"sink": {"strategy": MERGE}},
        "source.options.target_batch_size",
        "must be a positive integer, got int -5",
    ),
    Case(
        "tags_is_a_list",
        {"tags": ["domain", "sales"]},
        "tags",
        "must be a mapping of tag names to string values",
    ),
    Case(
        "predicate_is_a_list",
        strategy(mode="replace", custom_predicate=["id > 1", "DROP TABLE items"]),
        "sink.strategy.custom_predicate",
        "must be a string, got list",
    ),
    # --- unknown and missing keys ----------------------------------------------------------
    Case("unknown_top_level_key", {"sorce": {}}, "sorce", "is not a known field; allowed here"),
    Case(
        "unknown_strategy_key",
        {"sink": {"strategy": {"unique_keys": ["id"]}}},
        "sink.strategy.unique_keys",
        "allowed here: custom_predicate, duplicate_policy",
    ),
    Case(
        "unknown_table_key",
        source_table(database="postgres"),
        "source.table.database",
        "allowed here: name, schema",
    ),
    Case(
        "misspelt_source_option",
        options(incremental_strategy="column", incremental_colum="added"),
        "source.options.incremental_colum",
        "is not a known field",
    ),
    Case("missing_sink", {"sink": DROP}, "sink", "is required (a mapping)"),
    Case(
        "missing_strategy",
        {"sink": {"strategy": DROP}},
        "sink.strategy",
        "is required (a mapping)",
    ),
    Case("missing_table_name", sink_table(name=DROP), "sink.table.name", "is required"),
    Case(
        "missing_connection_id",
        {"source": {"connection_id": DROP}},
        "source.connection_id",
        "is required for type postgres",
    ),
    Case(
        "merge_without_unique_key",
        strategy(mode="incremental_merge"),
        "sink.strategy.unique_key",
        "is required for mode incremental_merge",
    ),
    Case(
        "duplicate_yaml_key",
        DUPLICATE_KEY_YAML,
        "found key 'mode' twice",
        "line 12",
    ),
    Case(
        "python_object_tag",
        PYTHON_TAG_YAML,
        "line 1",
        "could not determine a constructor for the tag",
    ),
    Case("tab_indented_yaml", TABS_YAML, "line 2", "is not valid YAML"),
    Case(
        "a_list_not_a_mapping",
        LIST_YAML,
        "`source` and `sink`, or `pipelines:`",
        "must hold a mapping",
    ),
    # --- identifiers -----------------------------------------------------------------------
    Case(
        "nul_byte_in_sink_table",
        sink_table(name="items\x00; DROP TABLE public.items"),
        "sink.table.name",
        "holds the control character U+0000",
        cli=True,
    ),
    Case(
        "newline_in_source_schema",
        source_table(schema="public\nDROP"),
        "source.table.schema",
        "control character U+000A",
    ),
    Case(
        "bidi_override_in_sink_schema",
        sink_table(schema="landing\u202egnp"),
        "sink.table.schema",
        "control character U+202E",
    ),
    Case(
        "name_over_63_bytes",
        sink_table(name="ä" * 32),
        "sink.table.name",
        "is 64 bytes long; Postgres cuts names after 63 bytes",
    ),
    Case("blank_table_name", source_table(name="   "), "source.table.name", "is empty"),
    Case(
        "control_character_in_unique_key",
        strategy(mode="incremental_merge", unique_key=["id", "name\t--"]),
        "sink.strategy.unique_key",
        "control character U+0009",
    ),
    Case(
        "newline_in_cursor_column",
        options(incremental_strategy="column", incremental_column="added\n; DROP TABLE items")
        | {"sink": {"strategy": MERGE}},
        "source.options.incremental_column",
        "control character U+000A",
    ),
    Case(
        "sink_into_pgflow_state_schema",
        sink_table(schema="_pgflow", name="pipeline_state"),
        "sink.table.schema",
        "'_pgflow' is reserved",
    ),
    Case(
        "sink_into_pg_catalog",
        sink_table(schema="pg_catalog", name="pg_class"),
        "sink.table.schema",
        "'pg_catalog' is reserved",
    ),
    Case(
        "slot_name_with_sql",
        options(incremental_strategy="cdc", slot_name='s"; DROP TABLE items; --')
        | {"sink": {"strategy": MERGE}},
        "source.options.slot_name",
        "must be 1 to 63 lower-case letters, digits or _",
    ),
    Case(
        "pipeline_name_with_quote",
        {"name": "items'; DROP TABLE items; --"},
        "name",
        "must be letters, digits and _",
    ),
    Case(
        "asset_key_path_traversal",
        {"asset_key": "../../etc/passwd"},
        "asset_key",
        "must be parts of letters, digits, _ or - joined by /",
    ),
    Case(
        "tag_value_with_newline",
        {"tags": {"domain": "sales\nowner: mallory"}},
        "tags.domain",
        "must be letters, digits, _, - or .",
    ),
    Case(
        "delta_path_with_nul",
        {"sink": {"type": "delta", "connection_id": DROP, "table": DROP, "path": "@LAKE@/x\x00y"}},
        "sink.path",
        "holds a control character",
    ),
    # --- schedules, durations --------------------------------------------------------------
    Case(
        "cron_minute_61",
        {"schedule": "61 * * * *"},
        "schedule",
        "is not a valid cron expression",
    ),
    Case(
        "cron_with_shell",
        {"schedule": {"cron": "0 * * * *; rm -rf /", "timezone": "UTC"}},
        "schedule",
        "is not a valid cron expression",
    ),
    Case(
        "unknown_timezone",
        {"schedule": {"cron": "0 2 * * *", "timezone": "Mars/Olympus"}},
        "schedule",
        "timezone 'Mars/Olympus' is unknown",
    ),
    Case(
        "timezone_path_traversal",
        {"schedule": {"cron": "0 2 * * *", "timezone": "../../../etc/passwd"}},
        "schedule",
        "is unknown; use an IANA name",
    ),
    Case(
        "partition_timezone_unknown",
        {
            "sink": {"strategy": {"mode": "partition_replace", "partition_column": "added"}},
            "partitions": {"type": "daily", "start": "2026-01-01", "timezone": "Europe/Atlantis"},
        },
        "partitions.timezone",
        "'Europe/Atlantis' is unknown",
    ),
    Case("freshness_not_a_duration", {"freshness": "soon"}, "freshness", "is not a duration"),
    Case(
        "lookback_in_fortnights",
        options(incremental_strategy="column", incremental_column="added", lookback="2 fortnights")
        | {"sink": {"strategy": MERGE}},
        "source.options.lookback",
        "is not a duration",
    ),
    # --- connections known at load ---------------------------------------------------------
    Case(
        "env_connection_variable_unset_at_load",
        {},
        "source.connection_id",
        "set PGFLOW_CONN_SHOP to a libpq URI",
        env={"PGFLOW_CONN_SHOP": None},
    ),
    Case(
        "vault_connection_without_vault_addr",
        VAULT_SOURCE,
        "source.connection_id",
        "set VAULT_ADDR",
        env={"VAULT_ADDR": None},
    ),
    Case(
        "two_pipelines_one_target",
        {
            "pipelines": [BASE, merge(BASE, {"name": "items_again", "asset_key": "again/items"})],
            "source": DROP,
            "sink": DROP,
        },
        "sink",
        "writes the same target as pipeline 'landing_items'",
    ),
    # --- caught by the run: secrets and connections ----------------------------------------
    Case(
        "env_variable_unset_at_run",
        {"connections": {"shop": {"type": "env"}}},
        "PGFLOW_CONN_SHOP",
        "environment variable PGFLOW_CONN_SHOP is not set",
        stage="run",
        cli=True,
        env={"PGFLOW_CONN_SHOP": None},
    ),
    Case(
        "env_uri_malformed",
        {},
        "PGFLOW_CONN_SHOP",
        "is not a valid libpq URI",
        stage="run",
        env={"PGFLOW_CONN_SHOP": "postgresql://pgflow:Leak3d-Pw@[::1/shop"},
    ),
    Case(
        "unreachable_host",
        {},
        "could not connect to 'warehouse' (env)",
        "Connection refused",
        stage="run",
        env={"PGFLOW_CONN_WAREHOUSE": CLOSED_PORT_URI},
    ),
    Case(
        "unknown_host_name",
        {},
        "could not connect to 'shop' (env)",
        "no-such-host.invalid",
        stage="run",
        env={"PGFLOW_CONN_SHOP": "postgresql://u:pw@no-such-host.invalid:5432/x?connect_timeout=2"},
    ),
    Case(
        "wrong_password",
        {},
        "could not connect to 'warehouse' (env)",
        "password authentication failed",
        stage="run",
        env={"PGFLOW_CONN_WAREHOUSE": "@WRONG_PASSWORD@"},
    ),
    Case(
        "database_does_not_exist",
        {},
        "could not connect to 'shop' (env)",
        'database "no_such_db" does not exist',
        stage="run",
        env={"PGFLOW_CONN_SHOP": "@NO_SUCH_DB@"},
    ),
    Case(
        "vault_path_missing",
        VAULT_SOURCE,
        "secret/pgflow/shop",
        "no secret there; write one with `url`",
        stage="run",
        vault={},
    ),
    Case(
        "vault_secret_without_user",
        VAULT_SOURCE,
        "secret/pgflow/shop",
        "missing user",
        stage="run",
        vault={"shop": {"host": "127.0.0.1", "dbname": "x", "password": "Vau1t-Pw"}},
    ),
    Case(
        "vault_secret_with_unknown_key",
        VAULT_SOURCE,
        "secret/pgflow/shop",
        "unknown key(s) passwd",
        stage="run",
        vault={"shop": {"url": "postgresql://u@127.0.0.1/x", "passwd": "Vau1t-Pw"}},
    ),
    Case(
        "vault_token_forbidden",
        VAULT_SOURCE,
        "secret/pgflow/shop",
        "permission denied",
        stage="run",
        vault={"shop": {"url": "postgresql://u@127.0.0.1/x"}},
        env={"VAULT_TOKEN": "hvs.not-a-known-token"},
    ),
    Case(
        "vault_unreachable",
        VAULT_SOURCE,
        "secret/pgflow/shop",
        "Vault request failed",
        stage="run",
        env={"VAULT_ADDR": "http://127.0.0.1:1"},
    ),
    # --- caught by the run: hostile SQL in fields ------------------------------------------
    Case(
        "predicate_with_second_statement",
        strategy(mode="replace", custom_predicate="true; DROP TABLE public.items"),
        "sink.strategy.custom_predicate",
        "contains ';'",
        stage="run",
        cli=True,
    ),
    Case(
        "predicate_escaping_parentheses",
        strategy(mode="replace", custom_predicate="1=1) OR (true"),
        "sink.strategy.custom_predicate",
        "closes a parenthesis it did not open",
        stage="run",
    ),
    Case(
        "predicate_hiding_ddl_after_a_comment",
        strategy(mode="replace", custom_predicate="id > 0 /* */ ; CREATE TABLE landing.pwned()"),
        "sink.strategy.custom_predicate",
        "contains ';'",
        stage="run",
    ),
    Case(
        "predicate_with_ddl_in_dollar_quotes",
        strategy(mode="replace", custom_predicate="$$x$$ = 'x' $$; DROP SCHEMA landing CASCADE"),
        "sink.strategy.custom_predicate",
        "dollar-quoted string that is never closed",
        stage="run",
    ),
    Case(
        "predicate_on_unknown_column",
        strategy(mode="replace", custom_predicate="no_such_column > 1"),
        "sink.strategy.custom_predicate",
        'column "no_such_column" does not exist',
        stage="run",
    ),
    Case(
        "predicate_into_delta_with_second_statement",
        {
            "sink": {
                "type": "delta",
                "connection_id": DROP,
                "table": DROP,
                "path": "@LAKE@/items",
                "strategy": {"mode": "replace", "custom_predicate": "true; DROP TABLE items"},
            }
        },
        "sink.strategy.custom_predicate",
        "contains ';'",
        stage="run",
    ),
    Case(
        "source_table_missing",
        source_table(name="no_such_table"),
        "source.table",
        "not found on connection 'shop'",
        stage="run",
    ),
    Case(
        "unique_key_named_like_sql",
        strategy(mode="incremental_merge", unique_key=['id"; DROP TABLE items; --']),
        "sink.strategy.unique_key",
        "are not in the source",
        stage="run",
    ),
    Case(
        "cursor_column_named_like_sql",
        options(incremental_strategy="column", incremental_column='added" > now(); --')
        | {"sink": {"strategy": MERGE}},
        "source.options.incremental_column",
        "not a column of",
        stage="run",
    ),
    Case(
        "cdc_key_not_in_source",
        options(incremental_strategy="cdc")
        | strategy(mode="incremental_merge", unique_key=["name"]),
        "sink.strategy.unique_key",
        "replica identity",
        stage="run",
    ),
)


# --- what was written ------------------------------------------------------------------------

_USER_SCHEMAS = (
    "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' "
    "AND n.nspname NOT LIKE 'pg_temp%'"
)


def snapshot(uri: str) -> dict[str, Any]:
    """Everything a load could leave behind in one database, and every user table's rows."""
    with psycopg.connect(uri, autocommit=True) as conn:

        def rows(query: str) -> list[tuple[Any, ...]]:
            return sorted(conn.execute(query).fetchall(), key=repr)

        relations = rows(
            "SELECT n.nspname, c.relname, c.relkind FROM pg_class c "
            f"JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {_USER_SCHEMAS}"
        )
        contents = {}
        for schema, name, kind in relations:
            if kind in ("r", "p"):
                table = sql.Identifier(schema, name)
                query = sql.SQL(
                    "SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), ''))"
                    " FROM {} t"
                ).format(table)
                contents[f"{schema}.{name}"] = conn.execute(query).fetchone()
        return {
            "relations": relations,
            "contents": contents,
            "namespaces": rows("SELECT nspname FROM pg_namespace"),
            "types": rows(
                "SELECT n.nspname, t.typname FROM pg_type t "
                f"JOIN pg_namespace n ON n.oid = t.typnamespace WHERE {_USER_SCHEMAS}"
            ),
            "functions": rows(
                "SELECT n.nspname, p.proname FROM pg_proc p "
                f"JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {_USER_SCHEMAS}"
            ),
            "slots": rows("SELECT slot_name, database FROM pg_replication_slots"),
            "publications": rows("SELECT pubname FROM pg_publication"),
            "roles": rows("SELECT rolname FROM pg_roles"),
            "databases": rows("SELECT datname FROM pg_database"),
        }


def differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What changed between two snapshots, one line per kind of object."""
    changed = []
    for key in before:
        if before[key] != after[key]:
            old, new = before[key], after[key]
            if isinstance(old, dict):
                diff = {k: new.get(k) for k in set(old) | set(new) if old.get(k) != new.get(k)}
            else:
                diff = {"added": sorted(set(new) - set(old)), "gone": sorted(set(old) - set(new))}
            changed.append(f"{key}: {diff}")
    return changed


def tree(path: Path) -> list[str]:
    """Every file and folder under `path` (empty when it does not exist)."""
    if not path.exists():
        return []
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def apply_env(environ: dict[str, str], changes: Mapping[str, str | None]) -> dict[str, str]:
    result = dict(environ)
    for name, value in changes.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = value
    return result


def figures(line: str, **data: object) -> None:
    """Print the figures line; append it as JSON to $PGFLOW_RELIABILITY_FIGURES when set."""
    print(line)
    path = os.environ.get("PGFLOW_RELIABILITY_FIGURES")
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"line": line, **data}, default=str) + "\n")
