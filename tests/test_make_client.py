"""The function's DynamoDB client: its own settings, and a caller's merged over them."""

from __future__ import annotations

from botocore.config import Config

from stream_scavenger.local.dynamodb_local import LOCAL_CLIENT_SETTINGS
from stream_scavenger.runtime.scavenger.config import ScavengerConfig
from stream_scavenger.runtime.scavenger.handler import make_client

CONFIG = ScavengerConfig.single(target_table="staging", key_mapping={"pk": "pk"})


def test_a_callers_config_is_merged_over_the_scavengers_own() -> None:
    client = make_client(
        CONFIG,
        endpoint_url="http://127.0.0.1:9",
        config=Config(proxies={}, read_timeout=3),
        **LOCAL_CLIENT_SETTINGS,
    )
    settings = client.meta.config
    assert settings.proxies == {}  # a loopback endpoint: no proxy from the environment
    assert settings.read_timeout == 3
    assert settings.retries["total_max_attempts"] == 1  # the scavenger's own, kept
    assert settings.max_pool_connections == CONFIG.max_concurrency


def test_without_one_the_scavengers_settings_stand() -> None:
    settings = make_client(
        CONFIG, endpoint_url="http://127.0.0.1:9", **LOCAL_CLIENT_SETTINGS
    ).meta.config
    assert (
        settings.proxies is None and settings.read_timeout == 10 and settings.connect_timeout == 2
    )
