"""dlt loading every table of one Postgres schema (`sql_database()`, write_disposition
"replace"), run by bench/schema_wide.py in dlt's own venv.

    <dlt-venv>/bin/python schema_wide_dlt.py '<json settings>'

Settings: source_uri, sink_uri, schema, dataset, pipelines_dir. Prints one JSON line: the rows
dlt loaded (every table's, dlt's own tables left out), its tables, and its version.

This file runs with dlt's interpreter only: it imports nothing from pgflow.
"""

import json
import sys

import dlt
from dlt.sources.sql_database import sql_database


def main() -> None:
    settings = json.loads(sys.argv[1])
    # SQLAlchemy 2.1 maps postgresql:// to psycopg 3; dlt[postgres] ships psycopg2.
    source_uri = settings["source_uri"].replace("postgresql://", "postgresql+psycopg2://", 1)
    source = sql_database(credentials=source_uri, schema=settings["schema"], backend="pyarrow")
    pipeline = dlt.pipeline(
        pipeline_name=settings["dataset"],
        destination=dlt.destinations.postgres(credentials=settings["sink_uri"]),
        dataset_name=settings["dataset"],
        pipelines_dir=settings["pipelines_dir"],
    )
    pipeline.run(source, write_disposition="replace")
    normalize = pipeline.last_trace.last_normalize_info
    counts = {t: n for t, n in (normalize.row_counts if normalize else {}).items()}
    loaded = {t: n for t, n in counts.items() if not t.startswith("_dlt")}
    print(
        json.dumps(
            {"rows": sum(loaded.values()), "tables": len(loaded), "dlt_version": dlt.__version__}
        )
    )


if __name__ == "__main__":
    main()
