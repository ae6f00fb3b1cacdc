"""replace: delete the target rows matching `custom_predicate`, then insert every staged row.

Both run in the load's transaction, so readers see the old rows until commit. The predicate is
SQL text written by the spec author: a boolean expression over the target's columns, e.g.
`order_date >= '2024-02-01'`. It is trusted like the rest of the spec (it runs with the sink
role's rights and may call any function that role may), but it must be exactly one condition:

1. Shape, checked here before any SQL runs: a small scanner that follows Postgres' lexical
   rules (quoted strings, E'' and dollar quotes, quoted identifiers, nested comments) requires
   every parenthesis outside literals and comments to be closed within the predicate and none
   to close one it did not open, no `;` outside literals, and no unterminated literal or
   comment. So `1=1) OR (true`, which would escape the parentheses pgflow puts around the
   predicate, and `true; DROP TABLE x` are refused with the reason.
2. Meaning, checked by Postgres before anything is deleted: `SELECT 1 FROM target WHERE
   (<predicate>) LIMIT 0` is parsed and planned (unknown columns, a non-boolean expression,
   syntax errors fail here) without reading a row.
3. One statement, whatever the scanner missed: the check and the DELETE go through the extended
   query protocol (binary results cannot be asked for in the simple protocol), whose Parse
   message takes exactly one statement ("cannot insert multiple commands into a prepared
   statement"). In the DELETE the parenthesized predicate comes last and on lines of its own,
   so a trailing `-- comment` cannot swallow the closing parenthesis.

A predicate that parses but fails on the data (`note::int > 5` over a non-numeric note) fails
the DELETE with the same kind of error. Any failure leaves the target as it was: the load's
transaction rolls back.
"""

from __future__ import annotations

import re

import psycopg
from psycopg import sql

from pgflow.sinks.postgres.apply import ApplyContext, insert_from_staging
from pgflow.sinks.postgres.row_change import RowChange
from pgflow.sinks.postgres.strategy import Applied, StagedStrategy

FIELD = "sink.strategy.custom_predicate"
EXAMPLE = "e.g. order_date >= '2026-01-01'"


class InvalidPredicate(ValueError):
    """custom_predicate is not one boolean condition on the target; nothing was deleted."""


class Replace(StagedStrategy):
    key = "replace"
    stages_first_load = True  # the predicate is checked on the first load too

    def apply(self, ctx: ApplyContext) -> Applied:
        return replace(ctx)

    def first_load(self, ctx: ApplyContext) -> Applied:
        check_predicate(ctx)  # a bad predicate fails the first load, not the second
        return super().first_load(ctx)


def replace(ctx: ApplyContext) -> Applied:
    """Delete the rows matching custom_predicate, insert all staged rows; rows inserted and
    rows deleted."""
    condition = check_predicate(ctx)
    delete = sql.SQL("DELETE FROM {} WHERE {}").format(ctx.target_sql, condition)
    ctx.log.record(delete)
    try:
        deleted = _execute_one(ctx.conn, delete).rowcount
    except psycopg.DataError as error:  # class 22: the predicate failed on some row's values
        raise InvalidPredicate(
            f"{FIELD} {ctx.strategy.custom_predicate!r} failed on the rows of {ctx.target}: "
            f'Postgres says "{_reason(error)}". Make it valid for every row, {EXAMPLE}. '
            f"Nothing was deleted."
        ) from error
    inserted = insert_from_staging(ctx)
    return Applied(inserted, deleted=deleted, change=RowChange.added(inserted - deleted))


def check_predicate(ctx: ApplyContext) -> sql.Composed:
    """The predicate as a parenthesized condition, after its shape and Postgres' check."""
    predicate = ctx.strategy.custom_predicate
    if predicate is None or not predicate.strip():
        raise InvalidPredicate(
            f"{FIELD} is required for mode replace: a SQL condition on the columns of "
            f"{ctx.target} selecting the rows to replace, {EXAMPLE}. Nothing was deleted."
        )
    scs = ctx.conn.info.parameter_status("standard_conforming_strings") != "off"
    problem = shape_problem(predicate, standard_conforming_strings=scs)
    if problem:
        raise InvalidPredicate(
            f"{FIELD} {predicate!r} {problem}. It must be one boolean condition on the columns "
            f"of {ctx.target}, {EXAMPLE}. Nothing was deleted."
        )
    condition = sql.SQL("(\n{}\n)").format(sql.SQL(predicate))
    probe = sql.SQL("SELECT 1 FROM {} WHERE {} LIMIT 0").format(ctx.target_sql, condition)
    try:
        with ctx.conn.transaction():  # a savepoint: the failed probe leaves no aborted state
            _execute_one(ctx.conn, probe)
    except psycopg.Error as error:
        columns = ", ".join(ctx.target_info.column_names)
        raise InvalidPredicate(
            f"{FIELD} {predicate!r} is not a valid condition on {ctx.target}: Postgres says "
            f'"{_reason(error)}". Write one boolean SQL expression over its columns ({columns}), '
            f"{EXAMPLE}. Nothing was deleted."
        ) from error
    return condition


def _reason(error: psycopg.Error) -> str:
    return (error.diag.message_primary or str(error)).strip()


def _execute_one(conn: psycopg.Connection, query: sql.Composed) -> psycopg.Cursor:
    # A plain Cursor (never a ClientCursor) asked for binary results must use the extended
    # protocol: one statement per Parse, nothing smuggled after a `;`.
    cursor = psycopg.Cursor(conn)
    cursor.execute(query, binary=True)
    return cursor


