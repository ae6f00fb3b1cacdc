"""Execute SQL on the sink and keep the text of what ran, for materialization metadata."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

MAX_LOGGED_STATEMENTS = 200


class SqlLog:
    """Runs statements and remembers them; statements never carry secrets, only identifiers."""

    def __init__(self, conn: psycopg.Connection):
        self.conn = conn
        self.statements: list[str] = []

    def record(self, query: sql.Composable | str) -> None:
        if len(self.statements) < MAX_LOGGED_STATEMENTS:
            text = query if isinstance(query, str) else query.as_string(self.conn)
            self.statements.append(text)

    def execute(self, query: sql.Composable, params: Any = None) -> psycopg.Cursor:
        self.record(query)
        return self.conn.execute(query, params)

    def text(self) -> str:
        return ";\n".join(self.statements) + ";"
