"""The COPY text form of a change's values: a fast path for the usual change, escaping for
the rest."""

from __future__ import annotations

from typing import cast

from pgflow.sources.pgoutput_messages import Value

NULL_FIELD = "\\N"
ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def plain_line(values: tuple[Value, ...]) -> str | None:
    """The COPY text fields of `values` when they are all text or NULL and none needs
    escaping (the usual change), else None. Counting in C beats a Python loop per value: a
    value with a backslash, tab or line break shows as a count off by its own."""
    fields = [NULL_FIELD if v is None else v for v in values]
    try:
        # join checks the types, in C: it raises on bytes or an unchanged TOAST value.
        line = "\t".join(cast(list[str], fields))
    except TypeError:
        return None
    if (
        line.count("\t") != len(fields) - 1
        or line.count("\\") != values.count(None)  # not fields: a value may be "\\N"
        or "\n" in line
        or "\r" in line
    ):
        return None
    return line


def copy_escaped(value: str) -> str:
    # translate() with multi-character replacements is slow; most values need none.
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.translate(ESCAPES)
    return value


def array_literal(names: list[str]) -> str:
    """A text[] literal of `names` (escape it for COPY with ESCAPES)."""
    quoted = ('"' + n.replace("\\", "\\\\").replace('"', '\\"') + '"' for n in names)
    return "{" + ",".join(quoted) + "}"
