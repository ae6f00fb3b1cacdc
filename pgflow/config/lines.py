"""Where a mapping stands in its YAML file, kept by the spec loader so each asset can point at
the lines that made it (Dagster code references)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import yaml


class LinedDict(dict[Any, Any]):
    """A parsed YAML mapping that remembers its first line and each key's line (1-based)."""

    __slots__ = ("key_lines", "line")

    def __init__(self, items: Any = (), line: int = 0, key_lines: dict[Any, int] | None = None):
        super().__init__(items)
        self.line = line
        self.key_lines: dict[Any, int] = key_lines or {}


def empty_lined(node: yaml.MappingNode) -> LinedDict:
    """An empty mapping for `node` with its lines; the loader fills it (YAML's own map
    constructor does the same with a plain dict, so recursive anchors still work)."""
    key_lines = {}
    for key_node, _ in node.value:
        if isinstance(key_node, yaml.ScalarNode):
            key_lines[key_node.value] = key_node.start_mark.line + 1
    return LinedDict((), node.start_mark.line + 1, key_lines)


def line_of(value: object) -> int | None:
    """The first line of a mapping the loader parsed; None for anything else (e.g. a mapping
    built in code)."""
    return value.line if isinstance(value, LinedDict) and value.line else None


def key_line(value: object, key: str) -> int | None:
    """The line of `key` in a mapping the loader parsed."""
    if isinstance(value, LinedDict):
        return value.key_lines.get(key)
    return None


def first_key_line(value: Mapping[str, Any], keys: Iterable[str]) -> int | None:
    """The earliest line among `keys` of a parsed mapping (a file's top-level pipeline)."""
    lines = [key_line(value, k) for k in keys]
    found = [line for line in lines if line is not None]
    return min(found) if found else None
