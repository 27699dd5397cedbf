"""How shared.spark sizes the session for where it runs (no session is started)."""

from __future__ import annotations

import os

import pytest

from shared.settings import Settings, SparkSettings
from shared.spark import CLUSTER_SHUFFLE_PARTITIONS, local_cores, shuffle_partitions


def settings_with(**given) -> Settings:
    # A whole group object replaces the environment's values of that group (the test
    # session sets SHOPFLOW_SPARK__SHUFFLE_PARTITIONS).
    return Settings(**given)


@pytest.mark.parametrize(
    ("master", "cores"),
    [("local", 1), ("local[3]", 3), ("local[3, 2]", 3), ("local[*]", os.cpu_count()), ("local[*,4]", os.cpu_count())],
)
def test_local_cores(master, cores):
    assert local_cores(master) == cores


def test_embedded_local_sessions_get_two_shuffle_partitions_per_core():
    settings = settings_with(spark=SparkSettings(master="local[3]"))
    assert shuffle_partitions(settings, local=True) == 6


def test_cluster_sessions_keep_the_cluster_default():
    embedded = settings_with(spark=SparkSettings(master="local[3]"))
    assert shuffle_partitions(embedded, local=False) == CLUSTER_SHUFFLE_PARTITIONS  # spark-submit
    cluster = settings_with(profile="cluster", pseudonymization_key="k" * 32, spark=SparkSettings(master="local[3]"))
    assert shuffle_partitions(cluster, local=True) == CLUSTER_SHUFFLE_PARTITIONS


def test_a_configured_number_wins_everywhere():
    settings = settings_with(spark=SparkSettings(master="local[3]", shuffle_partitions=5))
    assert shuffle_partitions(settings, local=True) == shuffle_partitions(settings, local=False) == 5
