"""pgflow: PostgreSQL tables replicated into Postgres and Delta Lake as Dagster assets."""
