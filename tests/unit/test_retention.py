"""The registry retention, the rotation of run files, and the lake's maintenance keeping a
protected model's training data readable (real Delta tables through delta-rs, on disk)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from batch.models_cli import ShowOptions, _print_show, list_models
from jobs.maintain import MaintainOptions, due, run
from shared.delta import read_arrow, write_arrow
from shared.errors import WeightsReclaimedError
from shared.registry import ModelRegistry
from shared.retention import plan_task, reclaim_weights, rotate_run_files
from shared.settings import Settings
from tests.unit.checkpoints import tiny_checkpoint


def _registry(tmp_path: Path, n: int, training_data=lambda v: {}) -> ModelRegistry:
    registry = ModelRegistry(tmp_path / "registry")
    ckpt = tiny_checkpoint(tmp_path / "ckpt")
    for v in range(1, n + 1):
        manifest = {"metrics": {"roc_auc": 0.5}, "primary_metric": "roc_auc", "training_data": training_data(v)}
        if v == 1:
            manifest["kind"] = "fallback_baseline"
        registry.register("propensity", ckpt, manifest)
    return registry


def test_unprotected_versions_keep_their_manifest_and_lose_their_weights(tmp_path: Path, capsys) -> None:
    registry = _registry(tmp_path, 7)
    registry.flip_alias("propensity", 2)
    registry.flip_alias("propensity", 3, alias="challenger")
    plan = plan_task(registry, "propensity", keep_last=2)
    assert sorted(plan.protected) == [1, 2, 3, 6, 7] and plan.reclaim == (4, 5)
    assert plan.protected[2] == ("champion",) and plan.protected[1] == ("fallback_baseline",)

    for version in plan.reclaim:
        assert reclaim_weights(registry, "propensity", version) > 0
    assert [p.name for p in registry.path("propensity", 4).iterdir()] == ["manifest.json"]
    kept = registry.manifest("propensity", 4)
    assert kept.metrics == {"roc_auc": 0.5} and kept.extra["weights_reclaimed"]["at"]
    with pytest.raises(WeightsReclaimedError, match="v4: not servable, its weights were reclaimed"):
        registry.verify("propensity", 4)
    registry.verify("propensity", 6)  # protected ones still verify
    rows = {r.version: r for r in list_models(registry)}
    assert rows[4].status.startswith("reclaimed: not servable") and rows[4].value == 0.5
    assert rows[6].status == "ok" and rows[2].aliases == ("champion",)
    settings = Settings(models={"registry_root": registry.root})
    _print_show(settings, ShowOptions("propensity", "4"))
    shown = capsys.readouterr()
    assert '"weights_reclaimed"' in shown.out
    assert shown.err.splitlines()[-1].startswith("shopflow models show: propensity v4: not servable")
    again = plan_task(registry, "propensity", keep_last=2)
    assert again.reclaim == () and again.reclaimed == (4, 5)


def test_run_files_rotate_by_kind_count_and_age(tmp_path: Path) -> None:
    folder = tmp_path / "metrics"
    folder.mkdir()
    names = [f"jobs.fold-20260101T0000{i:02d}000000Z.json" for i in range(5)]
    names += ["jobs.loop-20260101T000000000000Z.json", "train-propensity-v3.json"]
    for name in names:
        (folder / name).write_text("{}")
    old = time.time() - 3 * 86400
    os.utime(folder / names[5], (old, old))  # the only (so newest) of its kind: kept however old
    os.utime(folder / names[3], (old, old))
    deleted = rotate_run_files(folder, keep_last=3, max_age_days=1)
    assert sorted(p.name for p in deleted) == sorted(names[0:2] + names[3:4])
    assert sorted(p.name for p in folder.iterdir()) == sorted([names[2], names[4], names[5], names[6]])


def _rows(i: int) -> pa.Table:
    return pa.table({"id": pa.array([f"e{i}-{k}" for k in range(10)]), "n": pa.array([i] * 10, pa.int64())})


def test_vacuum_keeps_a_protected_training_version_and_reclaims_an_unprotected_one(tmp_path: Path) -> None:
    table = tmp_path / "lake" / "gold" / "train_propensity"
    for i in range(6):  # versions 0..5, one small file each, the last an overwrite
        write_arrow(_rows(i), table, mode="overwrite" if i in (3, 5) else "append")
    before = {v: read_arrow(table, version=v) for v in (2, 4)}
    DeltaTable(str(table)).create_checkpoint()  # at version 5: the log before it may expire
    week_ago = time.time() - 7 * 86400
    for file in (table / "_delta_log").iterdir():
        os.utime(file, (week_ago, week_ago))
    # v2 trained the champion and the fallback baseline (protected); v4 only versions nobody protects.
    versions = {1: 2, 2: 4, 3: 4, 4: 4, 5: 2}
    registry = _registry(
        tmp_path, 5, lambda v: {"train_propensity": {"path": str(table), "delta_version": versions[v]}}
    )
    registry.flip_alias("propensity", 5)
    settings = Settings(
        lake={"root": tmp_path / "lake"},
        models={"registry_root": registry.root},
        metrics_dir=tmp_path / "metrics",
        stream={"run_dir": tmp_path / "run"},
        maintenance={"deleted_file_retention_hours": 0, "log_retention_hours": 0, "keep_last_versions": 1},
    )
    assert due(settings, 3600)
    result = run(settings, MaintainOptions())
    assert not due(settings, 3600)
    assert result.weights_reclaimed == {"propensity": [2, 3, 4]}  # 1: fallback baseline
    [report] = result.tables
    assert report["protected_versions"] == [2] and report["files_vacuumed"] > 0
    assert report["log_retention_hours"] >= 8 * 24  # covers the week-old log v2 needs
    assert read_arrow(table, version=2).equals(before[2])  # time travel to protected data still works
    with pytest.raises(FileNotFoundError):
        read_arrow(table, version=4)  # unprotected: its files were vacuumed
    assert read_arrow(table).num_rows == 10


def test_the_item_snapshot_versions_that_served_recent_stream_events_are_protected(tmp_path: Path) -> None:
    """The propensity training set reads a folded event's item counts back from the
    snapshot version that served it: those versions stay readable within the retention."""
    from datetime import datetime, timedelta, timezone

    from jobs.maintain import served_snapshot_versions
    from shared.contract.folded import STREAM_SCHEMA, stream_table_path

    settings = Settings(lake={"root": tmp_path / "lake"})
    assert served_snapshot_versions(settings, 720) == set()  # no stream table yet
    now = datetime(2026, 12, 5, tzinfo=timezone.utc)
    rows = [
        {"event_id": f"e{i}", "item_snapshot_version": version, "_folded_at": now - timedelta(hours=hours)}
        for i, (version, hours) in enumerate([(3, 1), (4, 2), (None, 2), (1, 800), (3, 5)])
    ]
    table = pa.Table.from_pylist(rows, schema=pa.schema([STREAM_SCHEMA.field(n) for n in rows[0]]))
    write_arrow(table, stream_table_path(settings), mode="overwrite")
    assert served_snapshot_versions(settings, 720, now=now) == {3, 4}  # v1 served an event folded 800 h ago
