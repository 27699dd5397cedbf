"""The demo's inputs, cut from the real data: the history batch sees, the stream replayed
after it (split at the swap), and the deliberately malformed records sent with the stream.

    counts = history_data(source_root, settings.data_root, cutoff)   # Taobao cut at the cutoff
    before_swap, last_minutes = split_stream(events, cutoff, swap_minutes=15)
    bad = bad_records(24)                                             # replay's MalformedRow
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from stream.replay import MalformedRow

TAOBAO_DIR = "taobao_user_behavior"


def history_data(source_root: Path, target: Path, cutoff: datetime) -> dict[str, int]:
    """The demo's data folder: every source as is, except Taobao cut at `cutoff`.

    The other sources are linked, not copied; the Taobao file keeps its lines before the
    cutoff byte for byte, so batch ids equal the ids replay gives the same rows.
    """
    target.mkdir(parents=True, exist_ok=True)
    for entry in source_root.iterdir():
        if entry.is_dir() and entry.name != TAOBAO_DIR:
            (target / entry.name).symlink_to(entry.resolve())
    (target / TAOBAO_DIR).mkdir(exist_ok=True)
    limit = int(cutoff.timestamp())
    kept = later = 0
    for src in (source_root / TAOBAO_DIR).glob("*.csv"):
        with src.open("rb") as fin, (target / TAOBAO_DIR / src.name).open("wb") as fout:
            for line in fin:
                fields = line.rstrip(b"\r\n").split(b",")
                ts = int(fields[4]) if len(fields) == 5 and fields[4].isdigit() else None
                if ts is None or ts < limit:
                    fout.write(line)  # malformed lines stay with the history: batch quarantines them
                    kept += 1
                else:
                    later += 1
    return {"history_lines": kept, "stream_lines": later}


def split_stream(events: list[dict[str, Any]], cutoff: datetime, swap_minutes: float) -> tuple[list, list]:
    """The events after the cutoff: (before the swap phase, the last `swap_minutes`).

    The last minutes are counted back from the latest event that is not in the future: a
    source line with an absurd time (the worker dead-letters it) goes with the first part.
    """
    stream = [e for e in events if e["ts"] >= cutoff]
    now = datetime.now(timezone.utc)
    plausible = [e["ts"] for e in stream if e["ts"] <= now]
    if not plausible:
        return stream, []
    end = max(plausible)
    swap_from = end - timedelta(minutes=swap_minutes)
    last = [e for e in stream if swap_from <= e["ts"] <= end]
    return [e for e in stream if not swap_from <= e["ts"] <= end], last


# What producers get wrong, one of each kind per round: the worker must dead-letter every
# one with its reason and score the valid events around them.
_BAD = (
    ("not JSON", 'view,4625350,"not json"'),
    ("timestamp -1", '{"event_id":"bad-ts-%d","user_id":"u1","item_id":"1","event_type":"view","ts":-1}'),
    (
        "year 2150",
        '{"event_id":"bad-yr-%d","user_id":"u1","item_id":"1","event_type":"view","ts":"2150-01-01T00:00:00Z"}',
    ),
    (
        "blank user",
        '{"event_id":"bad-user-%d","user_id":" ","item_id":"1","event_type":"view","ts":"2017-11-26T02:00:00Z"}',
    ),
    (
        "number for a string",
        '{"event_id":"bad-type-%d","user_id":"u1","item_id":4625350,"event_type":"view","ts":"2017-11-26T02:00:00Z"}',
    ),
    (
        "unknown event type",
        '{"event_id":"bad-kind-%d","user_id":"u1","item_id":"1","event_type":"wishlist","ts":"2017-11-26T02:00:00Z"}',
    ),
    (
        "lone surrogate",
        '{"event_id":"bad-sur-%d","user_id":"\\ud800","item_id":"1","event_type":"view","ts":"2017-11-26T02:00:00Z"}',
    ),
    ("missing item", '{"event_id":"bad-miss-%d","user_id":"u1","event_type":"view","ts":"2017-11-26T02:00:00Z"}'),
)


def bad_records(n: int) -> list[MalformedRow]:
    """`n` malformed records of the kinds above, as replay's MalformedRow (sent raw)."""
    out = []
    for i in range(n):
        what, template = _BAD[i % len(_BAD)]
        raw = template % i if "%d" in template else template
        out.append(MalformedRow(raw=raw, where=f"demo bad record {i}", error=what))
    return out
