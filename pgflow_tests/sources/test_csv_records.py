"""CSV COPY data cut into batches at record boundaries."""

from __future__ import annotations

from pgflow.sources.csv_records import complete_records, csv_batches


def test_record_boundaries_ignore_quoted_newlines():
    data = b'1,"a\nb"\n2,"c""\n"\n3,x\n4,"open\n'
    assert complete_records(data) == len(b'1,"a\nb"\n2,"c""\n"\n3,x\n')
    assert complete_records(b'1,"a\nb') == 0
    chunks = [data[i : i + 3] for i in range(0, len(data) - len(b'4,"open\n'), 3)]
    assert (
        b"".join(csv_batches(chunks, batch_rows=2, batch_bytes=10**6)) == data[: -len(b'4,"open\n')]
    )
