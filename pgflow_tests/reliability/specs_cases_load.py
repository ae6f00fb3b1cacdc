"""Bad-spec cases caught when the code location loads (`load`): wrong types, unknown and
missing keys, identifiers, schedules and durations, connections known at load.

Part of `specs_cases.CASES` (see specs_cases.py).
"""

from __future__ import annotations

from pgflow_tests.reliability.specs_model import (
    BASE,
    DROP,
    DUPLICATE_KEY_YAML,
    LIST_YAML,
    MERGE,
    PYTHON_TAG_YAML,
    TABS_YAML,
    VAULT_SOURCE,
    Case,
    merge,
    options,
    sink_table,
    source_table,
    strategy,
)

LOAD_CASES: tuple[Case, ...] = (
    # --- wrong types -----------------------------------------------------------------------
    Case(
        "mode_is_a_list",
        strategy(mode=["full_refresh"]),
        "sink.strategy.mode",
        "must be a string, got list",
    ),
    Case(
        "unique_key_is_a_mapping",
        strategy(mode="incremental_merge", unique_key={"id": 1}),
        "sink.strategy.unique_key",
        "must be a non-empty list of column names",
    ),
    Case(
        "table_is_a_dotted_string",
        {"source": {"table": "public.items"}},
        "source.table",
        "must be a mapping, got str 'public.items'",
    ),
    Case(
        "only_new_rows_is_yes_text",
        strategy(mode="incremental_append", unique_key=["id"], only_new_rows="yes"),
        "sink.strategy.only_new_rows",
        "must be true or false, got str 'yes'",
    ),
    Case(
        "batch_size_is_negative",
        options(incremental_strategy="cdc", target_batch_size=-5) | {"sink": {"strategy": MERGE}},
        "source.options.target_batch_size",
        "must be a positive integer, got int -5",
    ),
    Case(
        "tags_is_a_list",
        {"tags": ["domain", "sales"]},
        "tags",
        "must be a mapping of tag names to string values",
    ),
    Case(
        "predicate_is_a_list",
        strategy(mode="replace", custom_predicate=["id > 1", "DROP TABLE items"]),
        "sink.strategy.custom_predicate",
        "must be a string, got list",
    ),
    # --- unknown and missing keys ----------------------------------------------------------
    Case("unknown_top_level_key", {"sorce": {}}, "sorce", "is not a known field; allowed here"),
    Case(
        "unknown_strategy_key",
        {"sink": {"strategy": {"unique_keys": ["id"]}}},
        "sink.strategy.unique_keys",
        "allowed here: create_partitions, custom_predicate, duplicate_policy",
    ),
    Case(
        "unknown_table_key",
        source_table(database="postgres"),
        "source.table.database",
        "allowed here: name, schema",
    ),
    Case(
        "misspelt_source_option",
        options(incremental_strategy="column", incremental_colum="added"),
        "source.options.incremental_colum",
        "is not a known field",
    ),
    Case("missing_sink", {"sink": DROP}, "sink", "is required (a mapping)"),
    Case(
        "missing_strategy",
        {"sink": {"strategy": DROP}},
        "sink.strategy",
        "is required (a mapping)",
    ),
    Case("missing_table_name", sink_table(name=DROP), "sink.table.name", "is required"),
    Case(
        "missing_connection_id",
        {"source": {"connection_id": DROP}},
        "source.connection_id",
        "is required for type postgres",
    ),
    Case(
        "merge_without_unique_key",
        strategy(mode="incremental_merge"),
        "sink.strategy.unique_key",
        "is required for mode incremental_merge",
    ),
    Case(
        "duplicate_yaml_key",
        DUPLICATE_KEY_YAML,
        "found key 'mode' twice",
        "line 12",
    ),
    Case(
        "python_object_tag",
        PYTHON_TAG_YAML,
        "line 1",
        "could not determine a constructor for the tag",
    ),
    Case("tab_indented_yaml", TABS_YAML, "line 2", "is not valid YAML"),
    Case(
        "a_list_not_a_mapping",
        LIST_YAML,
        "`source` and `sink`, or `pipelines:`",
        "must hold a mapping",
    ),
    # --- identifiers -----------------------------------------------------------------------
    Case(
        "nul_byte_in_sink_table",
        sink_table(name="items\x00; DROP TABLE public.items"),
        "sink.table.name",
        "holds the control character U+0000",
        cli=True,
    ),
    Case(
        "newline_in_source_schema",
        source_table(schema="public\nDROP"),
        "source.table.schema",
        "control character U+000A",
    ),
    Case(
        "bidi_override_in_sink_schema",
        sink_table(schema="landing\u202egnp"),
        "sink.table.schema",
        "control character U+202E",
    ),
    Case(
        "name_over_63_bytes",
        sink_table(name="ä" * 32),
        "sink.table.name",
        "is 64 bytes long; Postgres cuts names after 63 bytes",
    ),
    Case("blank_table_name", source_table(name="   "), "source.table.name", "is empty"),
    Case(
        "control_character_in_unique_key",
        strategy(mode="incremental_merge", unique_key=["id", "name\t--"]),
        "sink.strategy.unique_key",
        "control character U+0009",
    ),
    Case(
        "newline_in_cursor_column",
        options(incremental_strategy="column", incremental_column="added\n; DROP TABLE items")
        | {"sink": {"strategy": MERGE}},
        "source.options.incremental_column",
        "control character U+000A",
    ),
    Case(
        "sink_into_pgflow_state_schema",
        sink_table(schema="_pgflow", name="pipeline_state"),
        "sink.table.schema",
        "'_pgflow' is reserved",
    ),
    Case(
        "sink_into_pg_catalog",
        sink_table(schema="pg_catalog", name="pg_class"),
        "sink.table.schema",
        "'pg_catalog' is reserved",
    ),
    Case(
        "slot_name_with_sql",
        options(incremental_strategy="cdc", slot_name='s"; DROP TABLE items; --')
        | {"sink": {"strategy": MERGE}},
        "source.options.slot_name",
        "must be 1 to 63 lower-case letters, digits or _",
    ),
    Case(
        "pipeline_name_with_quote",
        {"name": "items'; DROP TABLE items; --"},
        "name",
        "must be letters, digits and _",
    ),
    Case(
        "asset_key_path_traversal",
        {"asset_key": "../../etc/passwd"},
        "asset_key",
        "must be parts of letters, digits, _ or - joined by /",
    ),
    Case(
        "tag_value_with_newline",
        {"tags": {"domain": "sales\nowner: mallory"}},
        "tags.domain",
        "must be letters, digits, _, - or .",
    ),
    Case(
        "delta_path_with_nul",
        {"sink": {"type": "delta", "connection_id": DROP, "table": DROP, "path": "@LAKE@/x\x00y"}},
        "sink.path",
        "holds a control character",
    ),
    # --- schedules, durations --------------------------------------------------------------
    Case(
        "cron_minute_61",
        {"schedule": "61 * * * *"},
        "schedule",
        "is not a valid cron expression",
    ),
    Case(
        "cron_with_shell",
        {"schedule": {"cron": "0 * * * *; rm -rf /", "timezone": "UTC"}},
        "schedule",
        "is not a valid cron expression",
    ),
    Case(
        "unknown_timezone",
        {"schedule": {"cron": "0 2 * * *", "timezone": "Mars/Olympus"}},
        "schedule",
        "timezone 'Mars/Olympus' is unknown",
    ),
    Case(
        "timezone_path_traversal",
        {"schedule": {"cron": "0 2 * * *", "timezone": "../../../etc/passwd"}},
        "schedule",
        "is unknown; use an IANA name",
    ),
    Case(
        "partition_timezone_unknown",
        {
            "sink": {"strategy": {"mode": "partition_replace", "partition_column": "added"}},
            "partitions": {"type": "daily", "start": "2026-01-01", "timezone": "Europe/Atlantis"},
        },
        "partitions.timezone",
        "'Europe/Atlantis' is unknown",
    ),
    Case("freshness_not_a_duration", {"freshness": "soon"}, "freshness", "is not a duration"),
    Case(
        "lookback_in_fortnights",
        options(incremental_strategy="column", incremental_column="added", lookback="2 fortnights")
        | {"sink": {"strategy": MERGE}},
        "source.options.lookback",
        "is not a duration",
    ),
    # --- connections known at load ---------------------------------------------------------
    Case(
        "env_connection_variable_unset_at_load",
        {},
        "source.connection_id",
        "set PGFLOW_CONN_SHOP to a libpq URI",
        env={"PGFLOW_CONN_SHOP": None},
    ),
    Case(
        "vault_connection_without_vault_addr",
        VAULT_SOURCE,
        "source.connection_id",
        "set VAULT_ADDR",
        env={"VAULT_ADDR": None},
    ),
    Case(
        "two_pipelines_one_target",
        {
            "pipelines": [BASE, merge(BASE, {"name": "items_again", "asset_key": "again/items"})],
            "source": DROP,
            "sink": DROP,
        },
        "sink",
        "writes the same target as pipeline 'landing_items'",
    ),
)