def shape_problem(text: str, standard_conforming_strings: bool = True) -> str | None:
    """Why `text` is not one self-contained expression, or None.

    Scans like Postgres' lexer (scan.l): what is inside a literal, quoted identifier or comment
    is skipped; outside, parentheses must balance, and `;` must not appear. Anything the
    scanner cannot place without doubt (a quote or `$` glued to a number, where Postgres
    versions lex differently) is refused rather than guessed.
    """
    depth, i, tokens = 0, 0, 0
    while i < len(text):
        c = text[i]
        if c in _WHITESPACE:
            i += 1
            continue
        if text.startswith(("--", "/*"), i):
            i = _skip_comment(text, i)
            if i < 0:
                return "has a /* comment that is never closed"
            continue
        tokens += 1
        if c in "()":
            depth += 1 if c == "(" else -1
            if depth < 0:
                return (
                    f"closes a parenthesis it did not open (character {i + 1}), which would "
                    f"escape the parentheses pgflow puts around it; balance its parentheses, "
                    f"e.g. (a OR b) AND c"
                )
            i += 1
        elif c == ";":
            return (
                f"contains ';' (character {i + 1}): only one condition is allowed, not "
                f"statements; remove the ';' and what follows"
            )
        else:
            step = _skip_token(text, i, standard_conforming_strings)
            if isinstance(step, str):
                return step
            i = step
    if depth > 0:
        return f"opens {depth} parenthes{'is' if depth == 1 else 'es'} it does not close"
    if tokens == 0:
        return "is empty (only comments)"
    return None


# Postgres' whitespace (not str.isspace: U+00A0 is a letter)
_WHITESPACE = " \t\n\r\f\v"


def _skip_comment(text: str, i: int) -> int:
    """Index just past the -- or /* comment at text[i], or -1 when a /* never closes."""
    if text.startswith("/*", i):
        return _skip_block_comment(text, i)
    end = _find_any(text, "\n\r", i)
    return len(text) if end < 0 else end + 1


def _skip_token(text: str, i: int, standard_conforming_strings: bool) -> int | str:
    """Index just past the literal, word, number or operator character at text[i], or why it
    cannot be placed."""
    c = text[i]
    if c == "'":
        end = _skip_quoted(text, i, "'", backslash=not standard_conforming_strings)
    elif c == '"':
        end = _skip_quoted(text, i, '"', backslash=False)
    elif c == "$" and (delimiter := _dollar_delimiter(text, i)):
        found = text.find(delimiter, i + len(delimiter))
        end = -1 if found < 0 else found + len(delimiter)
    elif c.isalpha() or c == "_" or ord(c) >= 128:
        end = _skip_word(text, i, standard_conforming_strings)
    elif c.isdigit() or (c == "." and text[i + 1 : i + 2].isdigit()):
        return _skip_number(text, i)
    else:
        return i + 1
    return f"has a {_describe(c)} that is never closed" if end < 0 else end


def _skip_word(text: str, i: int, standard_conforming_strings: bool) -> int:
    """Past a keyword or identifier, and the string it prefixes (E'', B'', X'', N'', U&'')."""
    start, n = i, len(text)
    while i < n and (text[i].isalnum() or text[i] in "_$" or ord(text[i]) >= 128):
        i += 1
    word = text[start:i].lower()
    if i < n and text[i] == "'":
        # E'...' escapes with backslashes; B'', X'' never do; N'' and U&'' follow
        # standard_conforming_strings like a plain string.
        backslash = word == "e" or (word not in ("b", "x") and not standard_conforming_strings)
        i = _skip_quoted(text, i, "'", backslash=backslash)
    return i


def _skip_number(text: str, i: int) -> int | str:
    n = len(text)
    while i < n:
        if text[i].isalnum() or text[i] in "._":
            i += 1
        elif text[i] in "+-" and text[i - 1] in "eE" and text[i + 1 : i + 2].isdigit():
            i += 1  # the exponent's sign, 1e-5
        else:
            break
    # Postgres versions split `1e'..'`, `1$a$` or `1e--` differently (a literal, a
    # dollar quote or a comment may start inside them): refuse rather than guess.
    if i < n and (text[i] in "'\"$" or (text[i] in "+-" and text[i - 1] in "eE")):
        return f"glues a number to {text[i]!r} at character {i + 1}; put a space between"
    return i


def _describe(opening: str) -> str:
    return {"'": "string literal", '"': "quoted identifier", "$": "dollar-quoted string"}.get(
        opening, "string literal"
    )


def _skip_quoted(text: str, i: int, quote: str, backslash: bool) -> int:
    """Index just past the literal opening at text[i], or -1 when it never closes."""
    i += 1
    while i < len(text):
        c = text[i]
        if backslash and c == "\\":
            i += 2
        elif c == quote:
            if text.startswith(quote * 2, i):  # '' (or "") stands for one quote
                i += 2
            else:
                return i + 1
        else:
            i += 1
    return -1


def _skip_block_comment(text: str, i: int) -> int:
    """Index just past the (nestable) comment opening at text[i], or -1 when it never closes."""
    depth, i = 1, i + 2
    while i < len(text):
        if text.startswith("/*", i):
            depth, i = depth + 1, i + 2
        elif text.startswith("*/", i):
            depth, i = depth - 1, i + 2
            if depth == 0:
                return i
        else:
            i += 1
    return -1


_DOLLAR = re.compile(r"\$([A-Za-z_\x80-\U0010ffff][A-Za-z_0-9\x80-\U0010ffff]*)?\$")


def _dollar_delimiter(text: str, i: int) -> str | None:
    match = _DOLLAR.match(text, i)
    return match.group(0) if match else None


def _find_any(text: str, chars: str, start: int) -> int:
    found = [p for p in (text.find(c, start) for c in chars) if p >= 0]
    return min(found) if found else -1
