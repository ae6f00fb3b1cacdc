"""dlt loading one Postgres table (replace, or incremental merge), run by the bench suite in
dlt's own venv.

    <dlt-venv>/bin/python dlt_run.py '<json settings>'

Settings: source_uri, sink_uri, table, dataset, pipelines_dir, write_disposition ("replace":
the whole table; "merge": incremental on updated_at, primary key id), file_format (null:
dlt's default for Postgres, insert_values). Prints one JSON line: the rows dlt loaded into the
table and the seconds dlt's own trace gives for the run (extract + normalize + load), next to
this process's wall time from the first import of dlt.

This file runs with dlt's interpreter only: it imports nothing from pgflow.
"""

import json
import sys
import time

started = time.perf_counter()

import dlt  # noqa: E402  (the import is part of what a user waits for)
from dlt.sources.sql_database import sql_table  # noqa: E402


def main() -> None:
    settings = json.loads(sys.argv[1])
    table = settings["table"]
    # SQLAlchemy 2.1 maps postgresql:// to psycopg 3; dlt[postgres] ships psycopg2.
    source_uri = settings["source_uri"].replace("postgresql://", "postgresql+psycopg2://", 1)
    merge = settings.get("write_disposition", "merge") == "merge"
    resource = sql_table(
        credentials=source_uri,
        table=table,
        schema="public",
        incremental=dlt.sources.incremental("updated_at") if merge else None,
        backend="pyarrow",
        primary_key="id",
        # merge: dlt's default merge strategy, delete-insert
        write_disposition="merge" if merge else "replace",
    )
    pipeline = dlt.pipeline(
        pipeline_name=settings["dataset"],
        destination=dlt.destinations.postgres(credentials=settings["sink_uri"]),
        dataset_name=settings["dataset"],
        pipelines_dir=settings["pipelines_dir"],
        progress="log" if settings.get("verbose") else None,
    )
    run_started = time.perf_counter()
    pipeline.run(resource, loader_file_format=settings.get("file_format"))
    run_seconds = time.perf_counter() - run_started
    trace = pipeline.last_trace
    normalize = trace.last_normalize_info
    rows = normalize.row_counts.get(table, 0) if normalize else 0
    print(
        json.dumps(
            {
                "rows": rows,
                "run_seconds": run_seconds,
                "trace_seconds": (trace.finished_at - trace.started_at).total_seconds(),
                "process_seconds": time.perf_counter() - started,
                "steps": {
                    step.step: (step.finished_at - step.started_at).total_seconds()
                    for step in trace.steps
                },
                "dlt_version": dlt.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
