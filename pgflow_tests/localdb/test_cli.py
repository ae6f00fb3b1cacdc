"""`pgflow localdb ...` end to end against a real cluster."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from pgflow.cli import main
from pgflow.localdb.cli import localdb_main
from pgflow.localdb.cluster import LocalPostgres

ENV_NAMES = {
    "PGFLOW_CONN_SHOP",
    "PGFLOW_CONN_WAREHOUSE",
    "DAGSTER_PG_HOST",
    "DAGSTER_PG_PORT",
    "DAGSTER_PG_USER",
    "DAGSTER_PG_PASSWORD",
    "DAGSTER_PG_DB",
}


@pytest.fixture(scope="module")
def state_dir(make_pg_root: Callable[[], Path]) -> Iterator[Path]:
    root = make_pg_root()
    yield root
    LocalPostgres(root).destroy()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = localdb_main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def parse_exports(text: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in text.splitlines():
        keyword, assignment = shlex.split(line)
        assert keyword == "export"
        name, _, value = assignment.partition("=")
        env[name] = value
    return env


def test_status_and_env_before_start(capsys: pytest.CaptureFixture[str], state_dir: Path) -> None:
    code, out, _ = run(capsys, "--dir", str(state_dir), "status")
    assert (code, out.startswith("not running")) == (1, True)
    code, out, err = run(capsys, "--dir", str(state_dir), "env")
    assert code == 1
    assert out == ""
    assert "pgflow localdb start" in err


def test_start_env_seed_stop(capsys: pytest.CaptureFixture[str], state_dir: Path) -> None:
    code, out, _ = run(capsys, "start", "--dir", str(state_dir))
    assert code == 0
    assert "shop, warehouse, dagster" in out

    code, out, _ = run(capsys, "--dir", str(state_dir), "status")
    info = LocalPostgres(state_dir).status()
    assert info is not None
    assert code == 0
    assert f"{info.host}:{info.port}" in out

    code, out, _ = run(capsys, "--dir", str(state_dir), "env")
    assert code == 0
    env = parse_exports(out)
    assert set(env) == ENV_NAMES
    assert env["PGFLOW_CONN_SHOP"] == info.uri("shop")
    assert env["PGFLOW_CONN_WAREHOUSE"] == info.uri("warehouse")
    assert env["DAGSTER_PG_DB"] == "dagster"
    with psycopg.connect(
        host=env["DAGSTER_PG_HOST"],
        port=env["DAGSTER_PG_PORT"],
        user=env["DAGSTER_PG_USER"],
        password=env["DAGSTER_PG_PASSWORD"],
        dbname=env["DAGSTER_PG_DB"],
    ) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("dagster",)

    code, out, _ = run(capsys, "--dir", str(state_dir), "seed", "--customers", "20")
    assert code == 0
    assert "customers=20" in out
    with psycopg.connect(env["PGFLOW_CONN_SHOP"]) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (60,)
        conn.execute("DELETE FROM payments WHERE order_id = 1")
        conn.execute("DELETE FROM order_items WHERE order_id = 1")
        conn.execute("DELETE FROM orders WHERE id = 1")
    seed = ("--dir", str(state_dir), "seed", "--customers", "20")
    code, out, _ = run(capsys, *seed, "--keep-existing")
    assert (code, out.strip()) == (
        0,
        "database shop is already seeded; kept as it is (--keep-existing)",
    )
    with psycopg.connect(env["PGFLOW_CONN_SHOP"]) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (59,)
    code, out, _ = run(capsys, *seed)  # without the flag: re-created
    with psycopg.connect(env["PGFLOW_CONN_SHOP"]) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (60,)

    code, out, _ = run(capsys, "--dir", str(state_dir), "stop")
    assert (code, out.strip()) == (0, "stopped")
    code, out, _ = run(capsys, "--dir", str(state_dir), "status")
    assert code == 1
    assert "not running" in out


def test_start_named_databases(capsys: pytest.CaptureFixture[str], state_dir: Path) -> None:
    code, out, _ = run(capsys, "--dir", str(state_dir), "start", "--database", "extra")
    assert code == 0
    assert "databases:    extra" in out
    info = LocalPostgres(state_dir).status()
    assert info is not None
    with psycopg.connect(info.uri("extra")) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert run(capsys, "--dir", str(state_dir), "stop")[0] == 0


def test_dir_from_environment(
    capsys: pytest.CaptureFixture[str], state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGFLOW_LOCALDB_DIR", str(state_dir))
    code, out, _ = run(capsys, "status")
    assert code == 1
    assert str(state_dir) in out


def test_pgflow_main_dispatches(capsys: pytest.CaptureFixture[str], state_dir: Path) -> None:
    assert main(["localdb", "--dir", str(state_dir), "status"]) == 1
    assert main(["localdb", "status", "--dir", str(state_dir)]) == 1
    assert "not running" in capsys.readouterr().out
    with pytest.raises(SystemExit) as excinfo:
        main(["localdb", "--help"])
    assert excinfo.value.code == 0
    assert "start" in capsys.readouterr().out


def test_module_entry_point(state_dir: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pgflow.cli", "localdb", "--dir", str(state_dir), "status"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "not running" in result.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the data folder to postgres")
def test_start_in_private_folder_and_destroy(capsys: pytest.CaptureFixture[str]) -> None:
    # `make demo` / `make clean` as root from a folder only root may enter.
    private = Path(tempfile.mkdtemp(prefix="pgflow-private-", dir="/tmp"))
    state = private / ".pgflow" / "localdb"
    try:
        code, out, _ = run(capsys, "--dir", str(state), "start", "--database", "shop")
        home = LocalPostgres(state).server_home
        assert code == 0
        assert f"server files: {home}" in out
        code, out, _ = run(capsys, "--dir", str(state), "destroy")
        assert code == 0
        assert not state.exists()
        assert not home.exists()
    finally:
        LocalPostgres(state).destroy()
        shutil.rmtree(private)
