"""`pgflow localdb start|stop|status|env|seed|destroy`: a local PostgreSQL for development."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from pgflow.localdb.cluster import ClusterInfo, LocalPostgres
from pgflow.localdb.errors import LocalDbError
from pgflow.localdb.seed import seed_shop, shop_activity, shop_seeded

DIR_ENV = "PGFLOW_LOCALDB_DIR"
DEFAULT_DIR = Path(".pgflow") / "localdb"
DEFAULT_DATABASES = ("shop", "warehouse", "dagster")
SHOP_DB = "shop"
WAREHOUSE_DB = "warehouse"
DAGSTER_DB = "dagster"


def localdb_main(argv: list[str]) -> int:
    """Run one `pgflow localdb` command; returns the process exit code."""
    args = _parser().parse_args(argv)
    cluster = LocalPostgres(_state_dir(args.dir))
    try:
        return int(args.handler(cluster, args))
    except LocalDbError as exc:
        print(f"pgflow localdb: error: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    # --dir is accepted before or after the command; SUPPRESS keeps the sub-level default
    # from overwriting a value given at the top level.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", default=argparse.SUPPRESS, help=_dir_help())
    parser = argparse.ArgumentParser(
        prog="pgflow localdb", description="Run a local PostgreSQL cluster for development."
    )
    parser.add_argument("--dir", default=None, help=_dir_help())
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    start = commands.add_parser("start", parents=[common], help="initialise and start")
    start.add_argument(
        "--database",
        action="append",
        metavar="NAME",
        help=f"database to create (repeatable; default: {', '.join(DEFAULT_DATABASES)})",
    )
    start.set_defaults(handler=_start)
    commands.add_parser("stop", parents=[common], help="stop the server").set_defaults(
        handler=_stop
    )
    commands.add_parser(
        "destroy", parents=[common], help="stop the server and delete all of its files"
    ).set_defaults(handler=_destroy)
    commands.add_parser(
        "status", parents=[common], help="print host and port; exit code 1 when not running"
    ).set_defaults(handler=_status)
    commands.add_parser(
        "env", parents=[common], help="print `export` lines for pgflow and Dagster"
    ).set_defaults(handler=_env)
    seed = commands.add_parser("seed", parents=[common], help="(re)create the demo shop data")
    seed.add_argument("--customers", type=int, default=1000, help="scale (default: 1000)")
    seed.add_argument(
        "--keep-existing",
        action="store_true",
        help="leave a shop that is already seeded as it is (make demo: a second run goes on "
        "incrementally instead of re-creating tables under the demo's CDC slot)",
    )
    seed.set_defaults(handler=_seed)
    commands.add_parser(
        "activity", parents=[common], help="change some of the demo shop's orders (for CDC)"
    ).set_defaults(handler=_activity)
    return parser


def _dir_help() -> str:
    return f"state folder (default: ${DIR_ENV} or ./{DEFAULT_DIR})"


def _state_dir(given: str | None) -> Path:
    return Path(given or os.environ.get(DIR_ENV) or DEFAULT_DIR)


def _start(cluster: LocalPostgres, args: argparse.Namespace) -> int:
    databases = args.database or list(DEFAULT_DATABASES)
    info = cluster.start(databases)
    print(f"PostgreSQL running on {info.host}:{info.port} (user {info.user})")
    print(f"  state folder: {cluster.root}")
    if cluster.server_home != cluster.root:
        print(
            f"  server files: {cluster.server_home} (OS user postgres cannot enter the state folder)"
        )
    print(f"  databases:    {', '.join(databases)}")
    print(f'  environment:  eval "$(pgflow localdb --dir {shlex.quote(str(cluster.root))} env)"')
    return 0


def _stop(cluster: LocalPostgres, args: argparse.Namespace) -> int:
    running = cluster.status() is not None
    cluster.stop()
    print("stopped" if running else "not running")
    return 0


def _destroy(cluster: LocalPostgres, args: argparse.Namespace) -> int:
    cluster.destroy()
    print(f"destroyed ({cluster.root})")
    return 0


def _status(cluster: LocalPostgres, args: argparse.Namespace) -> int:
    info = cluster.status()
    if info is None:
        print(f"not running ({cluster.root})")
        return 1
    print(f"running on {info.host}:{info.port} (user {info.user}, state folder {cluster.root})")
    return 0


def _env(cluster: LocalPostgres, args: argparse.Namespace) -> int:
    info = _require_running(cluster)
    for name, value in env_vars(info).items():
        print(f"export {name}={shlex.quote(value)}")
    return 0


def env_vars(info: ClusterInfo) -> dict[str, str]:
    """The environment that points pgflow's demo connections and Dagster at the cluster."""
    return {
        "PGFLOW_CONN_SHOP": info.uri(SHOP_DB),
        "PGFLOW_CONN_WAREHOUSE": info.uri(WAREHOUSE_DB),
        "DAGSTER_PG_HOST": info.host,
        "DAGSTER_PG_PORT": str(info.port),
        "DAGSTER_PG_USER": info.user,
        "DAGSTER_PG_PASSWORD": info.password,
        "DAGSTER_PG_DB": DAGSTER_DB,
    }


def _seed(cluster: LocalPostgres, args: argparse.Namespace) -> int:
    info = _require_running(cluster)
    cluster.create_database(SHOP_DB)
    uri = info.uri(SHOP_DB)
    if args.keep_existing and shop_seeded(uri):
        # Re-created tables would stop the demo's CDC pipelines, rightly: a table replaced
        # under pending changes is not carried over without a reset.
        print(f"database {SHOP_DB} is already seeded; kept as it is (--keep-existing)")
        return 0
    counts = seed_shop(uri, customers=args.customers)
    summary = ", ".join(f"{table}={count}" for table, count in counts.items())
    print(f"seeded database {SHOP_DB}: {summary}")
    return 0


def _activity(cluster: LocalPostgres, args: argparse.Namespace) -> int:
    info = _require_running(cluster)
    counts = shop_activity(info.uri(SHOP_DB))
    print(f"database {SHOP_DB}: orders " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    return 0


def _require_running(cluster: LocalPostgres) -> ClusterInfo:
    info = cluster.status()
    if info is None:
        raise LocalDbError(
            f"local PostgreSQL in {cluster.root} is not running: run `pgflow localdb start`"
        )
    return info
