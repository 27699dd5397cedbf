"""The demo's stages, in order (demo/cli.py tells the story and has the command line).

    report_path = run_demo(settings, options, env, source_root)

Each job is called the way a user's orchestrator would call it: through its public
`run(settings, options)`, and the worker as its own process (demo/stream_stack.py).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from demo.inputs import bad_records, history_data, split_stream
from demo.observe import MetricsSampler
from demo.options import DemoOptions, parse_utc
from demo.progress import Progress
from demo.record import DemoRecord, Swap
from demo.report import write_report
from demo.stream_stack import StreamStack
from shared.contract.folded import quarantine_table_path
from shared.delta import read_arrow, table_exists
from shared.settings import Settings
from shared.tracking import TrackedRun, track_run, tracking_uri
from shared.tracking_data import mask_url
from stream.replay import read_source


def _lineage(step: str, result: Any) -> dict[str, Any]:
    """A job result's tables read/written (and offsets) as a report lineage row."""
    doc = result.to_dict() if hasattr(result, "to_dict") else dict(result or {})
    reads = [{"table": t, "version": v} for t, v in (doc.get("tables_read") or {}).items()]
    writes = [
        {"table": t, "version": w.get("version") if isinstance(w, dict) else w}
        for t, w in (doc.get("tables_written") or {}).items()
    ]
    offsets = {k: list(v) for k, v in (doc.get("offsets") or {}).items()}
    return {"step": step, "reads": reads, "writes": writes, "offsets": offsets}


def run_demo(settings: Settings, options: DemoOptions, env: dict[str, str], source_root: Path) -> Path:
    """The demo as one tracked run, each stage a run nested in it (the jobs' own below)."""
    with track_run(settings, "demo", name="shopflow demo", params=options) as tracked:
        return _run_demo(settings, options, env, source_root, tracked)


