"""Table, schema and column names of a spec, and the one rule they follow."""

from __future__ import annotations

import unicodedata

from pgflow.config.reader import Section

# Postgres keeps the first NAMEDATALEN - 1 bytes of an identifier and silently drops the rest.
_MAX_IDENTIFIER_BYTES = 63
# Format characters that reorder text: a name holding one reads differently than it is.
_BIDI_CONTROLS = ("LRE", "RLE", "LRO", "RLO", "PDF", "LRI", "RLI", "FSI", "PDI")


def identifier_problem(name: str) -> str | None:
    """Why `name` cannot be a Postgres identifier pgflow reads or creates, or None.

    Any other text works: pgflow always quotes identifiers, so quotes, `;` and non-ASCII
    letters are part of the name, never SQL.
    """
    if not name.strip():
        return "is empty; name a table, schema or column"
    control = next((char for char in name if _is_control(char)), None)
    if control is not None:
        return (
            f"{name!r} holds the control character U+{ord(control):04X}; write the name "
            "without control characters"
        )
    size = len(name.encode("utf-8"))
    if size > _MAX_IDENTIFIER_BYTES:
        return (
            f"'{name}' is {size} bytes long; Postgres cuts names after {_MAX_IDENTIFIER_BYTES} "
            "bytes (UTF-8), so the table or column would not be the one named: shorten it"
        )
    return None


def _is_control(char: str) -> bool:
    category = unicodedata.category(char)
    if category in ("Cc", "Cs"):
        return True
    return category == "Cf" and unicodedata.bidirectional(char) in _BIDI_CONTROLS


def read_identifier(section: Section, key: str, *, required: bool = False) -> str | None:
    """A table, schema or column name: any text Postgres can keep as it is (it is quoted)."""
    value = section.text(key, required=required)
    if value is None:
        return None
    problem = identifier_problem(value)
    if problem:
        section.problem(key, problem)
        return None
    return value


def read_identifiers(section: Section, key: str) -> tuple[str, ...] | None:
    """A list of column names (one string is a list of one), each a valid identifier."""
    names = section.names(key)
    if names is None:
        return None
    problems = [p for p in map(identifier_problem, names) if p]
    for problem in problems:
        section.problem(key, problem)
    return None if problems else names
