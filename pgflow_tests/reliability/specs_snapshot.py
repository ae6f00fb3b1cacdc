"""What "nothing was written" means for the bad-spec tests: `snapshot` is what a database
looks like from the outside (relations, schemas, types, functions, row contents, slots,
publications, roles); a failed run must leave it unchanged on both the sink and the source.
Also: a folder's files, a run's environment, the figures line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

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
