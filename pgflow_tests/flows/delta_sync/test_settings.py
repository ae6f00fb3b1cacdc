"""The sync's settings from the environment, checked; backoff with full jitter."""

from __future__ import annotations

import pytest

from pgflow.flows.delta_sync.settings import SyncSettings, SyncSettingsError, backoff_seconds


def test_settings_come_from_the_environment_and_are_checked() -> None:
    assert SyncSettings.from_env({}) == SyncSettings()
    defaults = SyncSettings()
    assert (defaults.postgres_batch_size, defaults.delta_batch_size) == (10_000, 100_000)
    assert (defaults.postgres_max_retries, defaults.delta_max_retries) == (10, 5)
    assert (defaults.postgres_retry_delay, defaults.delta_retry_delay) == (1.0, 10.0)
    env = {
        "POSTGRES_CLIENT_BATCH_SIZE": "250",
        "POSTGRES_RETRY_DELAY": "0.5",
        "DELTA_CLIENT_WRITE_RETRIES": "0",
    }
    settings = SyncSettings.from_env(env)
    assert settings.postgres_batch_size == 250
    assert settings.postgres_retry_delay == 0.5
    assert settings.delta_max_retries == 0

    bad = [
        ("POSTGRES_CLIENT_BATCH_SIZE", "abc"),
        ("POSTGRES_CLIENT_BATCH_SIZE", "0"),
        ("DELTA_CLIENT_BATCH_SIZE", "1.5"),
        ("POSTGRES_MAX_RETRIES", "-1"),
        ("POSTGRES_RETRY_DELAY", "nan"),
        ("DELTA_CLIENT_WRITE_RETRY_DELAY", "-3"),
    ]
    for variable, value in bad:
        with pytest.raises(SyncSettingsError, match=f"{variable}.*{value}"):
            SyncSettings.from_env({variable: value})
    with pytest.raises(SyncSettingsError, match="POSTGRES_CLIENT_BATCH_SIZE"):
        SyncSettings(postgres_batch_size=0)


def test_backoff_is_exponential_with_full_jitter() -> None:
    import random

    rng = random.Random(7)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (20, 300.0)]:
        waits = [backoff_seconds(attempt, 1.0, rng) for _ in range(200)]
        assert all(0 <= w <= ceiling for w in waits)
        assert max(waits) > ceiling * 0.8  # spread over the whole range