def _run_demo(
    settings: Settings, options: DemoOptions, env: dict[str, str], source_root: Path, tracked: TrackedRun
) -> Path:
    work = options.workdir.resolve()
    cutoff = parse_utc(options.cutoff)
    progress = Progress(9 if options.sentiment_seconds > 0 else 8, settings=settings)
    loop_detail: dict[str, Any] = {}
    lineage: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    if tracked.run_id:
        summary["MLflow runs"] = f"{mask_url(tracking_uri(settings))} (demo run {tracked.run_id})"

    # 1. the history the batch layer sees, and the stream that comes after it
    def data() -> dict[str, Any]:
        counts = history_data(source_root, settings.data_root, cutoff)
        events, malformed = read_source("taobao", source_root)
        phase_a, phase_b = split_stream(events, cutoff, options.swap_minutes)
        data.phases = (phase_a, phase_b)  # type: ignore[attr-defined]
        return {**counts, "stream_events": len(phase_a) + len(phase_b), "after_swap": len(phase_b)}

    progress.run("history and stream from the real data", data)
    phase_a, phase_b = data.phases  # type: ignore[attr-defined]
    bad = bad_records(options.bad_events)

    # 2. batch over the history
    def batch() -> dict[str, Any]:
        from batch import pipeline

        results = dict(zip(("ingest", "clean", "features"), pipeline.run(settings, pipeline.PipelineOptions())))
        for name, res in results.items():
            lineage.append(_lineage(f"batch {name}", res))
        counts = results["clean"].counts
        return {
            "rows_in": counts.get("rows_in", 0),
            "silver": counts.get("rows_out", 0),
            "quarantined": counts.get("rows_quarantined", 0),
        }

    progress.run("batch: files -> bronze -> silver -> gold", batch)

    # 3. the propensity champion, trained on the early history only; it goes live only
    # through the baseline gate, and when it does not, the fallback baseline serves
    def champion() -> dict[str, Any]:
        from batch import train

        res = train.run(settings, train.TrainOptions(task="propensity", promote=True, progress=False))
        baselines = ", ".join(
            f"{name} {m.get('roc_auc', float('nan')):.3f}" for name, m in res.baseline_metrics.items()
        )
        verdict = "promoted" if res.promoted else "refused by the baseline gate"
        summary["propensity trained"] = (
            f"v{res.version}: ROC-AUC {res.metrics.get('roc_auc', float('nan')):.3f}, {verdict}"
        )
        summary["its baselines (ROC-AUC)"] = baselines
        summary["baseline gate (propensity)"] = (res.gate or {}).get("reason", "not judged")
        serving = _serving(settings, "propensity")
        return {
            "version": res.version,
            "roc_auc": round(res.metrics.get("roc_auc", float("nan")), 4),
            "gate": (res.gate or {}).get("verdict"),
            "serving": f"v{serving['version']} ({serving['kind']})",
        }

    progress.run("train propensity; the gate decides what serves", champion)

    # 4. sentiment within a time budget, and the test reviews bulk-scored in Spark
    def sentiment() -> dict[str, Any]:
        from batch import score, train

        res = train.run(
            settings,
            train.TrainOptions(
                task="sentiment",
                promote=True,
                progress=options.progress,
                max_length=64,
                time_budget_seconds=options.sentiment_seconds,
                max_eval_samples=400,
            ),
        )
        seen = res.document["training"]["examples"]
        champion = _serving(settings, "sentiment")["version"]
        # Bulk scoring is the champion's; without one, the run's own version scores and
        # every row (and this report) says it is unpromoted.
        version = None if champion is not None else res.version
        scored = score.run(settings, score.ScoreOptions(task="sentiment", split="test", version=version))
        tfidf = res.baseline_metrics.get("tfidf_logreg", {}).get("macro_f1", float("nan"))
        verdict = "promoted" if res.promoted else "NOT promoted"
        summary["sentiment"] = (
            f"v{res.version}: {seen:,} of {res.train_rows:,} examples in "
            f"{options.sentiment_seconds:.0f} s, macro-F1 {res.metrics.get('macro_f1', 0):.3f} "
            f"(TF-IDF {tfidf:.3f}): {verdict}: {(res.gate or {}).get('reason', 'not judged')}"
        )
        if champion is None:
            summary["reviews scored in Spark"] = (
                f"{scored.rows:,} by v{scored.model_version}, which is not a champion (labelled "
                f"{scored.model_status}): sentiment has no champion"
            )
        else:
            summary["reviews scored in Spark"] = f"{scored.rows:,} by champion v{scored.model_version}"
        lineage.append(
            {
                "step": "score sentiment (Spark)",
                "reads": [{"table": scored.input, "version": scored.input_version}],
                "writes": [{"table": scored.output, "version": scored.output_version}],
                "offsets": {},
            }
        )
        return {
            "examples_seen": seen,
            "macro_f1": round(res.metrics.get("macro_f1", 0), 4),
            "promoted": res.promoted,
            "reviews_scored": scored.rows,
            "scored_by": f"v{scored.model_version} ({scored.model_status})",
        }

    if options.sentiment_seconds > 0:
        progress.run("fine-tune sentiment (time-boxed) and bulk-score reviews", sentiment)

    folds: list[Any] = []
    promoted_to: list[str] = []
    loaded_before: list[float] = []
    # The sampler starts first: its early gaps are the worker starting, not missing data.
    sampler = MetricsSampler(settings.stream.metrics_host, settings.stream.metrics_port, interval=1.0).start()
    with StreamStack(settings, env, work / "logs") as stack:
        # 5. replay the stream after the cutoff at full speed
        def replay_a() -> dict[str, Any]:
            sent = stack.replay(phase_a, progress=options.progress, malformed=bad)
            stack.wait_consumed(sent, timeout=900)
            sample = stack.metrics()
            return {
                "replayed": sent,
                "of them deliberately bad": len(bad),
                "dead-lettered": int(sample.dlq),
                "serving_version": sample.serving_version,
            }

        progress.run("stream: replay after the cutoff through the worker", replay_a)

        # 6. one loop iteration: fold -> features -> retrain -> evaluate -> promote
        def loop_once() -> dict[str, Any]:
            from jobs import loop

            loaded_before.append(stack.metrics().models_loaded)
            (iteration,) = loop.run(settings, loop.LoopOptions(once=True))
            for step in iteration.steps:
                lineage.append(_lineage(f"loop {step.name}", step.detail))
            retrain = iteration.step("retrain")
            loop_detail.update(iteration.to_dict())
            decision = (retrain.detail or {}).get("decision", {}) if retrain else {}
            folds.append(iteration.step("fold").detail if iteration.step("fold") else {})
            return {
                "ok": iteration.ok,
                "promoted": bool(decision.get("promote")),
                "challenger": (retrain.detail or {}).get("challenger_version") if retrain else None,
            }

        loop_counts = progress.run("loop: fold -> features -> retrain -> evaluate -> promote", loop_once)

        # 7. the last minutes: the worker serves the new champion without a restart
        def replay_b() -> dict[str, Any]:
            # A promoted model is loaded and verified off the hot path, then swapped in at
            # the worker's next micro-batch: once it is loaded, these events are scored by it.
            if loop_counts.get("promoted"):
                stack.wait(lambda s: s.models_loaded > loaded_before[0], 60, "the worker to load the promoted model")
            sent = stack.replay(phase_b, progress=options.progress)
            stack.wait_consumed(len(phase_a) + len(bad) + sent, timeout=600)
            if loop_counts.get("promoted"):
                target = str(loop_counts["challenger"])
                promoted_to.append(target)
                stack.wait(lambda s: s.serving_version == target, 30, f"the worker to serve v{target}")
            return {"replayed": sent, "serving_version": stack.serving_version()}

        progress.run("stream: the last minutes, served by the current champion", replay_b)

        # 8. fold those too: the lake holds every event exactly once
        def fold_again() -> dict[str, Any]:
            from jobs import fold

            res = fold.run(settings, fold.FoldOptions())
            folds.append(res.to_dict())
            lineage.append(_lineage("fold (after the swap)", res))
            return {"folded": res.rows_folded, "dead_lettered": res.dlq_rows}

        progress.run("fold the last minutes", fold_again)
    samples = sampler.stop()
    swap = Swap.from_samples(samples, to_version=promoted_to[0]) if promoted_to else None

    # 9. everything stopped (the with-block above); 10. the report
    def report() -> dict[str, Any]:
        record = DemoRecord.from_dict(
            {
                "title": "shopflow demo: the closed loop on the Taobao click log",
                "created_at": datetime.now(timezone.utc).isoformat(),
                "stages": [s.__dict__ for s in progress.stages],
                "samples": samples,
                "dlq_by_reason": _dlq_by_reason(settings),
                "evaluation": _evaluation(loop_detail),
                "accounting": _accounting(folds, len(phase_a) + len(phase_b) + len(bad)),
                "lineage": lineage,
                "swap": None
                if swap is None
                else {"at": swap.at, "from_version": swap.from_version, "to_version": swap.to_version},
                "summary": summary,
                "serving": {
                    task: _serving(settings, task)
                    for task in ("propensity", "sentiment")
                    if task == "propensity" or options.sentiment_seconds > 0
                },
            }
        )
        (work / "report").mkdir(parents=True, exist_ok=True)
        (work / "report" / "demo.json").write_text(record.to_json())
        report.path = write_report(record, work / "report" / "demo.html")  # type: ignore[attr-defined]
        return {"report": str(report.path)}  # type: ignore[attr-defined]

    progress.run("write the report", report)
    return report.path  # type: ignore[attr-defined]


