"""The schema listing a schema-wide spec expands against, on a real cluster with hostile names."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from pgflow.config.wildcards import ListedTable, SchemaListing
from pgflow.connections.secrets import ConnectionConfigError
from pgflow.sources.table_listing import list_schema, live_lister
from pgflow_tests.pg import execute, fetch

HOSTILE = ["with space", 'quo"te', "OrderLines", "orderlines", "zébra_ünï", "Z"]


def listing(uri: str, schema: str = "app", *, role: str | None = None) -> SchemaListing:
    with psycopg.connect(uri) as conn:
        if role:
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
        return list_schema(conn, "src", schema)


def by_name(result: SchemaListing) -> dict[str, ListedTable]:
    return {t.name: t for t in result.tables}


def test_hostile_names_are_listed_raw_and_sorted_in_c_order(fresh_db: str) -> None:
    execute(fresh_db, "CREATE SCHEMA app")
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        for name in HOSTILE:
            conn.execute(
                sql.SQL("CREATE TABLE app.{} (id int PRIMARY KEY)").format(sql.Identifier(name))
            )
    result = listing(fresh_db)
    assert result.exists and result.connection_id == "src" and result.schema == "app"
    assert [t.name for t in result.tables] == sorted(HOSTILE, key=lambda n: n.encode())
    assert all(t.kind == "table" and t.key == ("id",) and t.readable for t in result.tables)
    assert datetime.fromisoformat(result.listed_at).utcoffset() is not None


def test_hostile_schema_name(fresh_db: str) -> None:
    execute(fresh_db, 'CREATE SCHEMA "My Schéma"; CREATE TABLE "My Schéma".t (a int)')
    assert [t.name for t in listing(fresh_db, "My Schéma").tables] == ["t"]
    assert listing(fresh_db, "my schéma").exists is False  # case-sensitive, raw identifier


def test_partitioned_parent_is_listed_never_its_partitions(fresh_db: str) -> None:
    execute(
        fresh_db,
        """
        CREATE SCHEMA app;
        CREATE TABLE app.events (id int, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
        CREATE TABLE app.events_2024 PARTITION OF app.events
            FOR VALUES FROM ('2024-01-01') TO ('2025-01-01') PARTITION BY LIST (id);
        CREATE TABLE app.events_2024_1 PARTITION OF app.events_2024 FOR VALUES IN (1);
        CREATE TABLE app.events_2025 PARTITION OF app.events
            FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
        """,
    )
    assert listing(fresh_db).tables == (ListedTable("events", "table", ("id", "at")),)


def test_relation_kinds(fresh_db: str) -> None:
    execute(
        fresh_db,
        """
        CREATE SCHEMA app;
        CREATE TABLE app.t (id int PRIMARY KEY);
        CREATE VIEW app.v AS SELECT id FROM app.t;
        CREATE MATERIALIZED VIEW app.m AS SELECT id FROM app.t;
        CREATE SEQUENCE app.s;
        CREATE TYPE app.ty AS (a int);
        CREATE INDEX t_idx ON app.t (id);
        """,
    )
    kinds = {t.name: t.kind for t in listing(fresh_db).tables}
    assert kinds == {"t": "table", "v": "view", "m": "materialized_view"}


def test_foreign_table_kind(fresh_db: str) -> None:
    available = {r[0] for r in fetch(fresh_db, "SELECT name FROM pg_available_extensions")}
    if "postgres_fdw" in available:
        setup = "CREATE EXTENSION postgres_fdw; CREATE SERVER far FOREIGN DATA WRAPPER postgres_fdw"
    elif "file_fdw" in available:
        setup = "CREATE EXTENSION file_fdw; CREATE SERVER far FOREIGN DATA WRAPPER file_fdw"
    else:
        pytest.skip("neither postgres_fdw nor file_fdw is installed on this PostgreSQL")
    execute(fresh_db, f"{setup}; CREATE SCHEMA app; CREATE FOREIGN TABLE app.f (a int) SERVER far")
    assert listing(fresh_db).tables == (ListedTable("f", "foreign_table", ()),)


def test_primary_key_in_index_order(fresh_db: str) -> None:
    execute(
        fresh_db,
        """
        CREATE SCHEMA app;
        CREATE TABLE app.t (a int, b int, "C d" int, PRIMARY KEY (b, "C d", a));
        CREATE UNIQUE INDEX aaa ON app.t (a);  -- a primary key beats any unique index
        ALTER TABLE app.t ALTER a SET NOT NULL;
        CREATE TABLE app.inc (a int, b int, PRIMARY KEY (b) INCLUDE (a));
        """,
    )
    keys = {t.name: t.key for t in listing(fresh_db).tables}
    assert keys == {"t": ("b", "C d", "a"), "inc": ("b",)}


def test_unique_not_null_fallback_and_what_is_not_a_key(fresh_db: str) -> None:
    execute(
        fresh_db,
        """
        CREATE SCHEMA app;
        CREATE TABLE app.fallback (x int NOT NULL, y int NOT NULL, z int);
        CREATE UNIQUE INDEX zz ON app.fallback (y, x);
        CREATE UNIQUE INDEX bb ON app.fallback (x);
        CREATE UNIQUE INDEX aa ON app.fallback (z);  -- first by name, but nullable
        CREATE TABLE app.nullable (a int UNIQUE);
        CREATE TABLE app.partial (a int NOT NULL);
        CREATE UNIQUE INDEX ON app.partial (a) WHERE a > 0;
        CREATE TABLE app.expression (a text NOT NULL);
        CREATE UNIQUE INDEX ON app.expression (lower(a));
        CREATE TABLE app.plain (a int NOT NULL);
        CREATE INDEX ON app.plain (a);
        CREATE TABLE app.mixed (a int NOT NULL, b int);
        CREATE UNIQUE INDEX ON app.mixed (a, b);
        CREATE TABLE app.included (a int NOT NULL, b int);
        CREATE UNIQUE INDEX ON app.included (a) INCLUDE (b);
        """,
    )
    keys = {t.name: t.key for t in listing(fresh_db).tables}
    assert keys == {
        "fallback": ("x",),
        "nullable": (),
        "partial": (),
        "expression": (),
        "plain": (),
        "mixed": (),
        "included": ("a",),
    }


def test_invalid_unique_index_is_not_a_key(fresh_db: str) -> None:
    execute(fresh_db, "CREATE SCHEMA app; CREATE TABLE app.t (a int NOT NULL)")
    execute(fresh_db, "INSERT INTO app.t VALUES (1), (1)")
    with pytest.raises(psycopg.errors.UniqueViolation):
        # CONCURRENTLY leaves the failed index behind, marked invalid.
        execute(fresh_db, "CREATE UNIQUE INDEX CONCURRENTLY t_a ON app.t (a)")
    valid = fetch(
        fresh_db, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'app.t_a'::regclass"
    )
    assert valid == [(False,)]
    assert listing(fresh_db).tables == (ListedTable("t", "table", ()),)


@pytest.fixture
def role(fresh_db: str) -> Iterator[str]:
    """A role without any privilege (roles are cluster-wide: unique name, dropped after)."""
    name = f"reader_{uuid.uuid4().hex[:8]}"
    execute(fresh_db, sql.SQL("CREATE ROLE {}").format(sql.Identifier(name)).as_string())
    yield name
    execute(
        fresh_db,
        sql.SQL("DROP OWNED BY {0}; DROP ROLE {0}").format(sql.Identifier(name)).as_string(),
    )


def test_readable_follows_the_role_privileges(fresh_db: str, role: str) -> None:
    grant = sql.SQL(
        """
        CREATE SCHEMA app;
        CREATE TABLE app.granted (id int, secret text);
        CREATE TABLE app.denied (id int);
        CREATE TABLE app.all_columns (id int, note text, gone int);
        ALTER TABLE app.all_columns DROP COLUMN gone;
        CREATE TABLE app.some_columns (id int, secret text);
        CREATE VIEW app.v AS SELECT 1 AS one;
        GRANT USAGE ON SCHEMA app TO {r};
        GRANT SELECT ON app.granted, app.v TO {r};
        GRANT SELECT (id, note) ON app.all_columns TO {r};
        GRANT SELECT (id) ON app.some_columns TO {r};
        """
    ).format(r=sql.Identifier(role))
    execute(fresh_db, grant.as_string())
    readable = {t.name: t.readable for t in listing(fresh_db, role=role).tables}
    assert readable == {
        "all_columns": True,
        "denied": False,
        "granted": True,
        "some_columns": False,
        "v": True,
    }
    assert all(t.readable for t in listing(fresh_db).tables)  # the owner reads everything


def test_no_usage_on_the_schema_reads_nothing(fresh_db: str, role: str) -> None:
    statement = sql.SQL(
        "CREATE SCHEMA app; CREATE TABLE app.t (a int); GRANT SELECT ON app.t TO {}"
    )
    execute(fresh_db, statement.format(sql.Identifier(role)).as_string())
    assert listing(fresh_db, role=role).tables == (ListedTable("t", "table", (), readable=False),)


def test_missing_and_empty_schemas(fresh_db: str) -> None:
    missing = listing(fresh_db, "nope")
    assert (missing.exists, missing.tables, missing.schema) == (False, (), "nope")
    execute(fresh_db, "CREATE SCHEMA empty")
    empty = listing(fresh_db, "empty")
    assert (empty.exists, empty.tables) == (True, ())


def test_live_lister_reads_the_connection_from_the_environment(fresh_db: str) -> None:
    execute(fresh_db, "CREATE SCHEMA app; CREATE TABLE app.t (id int PRIMARY KEY)")
    lister = live_lister({"PGFLOW_CONN_SHOP_DB": fresh_db})
    result = lister("shop-db", "env", "app")
    assert (result.connection_id, result.tables) == (
        "shop-db",
        (ListedTable("t", "table", ("id",)),),
    )
    assert lister("shop-db", "env", "missing").exists is False


def test_live_lister_leaves_no_session_behind(fresh_db: str) -> None:
    execute(fresh_db, "CREATE SCHEMA app")
    live_lister({"PGFLOW_CONN_SRC": fresh_db})("src", "env", "app")
    query = (
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgflow specs'"
        " AND datname = current_database()"
    )
    # The client closed its session; the backend leaves pg_stat_activity a moment later.
    deadline = time.monotonic() + 5
    while (sessions := fetch(fresh_db, query)) != [(0,)] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sessions == [(0,)]


def test_live_lister_errors_name_the_connection_never_the_password(fresh_db: str) -> None:
    with pytest.raises(ConnectionConfigError, match="PGFLOW_CONN_SHOP is not set"):
        live_lister({})("shop", "env", "app")
    down = "postgresql://someone:s3cr3t-pw@127.0.0.1:1/db"
    with pytest.raises(ConnectionConfigError) as raised:
        live_lister({"PGFLOW_CONN_SHOP": down})("shop", "env", "app")
    assert "'shop'" in str(raised.value) and "s3cr3t-pw" not in str(raised.value)
    bad_user = make_conninfo(fresh_db, user="nobody_here", password="s3cr3t-pw")
    with pytest.raises(ConnectionConfigError) as raised:
        live_lister({"PGFLOW_CONN_SHOP": bad_user})("shop", "env", "app")
    assert "'shop'" in str(raised.value) and "s3cr3t-pw" not in str(raised.value)
    with pytest.raises(ConnectionConfigError, match="unknown"):
        live_lister({})("shop", "ftp", "app")  # type: ignore[arg-type]


# Tables of the 10,000-table schema: a third keyed by a unique NOT NULL index, the rest by a
# primary key; no TOAST-able column, so that creating them stays under a minute.
_CREATE_RANGE = """
DO $$ BEGIN
  FOR i IN {first}..{last} LOOP
    IF i % 3 = 0 THEN
      EXECUTE format('CREATE TABLE big.%I (a int NOT NULL UNIQUE, b int)', 't' || i);
    ELSE
      EXECUTE format('CREATE TABLE big.%I (id int PRIMARY KEY, b int)', 't' || i);
    END IF;
    -- Commit as it goes: one transaction would run out of lock slots.
    IF i % 500 = 0 THEN COMMIT; END IF;
  END LOOP;
END $$
"""


def create_big_schema(uri: str, tables: int, workers: int = 4) -> None:
    execute(uri, "CREATE SCHEMA big")
    step = tables // workers

    def create(first: int) -> None:
        with psycopg.connect(uri, autocommit=True) as conn:
            # DO takes no parameters: the bounds go in as literals.
            bounds = {"first": sql.Literal(first), "last": sql.Literal(first + step - 1)}
            conn.execute(sql.SQL(_CREATE_RANGE).format(**bounds))

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(create, range(1, tables + 1, step)))


def test_ten_thousand_tables(fresh_db: str) -> None:
    """Not a pass/fail timing: prints the figure for the report (run with -s to see it)."""
    started = time.perf_counter()
    create_big_schema(fresh_db, 10_000)
    created = time.perf_counter() - started
    lister = live_lister({"PGFLOW_CONN_BIG": fresh_db})
    started = time.perf_counter()
    result = lister("big", "env", "big")
    took = time.perf_counter() - started
    with psycopg.connect(fresh_db) as conn:
        started = time.perf_counter()
        list_schema(conn, "big", "big")
        query = time.perf_counter() - started
    print(
        f"\n10,000 tables: created in {created:.1f} s; listed in {took:.3f} s with connect"
        f" ({query:.3f} s the queries alone)"
    )
    assert len(result.tables) == 10_000
    assert by_name(result)["t3"].key == ("a",) and by_name(result)["t4"].key == ("id",)
