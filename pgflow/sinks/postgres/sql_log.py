"""Execute SQL on the sink and keep the text of what ran, for materialization metadata."""

from __future__ import annotations

from typing import TypeAlias

import psycopg
from psycopg import sql
from psycopg.abc import Params
from psycopg.rows import TupleRow

MAX_LOGGED_STATEMENTS = 200

# A whole statement as psycopg executes it; a lone Identifier or Literal is only a fragment.
Statement: TypeAlias = sql.SQL | sql.Composed


class SqlLog:
    """Runs statements and remembers them; statements never carry secrets, only identifiers."""

    def __init__(self, conn: psycopg.Connection[TupleRow]) -> None:
        self.conn = conn
        self.statements: list[str] = []

    def record(self, query: sql.Composable | str) -> None:
        if len(self.statements) < MAX_LOGGED_STATEMENTS:
            text = query if isinstance(query, str) else query.as_string(self.conn)
            self.statements.append(text)

    def execute(self, query: Statement, params: Params | None = None) -> psycopg.Cursor[TupleRow]:
        self.record(query)
        return self.conn.execute(query, params)

    def text(self) -> str:
        return ";\n".join(self.statements) + ";"