def _serving(settings: Settings, task: str) -> dict[str, Any]:
    """Which model serves `task` and why (see `shopflow models list`)."""
    from batch.models_cli import serving
    from shared.registry import ModelRegistry

    return serving(ModelRegistry(settings.models.registry_root), task)


def _dlq_by_reason(settings: Settings) -> dict[str, int]:
    """Dead-letter entries the fold brought into the lake, by their reason code."""
    path = quarantine_table_path(settings)
    if not table_exists(path):
        return {}
    return dict(Counter(read_arrow(path, columns=["reason"]).column("reason").to_pylist()))


def _accounting(folds: list[dict[str, Any]], rows_in: int) -> dict[str, int]:
    return {
        "rows_in": rows_in,
        "folded": sum(int(f.get("rows_folded", 0)) for f in folds),
        "dead_lettered": sum(int(f.get("dlq_rows", 0)) for f in folds),
        "duplicates_dropped": sum(int(f.get("duplicates_dropped", 0)) for f in folds),
    }


def _evaluation(loop: dict[str, Any]) -> dict[str, Any] | None:
    retrain = next((s for s in loop.get("steps", []) if s["name"] == "retrain"), None)
    if not retrain or not retrain.get("detail", {}).get("comparison"):
        return None  # retrain did not run, or there was no champion to compare with
    detail = retrain["detail"]
    cmp = detail["comparison"]
    return {
        "metric": cmp["metric"],
        "champion": {"version": str(detail["champion_version"]), **_est(cmp["champion"])},
        "challenger": {"version": str(detail["challenger_version"]), **_est(cmp["challenger"])},
        "difference": _est(cmp["difference"]),
        "margin": detail["decision"]["margin"],
        "decision": "promoted" if detail["decision"]["promote"] else "not promoted",
        "reason": detail["decision"]["reason"],
        "slice": detail.get("slice", {}),
    }


def _est(interval: dict[str, float]) -> dict[str, float]:
    return {"value": interval["value"], "ci_low": interval["low"], "ci_high": interval["high"]}
