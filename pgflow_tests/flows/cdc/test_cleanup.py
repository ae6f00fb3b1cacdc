"""`pgflow cdc cleanup` drops what removed pipelines left on the source, and only that."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg

from pgflow.config.model import StrategySpec, TableName
from pgflow.flows.cdc.model import CdcSettings, CdcTarget
from pgflow.flows.cdc.run import replicate
from pgflow_tests.flows.cdc.conftest import connector
from pgflow_tests.pg import drop_slots, execute, fetch

PGFLOW = str(Path(sys.executable).with_name("pgflow"))
LIVE_SPEC = """
source:
  type: postgres
  connection_id: shop
  table: {{schema: public, name: c}}
  options: {{incremental_strategy: cdc, slot_name: {slot}, publication_name: {slot}}}
sink:
  type: postgres
  connection_id: warehouse
  table: {{schema: landing, name: c}}
  strategy: {{mode: incremental_merge, unique_key: [id]}}
"""


def start(source_uri: str, sink_uri: str, table: str, slot: str, auto_cleanup: bool) -> None:
    settings = CdcSettings(slot=slot, publication=slot, auto_cleanup=auto_cleanup)
    target = CdcTarget(
        TableName("landing", table), StrategySpec("incremental_merge", unique_key=("id",))
    )
    replicate(
        connector(source_uri),
        connector(sink_uri),
        TableName("public", table),
        target,
        settings,
        f"p_{table}",
    )


def cleanup(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [PGFLOW, "cdc", "cleanup", *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_cleanup_drops_only_what_removed_auto_cleanup_pipelines_left(
    source_uri: str, sink_uri: str, tmp_path: Path
) -> None:
    prefix = "s" + psycopg.conninfo.conninfo_to_dict(source_uri)["dbname"][-10:]
    slots = {t: f"{prefix}_{t}" for t in ("a", "b", "c")}
    for table in slots:
        execute(source_uri, f"CREATE TABLE public.{table} (id int PRIMARY KEY)")
    try:
        start(source_uri, sink_uri, "a", slots["a"], auto_cleanup=True)
        start(source_uri, sink_uri, "b", slots["b"], auto_cleanup=False)
        start(source_uri, sink_uri, "c", slots["c"], auto_cleanup=True)
        (tmp_path / "c.yaml").write_text(LIVE_SPEC.format(slot=slots["c"]))  # only c remains
        env = {
            **os.environ,
            "PGFLOW_CONFIG": str(tmp_path),
            "PGFLOW_CONN_SHOP": source_uri,
            "PGFLOW_CONN_WAREHOUSE": sink_uri,
        }

        listed = cleanup(env, "--dry-run")
        assert f"pipeline 'p_a' is gone; would drop slot {slots['a']}" in listed
        assert (
            f"kept slot {slots['b']} and publication {slots['b']} (auto_cleanup is off)" in listed
        )
        assert "p_c" not in listed
        assert cleanup_state(source_uri, slots) == {
            "a": (True, True),
            "b": (True, True),
            "c": (True, True),
        }

        dropped = cleanup(env)
        assert f"dropped slot {slots['a']}" in dropped
        assert cleanup_state(source_uri, slots) == {
            "a": (False, False),
            "b": (True, True),
            "c": (True, True),
        }
    finally:
        drop_slots(source_uri, *slots.values())


def cleanup_state(uri: str, slots: dict[str, str]) -> dict[str, tuple[bool, bool]]:
    """Per table: (slot exists, publication exists)."""
    result = {}
    for table, name in slots.items():
        slot = fetch(uri, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", (name,))
        publication = fetch(uri, "SELECT count(*) FROM pg_publication WHERE pubname = %s", (name,))
        result[table] = (slot == [(1,)], publication == [(1,)])
    return result


def test_a_publication_of_a_live_slot_is_kept(
    source_uri: str, sink_uri: str, tmp_path: Path
) -> None:
    """A slot named before the publication's default became the slot's name streamed
    `pgflow_<pipeline>`: that publication is not the group's, but dropping it would drop the
    group's slot."""
    slot = "s" + psycopg.conninfo.conninfo_to_dict(source_uri)["dbname"][-10:] + "_c"
    old = f"pgflow_{slot}_old"
    execute(source_uri, "CREATE TABLE public.c (id int PRIMARY KEY)")
    settings = CdcSettings(slot=slot, publication=old, auto_cleanup=True)
    target = CdcTarget(
        TableName("landing", "c"), StrategySpec("incremental_merge", unique_key=("id",))
    )
    try:
        replicate(
            connector(source_uri),
            connector(sink_uri),
            TableName("public", "c"),
            target,
            settings,
            "p_c",
        )
        live = LIVE_SPEC.format(slot=slot).replace(f", publication_name: {slot}", "")
        (tmp_path / "c.yaml").write_text(live)  # the group's publication: the slot's name
        env = {
            **os.environ,
            "PGFLOW_CONFIG": str(tmp_path),
            "PGFLOW_CONN_SHOP": source_uri,
            "PGFLOW_CONN_WAREHOUSE": sink_uri,
        }
        assert cleanup(env) == "shop: nothing to clean up\n"
        assert cleanup_state(source_uri, {"c": slot})["c"][0]
        assert fetch(source_uri, "SELECT pubname FROM pg_publication") == [(old,)]
    finally:
        drop_slots(source_uri, slot)
