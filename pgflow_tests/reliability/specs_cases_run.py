"""Bad-spec cases only a run catches (`run`): secrets and connections, hostile SQL in fields.

Part of `specs_cases.CASES` (see specs_cases.py).
"""

from __future__ import annotations

from pgflow_tests.reliability.specs_model import (
    CLOSED_PORT_URI,
    DROP,
    MERGE,
    VAULT_SOURCE,
    Case,
    options,
    source_table,
    strategy,
)

RUN_CASES: tuple[Case, ...] = (
    # --- caught by the run: secrets and connections ----------------------------------------
    Case(
        "env_variable_unset_at_run",
        {"connections": {"shop": {"type": "env"}}},
        "PGFLOW_CONN_SHOP",
        "environment variable PGFLOW_CONN_SHOP is not set",
        stage="run",
        cli=True,
        env={"PGFLOW_CONN_SHOP": None},
    ),
    Case(
        "env_uri_malformed",
        {},
        "PGFLOW_CONN_SHOP",
        "is not a valid libpq URI",
        stage="run",
        env={"PGFLOW_CONN_SHOP": "postgresql://pgflow:Leak3d-Pw@[::1/shop"},
    ),
    Case(
        "unreachable_host",
        {},
        "could not connect to 'warehouse' (env)",
        "Connection refused",
        stage="run",
        env={"PGFLOW_CONN_WAREHOUSE": CLOSED_PORT_URI},
    ),
    Case(
        "unknown_host_name",
        {},
        "could not connect to 'shop' (env)",
        "no-such-host.invalid",
        stage="run",
        env={"PGFLOW_CONN_SHOP": "postgresql://u:pw@no-such-host.invalid:5432/x?connect_timeout=2"},
    ),
    Case(
        "wrong_password",
        {},
        "could not connect to 'warehouse' (env)",
        "password authentication failed",
        stage="run",
        env={"PGFLOW_CONN_WAREHOUSE": "@WRONG_PASSWORD@"},
    ),
    Case(
        "database_does_not_exist",
        {},
        "could not connect to 'shop' (env)",
        'database "no_such_db" does not exist',
        stage="run",
        env={"PGFLOW_CONN_SHOP": "@NO_SUCH_DB@"},
    ),
    Case(
        "vault_path_missing",
        VAULT_SOURCE,
        "secret/pgflow/shop",
        "no secret there; write one with `url`",
        stage="run",
        vault={},
    ),
    Case(
        "vault_secret_without_user",
        VAULT_SOURCE,
        "secret/pgflow/shop",
        "missing user",
        stage="run",
        vault={"shop": {"host": "127.0.0.1", "dbname": "x", "password": "Vau1t-Pw"}},
    ),
    Case(
        "vault_secret_with_unknown_key",
        VAULT_SOURCE,
        "secret/pgflow/shop",
        "unknown key(s) passwd",
        stage="run",
        vault={"shop": {"url": "postgresql://u@127.0.0.1/x", "passwd": "Vau1t-Pw"}},
    ),
    Case(
        "vault_token_forbidden",
        VAULT_SOURCE,
        "secret/pgflow/shop",
        "permission denied",
        stage="run",
        vault={"shop": {"url": "postgresql://u@127.0.0.1/x"}},
        env={"VAULT_TOKEN": "hvs.not-a-known-token"},
    ),
    Case(
        "vault_unreachable",
        VAULT_SOURCE,
        "secret/pgflow/shop",
        "Vault request failed",
        stage="run",
        env={"VAULT_ADDR": "http://127.0.0.1:1"},
    ),
    # --- caught by the run: hostile SQL in fields ------------------------------------------
    Case(
        "predicate_with_second_statement",
        strategy(mode="replace", custom_predicate="true; DROP TABLE public.items"),
        "sink.strategy.custom_predicate",
        "contains ';'",
        stage="run",
        cli=True,
    ),
    Case(
        "predicate_escaping_parentheses",
        strategy(mode="replace", custom_predicate="1=1) OR (true"),
        "sink.strategy.custom_predicate",
        "closes a parenthesis it did not open",
        stage="run",
    ),
    Case(
        "predicate_hiding_ddl_after_a_comment",
        strategy(mode="replace", custom_predicate="id > 0 /* */ ; CREATE TABLE landing.pwned()"),
        "sink.strategy.custom_predicate",
        "contains ';'",
        stage="run",
    ),
    Case(
        "predicate_with_ddl_in_dollar_quotes",
        strategy(mode="replace", custom_predicate="$$x$$ = 'x' $$; DROP SCHEMA landing CASCADE"),
        "sink.strategy.custom_predicate",
        "dollar-quoted string that is never closed",
        stage="run",
    ),
    Case(
        "predicate_on_unknown_column",
        strategy(mode="replace", custom_predicate="no_such_column > 1"),
        "sink.strategy.custom_predicate",
        'column "no_such_column" does not exist',
        stage="run",
    ),
    Case(
        "predicate_into_delta_with_second_statement",
        {
            "sink": {
                "type": "delta",
                "connection_id": DROP,
                "table": DROP,
                "path": "@LAKE@/items",
                "strategy": {"mode": "replace", "custom_predicate": "true; DROP TABLE items"},
            }
        },
        "sink.strategy.custom_predicate",
        "contains ';'",
        stage="run",
    ),
    Case(
        "source_table_missing",
        source_table(name="no_such_table"),
        "source.table",
        "not found on connection 'shop'",
        stage="run",
    ),
    Case(
        "unique_key_named_like_sql",
        strategy(mode="incremental_merge", unique_key=['id"; DROP TABLE items; --']),
        "sink.strategy.unique_key",
        "are not in the source",
        stage="run",
    ),
    Case(
        "cursor_column_named_like_sql",
        options(incremental_strategy="column", incremental_column='added" > now(); --')
        | {"sink": {"strategy": MERGE}},
        "source.options.incremental_column",
        "not a column of",
        stage="run",
    ),
    Case(
        "cdc_key_not_in_source",
        options(incremental_strategy="cdc")
        | strategy(mode="incremental_merge", unique_key=["name"]),
        "sink.strategy.unique_key",
        "replica identity",
        stage="run",
    ),
)
