"""Dagster names made from Postgres identifiers and Delta paths, and the rule that no two
tables share an asset key.

Dagster accepts names and asset key parts matching `^[A-Za-z0-9_]+$` (its
`VALID_NAME_REGEX`). A key part is the lower snake case of the identifier, so keys read like
the names Postgres folds unquoted identifiers to: `"Mixed Case"."Odd Table"` ->
`mixed_case/odd_table`. Accented letters lose their accent (`Größe` -> `grosse`); a letter or
digit with no ASCII form becomes its code point (`訂單` -> `u8a02_u55ae`). Two tables that
still map to one key are refused when the project loads, naming both.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from pgflow.config.errors import SpecProblem
from pgflow.config.model import PipelineSpec, SourceSpec, TableName

_LOWER_SNAKE = re.compile(r"^[a-z0-9_]+$")
_NOT_KEY_CHARS = re.compile(r"[^a-z0-9]+")


def dagster_name(text: str) -> str:
    """`text` as a valid Dagster group name or name part: anything else becomes `_`."""
    return re.sub(r"[^A-Za-z0-9_]", "_", text)


def key_part(text: str) -> str:
    """`text` as an asset key part: its lower snake case.

    Already lower snake case (`order_items`, `_tmp`): unchanged, so existing keys stay.
    Otherwise: case folded, accents dropped, other non-ASCII letters and digits written as
    `u<code point>`, every run of other characters one `_`, none at the ends.
    """
    if _LOWER_SNAKE.match(text):
        return text
    pieces = []
    for char in unicodedata.normalize("NFKD", text.casefold()):
        if unicodedata.category(char) == "Mn":
            continue  # the accent of a decomposed letter
        if char.isascii() or not char.isalnum():
            pieces.append(char)
        else:
            pieces.append(f"_u{ord(char):04x}_")
    snake = _NOT_KEY_CHARS.sub("_", "".join(pieces)).strip("_")
    # Only punctuation (a table named `-`): its code points, so it still has a key.
    return snake or "_".join(f"u{ord(char):04x}" for char in text)


def target_key(sink_type: str, table: TableName | None, path: str | None) -> tuple[str, ...]:
    """The default asset key of a pipeline: `<schema>/<table>`, or `delta/<folder>`."""
    if sink_type == "delta":
        return ("delta", key_part(Path(str(path).rstrip("/")).name))
    assert table is not None
    return (key_part(table.schema), key_part(table.name))


def source_key(source: SourceSpec) -> tuple[str, ...]:
    """The external asset of a source: `<connection_id>/<schema>/<table>`, or
    `delta_source/<folder>`."""
    if source.type == "delta":
        return ("delta_source", key_part(str(source.path).rstrip("/").split("/")[-1]))
    assert source.connection_id and source.table
    return (dagster_name(source.connection_id), *map(key_part, _parts(source.table)))


def quoted(table: TableName) -> str:
    """`table` as SQL names it: `"Mixed Case"."Odd Table"` (plain lower-case names bare)."""
    return ".".join(quote_name(part) for part in _parts(table))


def quote_name(name: str) -> str:
    """An identifier as Postgres prints it in messages: quoted only when it must be."""
    if re.match(r"^[a-z_][a-z0-9_$]*$", name):
        return name
    return '"' + name.replace('"', '""') + '"'


def _parts(table: TableName) -> tuple[str, str]:
    return (table.schema, table.name)


def key_problems(pipelines: Iterable[PipelineSpec]) -> list[SpecProblem]:
    """Two different tables (targets or sources) whose asset keys are the same: Dagster would
    refuse the code location, or silently draw one asset for both."""
    owners: dict[str, tuple[str, PipelineSpec]] = {}
    problems: list[SpecProblem] = []
    for pipeline in pipelines:
        claims = [(pipeline.asset_key, f"target {_target(pipeline)}", "asset_key", _TARGET_FIX)]
        if pipeline.source.query is None:  # a query has no table, so no source asset
            source = pipeline.source
            claims.append((source_key(source), f"source {_source(source)}", "source.table", ""))
        for key, what, field, fix in claims:
            text = "/".join(key)
            first = owners.setdefault(text, (what, pipeline))
            if first[0] == what:
                continue  # the same table: two pipelines may read one source
            fix = fix or _source_fix(pipeline)
            problems.append(
                SpecProblem(
                    pipeline.file,
                    pipeline.name,
                    field,
                    f"{what} has the asset key {text}, as {first[0]} of pipeline "
                    f"'{first[1].name}' in {first[1].file}; {fix}",
                )
            )
    return problems


_TARGET_FIX = "give one of them another `asset_key:` (e.g. asset_key: landing/orders_v2)"
_SOURCE_FIX = (
    "read one of them through a second connection id for the same database (the id is the "
    "key's first part)"
)
_DELTA_FIX = "give one of the Delta folders another name (its last path part is the key)"
_WILDCARD_FIX = "add one of them to the glob's exclude (and give it a spec of its own if needed)"


def _source_fix(pipeline: PipelineSpec) -> str:
    if pipeline.source.type == "delta":
        return _DELTA_FIX
    return _WILDCARD_FIX if pipeline.expansion else _SOURCE_FIX


def _target(pipeline: PipelineSpec) -> str:
    sink = pipeline.sink
    if sink.type == "delta":
        return f"Delta table {sink.path}"
    assert sink.table is not None
    return f"{quoted(sink.table)} on connection '{sink.connection_id}'"


def _source(source: SourceSpec) -> str:
    if source.type == "delta":
        return f"Delta table {source.path}"
    assert source.table is not None
    return f"{quoted(source.table)} on connection '{source.connection_id}'"
