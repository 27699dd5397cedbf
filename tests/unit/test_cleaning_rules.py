"""Pure helpers of the batch layer: text repair, column names, pseudonyms, settings."""

from __future__ import annotations

import itertools

import pytest

from batch.cleaning.reviews import repair_mojibake
from batch.sources import KNOWN_SOURCES, bronze_column_name, source_by_name
from shared.click_sources import DIGINETICA_PURCHASES_RAW, DIGINETICA_VIEWS_RAW, TAOBAO_BEHAVIOR, TAOBAO_RAW
from shared.pseudonymize import Pseudonymizer, pseudonymize
from shared.schemas import EVENT_TYPES
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


def test_known_sources_cover_every_data_file(data_root):
    """Each data file is one known source (a new or renamed file fails here, not in a job)."""
    on_disk = {p.relative_to(data_root).as_posix() for p in data_root.rglob("*.csv*")}
    declared = [s.relative_path for s in KNOWN_SOURCES]
    assert len(declared) == len(set(declared)), "two sources read the same file"
    assert set(declared) == on_disk
    with pytest.raises(KeyError, match="known sources"):
        source_by_name("nope")


def _bronze_header(data_root, name: str) -> tuple[str, ...]:
    source = source_by_name(name)
    with (data_root / source.relative_path).open(encoding="utf-8") as handle:
        raw = handle.readline().rstrip("\r\n").split(source.sep)
    return tuple(source.rename.get(c, bronze_column_name(c, i)) for i, c in enumerate(raw))


def test_click_source_facts_match_the_files(data_root):
    """shared.click_sources' raw field order is what the event id hashes: it must be the
    files' column order as bronze names them, and every Taobao behavior must be mapped."""
    assert _bronze_header(data_root, "views_diginetica") == DIGINETICA_VIEWS_RAW
    assert _bronze_header(data_root, "purchases_diginetica") == DIGINETICA_PURCHASES_RAW
    assert source_by_name("clicks_taobao").columns == TAOBAO_RAW
    taobao = data_root / source_by_name("clicks_taobao").relative_path
    with taobao.open(encoding="ascii") as handle:
        behaviors = {line.split(",")[3] for line in itertools.islice(handle, 200_000)}
    assert behaviors == set(TAOBAO_BEHAVIOR)
    assert set(TAOBAO_BEHAVIOR.values()) <= set(EVENT_TYPES)


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


@pytest.mark.parametrize("key", [b"", b"k1", b"k" * 64, b"\xff" * 100])
def test_the_pseudonymizer_for_many_values_equals_pseudonymize(key):
    values = ["17850", "u1", "", " spaced ", "用户", "é" * 300, "\u2028"]
    for namespace in ("user", "customer"):
        many = Pseudonymizer(namespace, key=key)
        assert [many(v) for v in values] == [pseudonymize(v, namespace, key=key) for v in values]
