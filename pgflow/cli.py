"""The `pgflow` command line: each subcommand parses its own arguments."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from pgflow.flows.cdc.cleanup import cleanup_main
from pgflow.localdb.cli import localdb_main
from pgflow.report import report_main
from pgflow.specs_cli import specs_main

Handler = Callable[[list[str]], int]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pgflow", description="pgflow command line")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # add_help=False: `pgflow localdb --help` and every other argument go to the subcommand.
    commands.add_parser(
        "localdb", add_help=False, help="run a local PostgreSQL for development"
    ).set_defaults(handler=localdb_main)
    commands.add_parser(
        "report", add_help=False, help="where each pipeline's data went (row counts per target)"
    ).set_defaults(handler=report_main)
    commands.add_parser(
        "specs",
        add_help=False,
        help="schema-wide specs: `pgflow specs refresh`, `pgflow specs show FILE`",
    ).set_defaults(handler=specs_main)
    commands.add_parser(
        "cdc", add_help=False, help="CDC housekeeping: `pgflow cdc cleanup [--dry-run]`"
    ).set_defaults(handler=cdc_main)
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    handler: Handler = args.handler
    return handler(rest)


def cdc_main(argv: list[str]) -> int:
    if not argv or argv[0] != "cleanup":
        print("usage: pgflow cdc cleanup [--dry-run] [--config PATH] [--connection ID]")
        return 2
    return cleanup_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
