"""Target DDL on a real cluster: what a load says when the sink's enum lacks source labels."""

from __future__ import annotations

import pytest

from pgflow.config.model import TableName
from pgflow.sinks.postgres.ddl import TargetSchemaError
from pgflow_tests.sinks.postgres.conftest import execute, fetch, run_load

ENUM_DDL = """
CREATE SCHEMA IF NOT EXISTS "Läden";
CREATE TYPE "Läden"."Öl Art" AS ENUM ('it''s', 'a, b', 'Ölig');
CREATE TABLE "Läden"."Tanks" (id int PRIMARY KEY, art "Läden"."Öl Art");
INSERT INTO "Läden"."Tanks" VALUES (1, 'it''s'), (2, 'a, b'), (3, 'Ölig');
"""


def test_missing_enum_labels_are_named_as_sql_literals(source_uri: str, sink_uri: str) -> None:
    """Labels holding a quote, a comma or a capital are only unambiguous as SQL literals; the
    suggested ALTER TYPE runs as written."""
    execute(source_uri, ENUM_DDL)
    execute(sink_uri, 'CREATE SCHEMA "Läden"; CREATE TYPE "Läden"."Öl Art" AS ENUM (\'a, b\')')
    target = TableName("Läden", "Tanks")

    with pytest.raises(TargetSchemaError) as error:
        run_load(source_uri, sink_uri, TableName("Läden", "Tanks"), target)

    assert str(error.value) == (
        """enum "Läden"."Öl Art" in the sink lacks the source label(s) 'it''s', 'Ölig'; add """
        """them with ALTER TYPE "Läden"."Öl Art" ADD VALUE 'it''s' (one statement per label, """
        "outside a transaction) and run again"
    )
    assert fetch(sink_uri, 'SELECT to_regclass(\'"Läden"."Tanks"\')') == [(None,)]
    execute(sink_uri, """ALTER TYPE "Läden"."Öl Art" ADD VALUE 'it''s'""")
    execute(sink_uri, """ALTER TYPE "Läden"."Öl Art" ADD VALUE 'Ölig'""")
    assert run_load(source_uri, sink_uri, target, target).rows == 3
