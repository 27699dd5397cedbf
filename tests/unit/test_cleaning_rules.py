"""Pure helpers of the batch layer: text repair, column names, pseudonyms, settings."""

from __future__ import annotations

import pytest

from batch.cleaning.reviews import repair_mojibake
from batch.sources import KNOWN_SOURCES, bronze_column_name, source_by_name
from shared.pseudonymize import pseudonymize
from shared.settings import Settings


@pytest.mark.parametrize(
    "broken, fixed",
    [
        ("my fiancã© was", "my fiancé was"),
        ("the ombrã© color", "the ombré color"),
        ("my derriã¨re", "my derrière"),
        ("ã¼ber", "über"),
        ("plain text", "plain text"),
        ("", ""),
        (None, None),
    ],
)
def test_mojibake_repair(broken, fixed):
    assert repair_mojibake(broken) == fixed


def test_bronze_column_names_are_delta_safe():
    assert bronze_column_name("Customer ID", 0) == "customer_id"
    assert bronze_column_name("Recommended IND", 0) == "recommended_ind"
    assert bronze_column_name("sessionId", 0) == "session_id"
    assert bronze_column_name("", 3) == "column_3"


def test_known_sources_cover_every_data_file():
    assert len({s.relative_path for s in KNOWN_SOURCES}) == 7
    with pytest.raises(KeyError, match="known sources"):
        source_by_name("nope")


def test_pseudonyms_are_keyed_and_namespaced():
    a = pseudonymize("17850", "customer", key=b"k1")
    assert a == pseudonymize("17850", "customer", key=b"k1")
    assert a != pseudonymize("17850", "customer", key=b"k2")
    assert a != pseudonymize("17850", "user", key=b"k1")
    assert "17850" not in a and len(a) == 32
    assert pseudonymize(None, "user", key=b"k") is None


def test_cluster_profile_refuses_the_public_development_key(monkeypatch):
    monkeypatch.setenv("SHOPFLOW_PROFILE", "cluster")
    with pytest.raises(ValueError, match="PSEUDONYMIZATION_KEY"):
        Settings()
    monkeypatch.setenv("SHOPFLOW_PSEUDONYMIZATION_KEY", "a-real-secret")
    settings = Settings()
    assert "a-real-secret" not in repr(settings)  # SecretStr never prints


def test_settings_reject_unknown_keys():
    with pytest.raises(ValueError):
        Settings(lake={"nope": 1})
