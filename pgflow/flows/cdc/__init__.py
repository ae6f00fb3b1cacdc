"""CDC: PostgreSQL tables replicated through a logical slot into Postgres or Delta targets,
many tables per slot when their pipelines share one.

The way of one run, module by module:

    group_run.replicate_group    per table: catalog, checks, stored position (group_setup),
                                 the publication (group_publication), the slot
      backfill.backfill          new or reset tables, as of an exported snapshot
      live_add.backfilling       tables joining a running group: loaded in a thread while
                                 the others stream in rounds
      group_stream.stream_group  START_REPLICATION; changes routed per table, staged in
                                 batches (stage.Stager, segment.Segment) on a second sink
                                 connection
        group_applier            in a thread, meanwhile: each table's part of a batch in ONE
                                 sink transaction with its end LSN (apply.apply_staged;
                                 segment_apply: the set-based SQL of one segment), then the
                                 slot confirmed to the group's lowest position
    run.replicate                a pipeline with a slot of its own: a group of one

member_sink is the one seam between those steps and a member's target kind:
postgres_member (the steps above) or delta_member, a Delta table whose position is the
table's app transaction (sinks/delta/cdc_state.py): each batch staged in temporary tables of
a source session of its own (delta_stage), applied as ONE merge commit (delta_apply; a moved
key's unchanged TOAST value from the table: delta_moves), the table checked against the
source's catalog each round (delta_schema).

group_model and model hold the values they share (settings, members, targets, results);
cleanup is `pgflow cdc cleanup`, which drops what removed pipelines left on the source.
"""
