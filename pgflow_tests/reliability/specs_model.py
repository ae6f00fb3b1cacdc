"""A bad-spec case and the valid pipeline its spec mutates.

A `Case` is a spec (a mutation of `BASE`, or raw YAML text), the field its error must name, a
piece of the message (the problem or its fix), and where it is caught (`load` or `run`). The
builders (`strategy`, `sink_table`, ...) and YAML texts here are what the case tables in
specs_cases_load.py and specs_cases_run.py are written with.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

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
