"""LocalPostgres and seed_shop against real PostgreSQL clusters (no mocks)."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from pgflow.localdb.binaries import BINDIR_ENV, find_bindir
from pgflow.localdb.cluster import ClusterInfo, LocalPostgres
from pgflow.localdb.errors import LocalDbError
from pgflow.localdb.seed import SHOP_TABLES, seed_shop
from pgflow.localdb.server_user import SERVER_HOME_PARENT


@pytest.fixture(scope="module")
def cluster(make_pg_root: Callable[[], Path]) -> Iterator[LocalPostgres]:
    local = LocalPostgres(make_pg_root())
    local.start(["alpha", "beta"])
    yield local
    local.destroy()


@pytest.fixture
def info(cluster: LocalPostgres) -> ClusterInfo:
    # start() is idempotent and cheap when running: every test gets a running server even
    # if an earlier one stopped it.
    return cluster.start()


def scalar(uri: str, query: str) -> object:
    with psycopg.connect(uri) as conn:
        row = conn.execute(query).fetchone()
        assert row is not None
        return row[0]


def database_names(info: ClusterInfo) -> set[str]:
    with psycopg.connect(info.uri("postgres")) as conn:
        return {row[0] for row in conn.execute("SELECT datname FROM pg_database")}


def process_exits(pid: int, timeout_s: float = 10) -> bool:
    # pg_ctl stop returns once postmaster.pid is gone, a moment before the process exits.
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":  # exited, not yet reaped by its (init) parent
            return True
        time.sleep(0.05)
    return False


# -- cluster -------------------------------------------------------------------------------


def test_server_settings(info: ClusterInfo) -> None:
    uri = info.uri("alpha")
    assert info.host == "127.0.0.1"
    assert info.user == "postgres"
    assert scalar(uri, "SHOW wal_level") == "logical"
    assert scalar(uri, "SHOW max_replication_slots") == "20"
    assert scalar(uri, "SHOW max_wal_senders") == "20"
    assert scalar(uri, "SHOW listen_addresses") == "127.0.0.1"
    assert scalar(uri, "SHOW unix_socket_directories") == ""
    assert scalar(uri, "SHOW fsync") == "on"
    assert scalar(uri, "SHOW server_encoding") == "UTF8"
    assert scalar(uri, "SHOW lc_collate") == "C"


def test_start_creates_databases(cluster: LocalPostgres, info: ClusterInfo) -> None:
    assert {"alpha", "beta"} <= database_names(info)
    cluster.create_database('Mixed "Case" db')
    cluster.create_database('Mixed "Case" db')  # idempotent
    assert scalar(info.uri('Mixed "Case" db'), "SELECT current_database()") == 'Mixed "Case" db'


def test_start_is_idempotent(cluster: LocalPostgres, info: ClusterInfo) -> None:
    again = cluster.start(["alpha", "gamma"])
    assert again == info
    assert cluster.status() == info
    assert "gamma" in database_names(info)


def test_password_is_required(info: ClusterInfo) -> None:
    wrong = ClusterInfo(info.host, info.port, info.user, "not-the-password")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong.uri("alpha"), connect_timeout=5)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(host=info.host, port=info.port, user=info.user, dbname="alpha", password="")


def test_state_file_is_private(cluster: LocalPostgres, info: ClusterInfo) -> None:
    mode = stat.S_IMODE(cluster.state_file.stat().st_mode)
    assert mode == 0o600
    assert info.password in cluster.state_file.read_text()
    assert info.password not in repr(info)
    assert not (cluster.root / ".pwfile").exists()


def test_uri_percent_encodes() -> None:
    info = ClusterInfo("127.0.0.1", 5432, "post gres", "p@ss/w:rd%?#")
    parts = conninfo_to_dict(info.uri("my db"))
    assert parts == {
        "host": "127.0.0.1",
        "port": "5432",
        "user": "post gres",
        "password": "p@ss/w:rd%?#",
        "dbname": "my db",
    }


def test_stop_status_and_restart_on_same_port(cluster: LocalPostgres, info: ClusterInfo) -> None:
    cluster.stop()
    assert cluster.status() is None
    cluster.stop()  # not running: no error
    with pytest.raises(LocalDbError, match="not running"):
        cluster.create_database("delta")
    restarted = cluster.start(["delta"])
    assert restarted.port == info.port
    assert "delta" in database_names(restarted)


def test_restart_picks_new_port_when_taken(cluster: LocalPostgres, info: ClusterInfo) -> None:
    cluster.stop()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", info.port))
        squatter.listen()
        restarted = cluster.start()
    assert restarted.port != info.port
    assert scalar(restarted.uri("alpha"), "SELECT 1") == 1


def test_start_failure_shows_server_log(cluster: LocalPostgres, info: ClusterInfo) -> None:
    cluster.stop()
    conf = cluster.data_dir / "postgresql.conf"
    original = conf.read_text()
    conf.write_text(original + "\nshared_buffers = 'lots'\n")
    try:
        with pytest.raises(LocalDbError) as excinfo:
            cluster.start()
    finally:
        conf.write_text(original)
    message = str(excinfo.value)
    assert "failed to start" in message
    assert "shared_buffers" in message  # from the tail of postgres.log
    assert cluster.start().port == info.port


def test_destroy_removes_everything(make_pg_root: Callable[[], Path]) -> None:
    local = LocalPostgres(make_pg_root())
    info = local.start()
    pid = int((local.data_dir / "postmaster.pid").read_text().split()[0])
    local.destroy()
    assert not local.root.exists()
    assert local.status() is None
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(info.uri("postgres"), connect_timeout=2)
    assert process_exits(pid)
    local.destroy()  # nothing left: no error


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the data folder to postgres")
def test_private_state_folder_works_as_root() -> None:
    # `make demo` from a clone under /root or a `mktemp -d` folder (mode 0700): OS user
    # postgres cannot enter it, so the server's files live in a stand-in folder it can reach.
    private = Path(tempfile.mkdtemp(prefix="pgflow-private-", dir="/tmp"))
    local = LocalPostgres(private / "localdb")
    try:
        info = local.start(["shop"])
        assert scalar(info.uri("shop"), "SELECT current_database()") == "shop"
        assert stat.S_IMODE(private.stat().st_mode) == 0o700  # the user's folder is untouched
        home = local.server_home
        assert home.parent == SERVER_HOME_PARENT
        assert (private / "localdb" / "data").is_symlink()
        assert (home / "data" / "PG_VERSION").is_file()
        assert local.log_file == home / "postgres.log"
        assert not (home / ".pwfile").exists()
        # The password stays in the private folder, never in the reachable stand-in.
        assert (private / "localdb" / "cluster.json").is_file()
        assert not (home / "cluster.json").exists()
        local.stop()
        assert local.status() is None
        assert local.start().port == info.port  # restarts from the same stand-in
    finally:
        local.destroy()
        private.rmdir()
    assert not home.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the data folder to postgres")
def test_private_state_folder_recreated_after_deletion() -> None:
    # A clone deleted without `make clean` leaves the stand-in's data: a new clone at the same
    # path starts a fresh cluster there instead of failing on a non-empty data directory.
    private = Path(tempfile.mkdtemp(prefix="pgflow-private-", dir="/tmp"))
    local = LocalPostgres(private / "localdb")
    try:
        local.start()
        local.stop()
        home = local.server_home
        shutil.rmtree(private / "localdb")
        assert (home / "data" / "PG_VERSION").is_file()
        again = LocalPostgres(private / "localdb")
        info = again.start(["fresh"])
        assert scalar(info.uri("fresh"), "SELECT 1") == 1
    finally:
        LocalPostgres(private / "localdb").destroy()
        private.rmdir()


def test_find_bindir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bindir = find_bindir()
    assert (bindir / "pg_ctl").exists()
    monkeypatch.setenv(BINDIR_ENV, str(bindir))
    assert find_bindir() == bindir
    monkeypatch.setenv(BINDIR_ENV, str(tmp_path))
    with pytest.raises(LocalDbError, match=BINDIR_ENV):
        find_bindir()


# -- shop seed -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shop(local_pg: ClusterInfo) -> Iterator[tuple[str, dict[str, int]]]:
    name = "shop_seed_test"
    with psycopg.connect(local_pg.uri("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    uri = local_pg.uri(name)
    yield uri, seed_shop(uri, customers=300)
    with psycopg.connect(local_pg.uri("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_seed_counts_match_tables(shop: tuple[str, dict[str, int]]) -> None:
    uri, counts = shop
    assert set(counts) == set(SHOP_TABLES)
    for table in SHOP_TABLES:
        assert counts[table] == scalar(uri, f"SELECT count(*) FROM public.{table}")
    assert counts["customers"] == 300
    assert counts["orders"] == 900  # three per customer
    assert counts["orders"] <= counts["order_items"] <= 4 * counts["orders"]
    paid = scalar(uri, "SELECT count(*) FROM orders WHERE status IN ('paid', 'shipped')")
    assert counts["payments"] == paid


def test_seed_types(shop: tuple[str, dict[str, int]]) -> None:
    uri, _ = shop
    labels = scalar(uri, "SELECT enum_range(NULL::order_status)::text")
    assert labels == "{pending,paid,shipped,cancelled}"
    with psycopg.connect(uri) as conn:
        rows = conn.execute(
            """
            SELECT c.relname || '.' || a.attname, format_type(a.atttypid, a.atttypmod)
            FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
            WHERE c.relnamespace = 'public'::regnamespace AND a.attnum > 0
              AND c.relname IN ('customers', 'orders', 'order_items', 'payments')
            """
        ).fetchall()
        uuid_default = conn.execute(
            "SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef"
            " WHERE adrelid = 'customers'::regclass"
        ).fetchone()
    types = dict(rows)
    assert types["customers.uuid"] == "uuid"
    assert types["customers.tags"] == "text[]"
    assert types["customers.profile"] == "jsonb"
    assert types["customers.created_at"] == "timestamp with time zone"
    assert types["orders.status"] == "order_status"
    assert types["orders.total"] == "numeric(12,2)"
    assert types["orders.currency"] == "character(3)"
    assert types["order_items.discount"] == "numeric(5,4)"
    assert types["payments.paid_at"] == "timestamp with time zone"
    assert uuid_default == ("gen_random_uuid()",)


def test_seed_partitions_toast_and_nulls(shop: tuple[str, dict[str, int]]) -> None:
    uri, _ = shop
    assert scalar(uri, "SELECT relkind FROM pg_class WHERE oid = 'payments'::regclass") == "p"
    partitions = scalar(
        uri, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'payments'::regclass"
    )
    assert isinstance(partitions, int) and partitions > 1
    # The rows really are spread over several partitions.
    assert scalar(uri, "SELECT count(DISTINCT tableoid) FROM payments") > 1
    # Poorly compressible: the stored size stays above the 8 kB page.
    assert scalar(uri, "SELECT max(pg_column_size(notes)) FROM customers") > 8000
    assert scalar(uri, "SELECT max(length(notes)) FROM customers") > 8000
    for table, column in [
        ("customers", "name"),
        ("customers", "tags"),
        ("customers", "profile"),
        ("customers", "notes"),
        ("orders", "shipping_address"),
        ("order_items", "discount"),
    ]:
        nulls = scalar(uri, f"SELECT count(*) FROM {table} WHERE {column} IS NULL")
        assert isinstance(nulls, int) and nulls > 0, f"{table}.{column} has no NULLs"
    assert scalar(uri, "SELECT count(*) FROM customers WHERE tags = '{}'") > 0
    lines = scalar(
        uri,
        "SELECT array[min(n), max(n)] FROM (SELECT count(*) n FROM order_items"
        " GROUP BY order_id) per_order",
    )
    assert lines == [1, 4]


def test_seed_is_idempotent_and_deterministic(shop: tuple[str, dict[str, int]]) -> None:
    uri, counts = shop
    fingerprint = (
        "SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM ("
        " SELECT c::text FROM customers c UNION ALL SELECT o::text FROM orders o"
        " UNION ALL SELECT i::text FROM order_items i UNION ALL SELECT p::text FROM payments p"
        ") t(t)"
    )
    before = scalar(uri, fingerprint)
    assert seed_shop(uri, customers=300) == counts
    assert scalar(uri, fingerprint) == before
