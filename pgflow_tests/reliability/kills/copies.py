"""State cloning and restore on the cluster: BEFORE as a template database (cloned ahead, in the
background), a CDC slot copied from a template slot that never moves, used copies dropped
behind the kills."""

from __future__ import annotations

import contextlib
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import psycopg
from psycopg import sql
from psycopg.abc import Query

from pgflow.localdb.cluster import ClusterInfo
from pgflow_tests.reliability.kills.observe import PROBE_APP

CREATE_ATTEMPTS = 200


class ClusterCopies:
    """One sweep's databases and slots: the source, BEFORE's template and its clones."""

    def __init__(self, cluster: ClusterInfo, tag: str) -> None:
        self.cluster = cluster
        self.tag = tag
        self.source_db = f"k_{tag}_src"
        self.template_db = f"k_{tag}_before"
        self.slot = f"pgflow_k_{tag}"
        self.template_slot = f"pgflow_k_{tag}_tpl"
        self.databases: list[str] = []
        # Clones are made ahead, in the background, while kills run.
        self.maker = ThreadPoolExecutor(max_workers=1)
        self.prepared: list[Future[str]] = []

    def admin(
        self, statement: Query, params: Any = None, db: str = "postgres"
    ) -> list[tuple[Any, ...]]:
        with psycopg.connect(
            self.cluster.uri(db), autocommit=True, application_name=PROBE_APP
        ) as conn:
            cur = conn.execute(statement, params)
            return cur.fetchall() if cur.description else []

    def create_database(self, name: str, template: str | None = None) -> None:
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            statement = sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY WAL_LOG").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        for attempt in range(CREATE_ATTEMPTS):
            try:
                self.admin(statement)
                break
            except psycopg.errors.ObjectInUse:  # autovacuum visiting the template
                if attempt == CREATE_ATTEMPTS - 1:
                    raise
                time.sleep(0.05)
        self.databases.append(name)

    def next_clone(self) -> str:
        """A fresh copy of BEFORE (made ahead); the next one starts in the background."""
        if not self.prepared:
            self.prepared.append(self.maker.submit(self._new_clone))
        name = self.prepared.pop(0).result()
        self.prepared.append(self.maker.submit(self._new_clone))
        return name

    def _new_clone(self) -> str:
        name = f"k_{self.tag}_{uuid.uuid4().hex[:8]}"
        self.create_database(name, template=self.template_db)
        return name

    def save_slot(self) -> None:
        """BEFORE's slot position, kept in the template slot."""
        self.copy_slot(self.slot, self.template_slot)

    def reset_slot(self, restore: bool) -> None:
        """Drop the run's slot; with `restore`, put a copy of BEFORE's in its place."""
        self.wait_slot_free(self.slot)
        self.drop_slot(self.slot)
        if restore:
            self.copy_slot(self.template_slot, self.slot)

    def copy_slot(self, source: str, copy: str) -> None:
        """A copy of a slot at its position (made in the slot's own database)."""
        self.admin(
            "SELECT pg_copy_logical_replication_slot(%s, %s)", (source, copy), db=self.source_db
        )

    def drop_slot(self, slot: str) -> None:
        self.admin(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
            " WHERE slot_name = %s",
            (slot,),
        )

    def wait_gone(self, app_name: str, timeout: float = 20.0) -> None:
        """Until the killed client's backends (and walsenders) have left pg_stat_activity."""
        query = "SELECT pid FROM pg_stat_activity WHERE application_name = %s"
        self._wait_until_none(query, app_name, f"backends of {app_name} still there", timeout)

    def wait_slot_free(self, slot: str, timeout: float = 20.0) -> None:
        query = "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s AND active"
        self._wait_until_none(query, slot, f"slot {slot} still active", timeout)

    def _wait_until_none(self, query: str, arg: str, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.admin(query, (arg,)):
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} after {timeout}s")
            time.sleep(0.01)

    def drop_later(self, name: str) -> None:
        """Drop a database in the background (DROP DATABASE waits for a checkpoint)."""
        with contextlib.suppress(ValueError):
            self.databases.remove(name)
        _DROPPER.submit(_drop_database, self.cluster.uri("postgres"), name)

    def close(self) -> None:
        """Drop what this sweep made on the cluster: its slots, then its databases."""
        self.maker.shutdown(wait=True)
        for future in self.prepared:
            with contextlib.suppress(psycopg.Error):
                future.result()
        for slot in (self.slot, self.template_slot):
            with contextlib.suppress(psycopg.Error, AssertionError):
                self.wait_slot_free(slot)
                self.drop_slot(slot)
        for name in list(self.databases):
            self.drop_later(name)
        # A DROP DATABASE holds a transaction ID for as long as it runs; one still running
        # when the next test of this worker starts holds back that test's snapshot xmin
        # (an xmin reader would re-read its rows). The sweep ends when its drops have.
        _DROPPER.submit(lambda: None).result()


# Used databases are dropped by one thread per worker process, behind the kills; a sweep
# waits for them before it ends.
_DROPPER = ThreadPoolExecutor(max_workers=1)


def _drop_database(admin_uri: str, name: str) -> None:
    with (
        contextlib.suppress(psycopg.Error),
        psycopg.connect(admin_uri, autocommit=True, application_name=PROBE_APP) as conn,
    ):
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
