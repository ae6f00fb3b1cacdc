"""Which object-store errors mean refused credentials (not worth a retry) and which are transient."""

from __future__ import annotations

import pytest

from pgflow.sinks.delta.table import is_refused, is_storage_failure, storage_error

OPTIONS = {"aws_secret_access_key": "s3cr3t-value", "aws_endpoint_url": "http://127.0.0.1:40312"}


@pytest.mark.parametrize(
    "text",
    [
        "Generic S3 error: Error performing PUT http://127.0.0.1:40312/b/_delta_log/x.json",
        "Generic S3 error: bucket pgflow-a403b1 after 10 retries, elapsed 1.403s",
        "error sending request for url (http://localhost:9000/lake-403x/part-0.parquet)",
    ],
)
def test_a_403_inside_a_port_a_bucket_or_a_duration_is_a_transient_failure(text: str) -> None:
    assert not is_refused(OSError(text))
    error = storage_error("s3://b/lake/orders", OSError(text), OPTIONS)
    assert error.transient and "run again" in str(error)


@pytest.mark.parametrize(
    "text",
    [
        "Generic S3 error: Client error with status 403 Forbidden: <Error>",
        "Generic S3 error: status code: 403, InvalidAccessKeyId",
        "SignatureDoesNotMatch: s3cr3t-value",
    ],
)
def test_refused_credentials_are_not_transient_and_hide_the_secret(text: str) -> None:
    assert is_refused(OSError(text))
    error = storage_error("s3://b/lake/orders", OSError(text), OPTIONS)
    assert not error.transient and "refused the credentials" in str(error)
    assert "s3cr3t-value" not in str(error)


def test_delta_rs_own_errors_are_no_store_failure() -> None:
    planning = "Generic DeltaTable error: type_coercion\ncaused by\nError during planning: ..."
    assert not is_storage_failure(RuntimeError(planning))
    wrapped = "Generic DeltaTable error: Generic S3 error: Error performing PUT http://h/b/x"
    assert is_storage_failure(RuntimeError(wrapped))
