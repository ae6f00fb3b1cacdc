"""CDC: a PostgreSQL table replicated into a Postgres target through a logical slot.

The way of one batch, module by module:

    run.replicate            checks, publication; the slot's position vs the stored LSN
      snapshot.start         first run or reset: a fresh slot and the table as of its start
      stream.stream          read the slot (pgoutput, in windows of a few batches)
        stage.stage_batch    COPY the batch's changes into staging tables (segment.Segment),
                             on a second sink connection
        applier.Applier      in a thread, meanwhile:
          apply.apply_staged   apply it in ONE sink transaction with its end LSN
                               (segment_apply: the set-based SQL of one segment)
          then confirm         advance the slot to that LSN, only after the commit

model holds the values they share (settings, target, results); cleanup is
`pgflow cdc cleanup`, which drops what removed pipelines left on the source.
"""
