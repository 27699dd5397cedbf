"""What a job's documents become in the tracker: metrics, series, tags, masked params and
the Delta tables read (pure logic; the MLflow side is tests/integration/test_tracking.py)."""

from __future__ import annotations

from pydantic import SecretStr

from shared.settings import Settings
from shared.tracking_data import MASK, flatten, is_secret_name, mask_url, masked, params_of, tables_read


def test_numbers_become_metrics_lists_series_and_the_rest_tags() -> None:
    doc = {
        "metrics": {"roc_auc": 0.61, "n": 3},
        "baseline_metrics": {"item_prior": {"roc_auc": 0.55}},
        "comparison": {"difference": {"value": 0.01, "low": -0.02, "high": 0.04}},
        "decision": {"promote": False, "reason": "CI lower bound -0.02 <= margin 0.0"},
        "training": {
            "loss_per_epoch": [0.7, 0.6],
            "epochs": [{"valid": {"roc_auc": 0.5}}, {"valid": {"roc_auc": 0.6}}],
        },
        "champion": {"error": None, "metrics_on_this_slice": {"roc_auc": float("nan")}},
        "args": {"seed": 13},
    }
    flat = flatten(doc, skip=("args",))
    assert flat.metrics == {
        "metrics.roc_auc": 0.61,
        "metrics.n": 3.0,
        "baseline_metrics.item_prior.roc_auc": 0.55,
        "comparison.difference.value": 0.01,
        "comparison.difference.low": -0.02,
        "comparison.difference.high": 0.04,
    }
    assert flat.series == {"training.loss_per_epoch": [0.7, 0.6], "training.epochs.valid.roc_auc": [0.5, 0.6]}
    assert flat.tags == {
        "decision.promote": "false",
        "decision.reason": "CI lower bound -0.02 <= margin 0.0",
        "champion.metrics_on_this_slice.roc_auc": "nan",
    }


def test_secrets_are_masked_by_type_by_name_and_inside_urls() -> None:
    for name in ("pseudonymization_key", "api_key", "apiToken", "db_password", "client-secret", "AUTH"):
        assert is_secret_name(name), name
    for name in ("seed", "max_length", "tokens_per_example", "registry_root", "monkey"):
        assert not is_secret_name(name), name
    doc = {
        "pseudonymization_key": "s3cret",
        "nested": {"token": {"deep": "s3cret"}, "plain": SecretStr("s3cret")},
        "uri": "http://alice:s3cret@mlflow.example:5000/x",
        "kept": "visible",
    }
    out = masked(doc)
    assert "s3cret" not in str(out) and "alice" not in str(out)
    assert out["pseudonymization_key"] == MASK and out["nested"]["token"] == MASK and out["kept"] == "visible"
    assert mask_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"


def test_the_settings_as_params_show_no_secret() -> None:
    key = "a-real-key-of-this-deployment"
    settings = Settings(pseudonymization_key=SecretStr(key), tracking={"uri": "https://u:pw-123@mlflow.example"})
    params = params_of(settings.model_dump(mode="json"), "settings.")
    assert params["settings.pseudonymization_key"] == MASK
    assert params["settings.tracking.uri"] == f"https://{MASK}@mlflow.example"
    assert key not in str(params) and "pw-123" not in str(params)
    assert params["settings.loop.seed"] == "13"


def test_the_tables_read_are_named_by_layer_and_pinned_to_their_version() -> None:
    train_doc = {"data": {"table": "/lake/gold/train_propensity", "delta_version": 4, "train_rows": 10}}
    retrain_doc = {
        "data": {"table": "gold/train_propensity", "path": "/lake/gold/train_propensity", "delta_version": 5},
        "tables_read": {"gold/train_propensity": 5},
    }
    features_doc = {"tables_read": {"silver/clicks": 2, "silver/clicks_stream": None}}
    assert [(t.name, t.path, t.version) for t in tables_read(train_doc)] == [
        ("gold/train_propensity", "/lake/gold/train_propensity", 4)
    ]
    assert [(t.name, t.path, t.version) for t in tables_read(retrain_doc)] == [
        ("gold/train_propensity", "/lake/gold/train_propensity", 5)
    ]
    assert [(t.name, t.version) for t in tables_read(features_doc)] == [
        ("silver/clicks", 2),
        ("silver/clicks_stream", None),
    ]
