"""The same training data gives the same weights, however its Delta table was written.

Spark's tasks write a table's files in whatever order they finish, so `shopflow features
--force` over unchanged input can store the same rows in another order: the trainer reads
rows in a stable order of their own, and its shuffling and initialisation are seeded, so
two runs over the same content give byte-identical weights files.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pytest

from shared.delta import read_arrow
from tests.integration import kit

pytestmark = pytest.mark.integration


def _weights_sha256(version: int) -> str:
    from shared.registry import ModelRegistry
    from shared.settings import get_settings

    folder = ModelRegistry(get_settings().models.registry_root).path("propensity", version)
    return hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()


def test_the_same_rows_written_in_another_order_train_identical_weights(taobao_events, tmp_path: Path) -> None:
    from deltalake import write_deltalake

    from shared.settings import get_settings

    key = get_settings().pseudonymization_key.get_secret_value().encode()
    written = kit.write_propensity_gold(taobao_events[:3000], key, tmp_path / "as-built")
    rows = read_arrow(written)
    # The same content as another writer might leave it: reversed, in three files.
    shuffled = tmp_path / "rebuilt" / "gold" / written.name
    reordered = rows.take(pa.array(range(rows.num_rows - 1, -1, -1)))
    third = reordered.num_rows // 3
    for start, stop in ((0, third), (third, 2 * third), (2 * third, reordered.num_rows)):
        write_deltalake(str(shuffled), reordered.slice(start, stop - start), mode="append")
    assert read_arrow(shuffled).sort_by("event_id").equals(rows.sort_by("event_id"))
    assert read_arrow(shuffled).column("event_id").to_pylist() != rows.column("event_id").to_pylist()

    first = kit.train_propensity(written, seed=13, promote=False)
    second = kit.train_propensity(shuffled, seed=13, promote=False)
    again = kit.train_propensity(written, seed=13, promote=False)

    assert _weights_sha256(first) == _weights_sha256(again)  # one table, twice
    assert _weights_sha256(first) == _weights_sha256(second)  # the same rows, another layout


def test_the_manifest_says_how_to_train_the_version_again(taobao_events, tmp_path: Path) -> None:
    from shared.registry import ModelRegistry
    from shared.settings import get_settings

    settings = get_settings()
    key = settings.pseudonymization_key.get_secret_value()
    table = kit.write_propensity_gold(taobao_events[:2000], key.encode(), tmp_path)
    version = kit.train_propensity(table, seed=7, promote=False)
    manifest = ModelRegistry(settings.models.registry_root).manifest("propensity", version)
    reproduce = manifest.extra["reproduce"]
    assert len(reproduce["code"]["commit"]) == 40 and isinstance(reproduce["code"]["uncommitted_changes"], bool)
    assert reproduce["libraries"]["torch"] and reproduce["libraries"]["python"] and reproduce["torch_threads"] >= 1
    assert reproduce["settings"]["models"]["registry_root"] == str(settings.models.registry_root)
    assert key not in str(reproduce) and reproduce["settings"]["pseudonymization_key"] == "**********"
    assert manifest.training["seed"] == 7
    assert next(iter(manifest.training_data.values())).delta_version is not None
