"""Every Kafka topic the stream side uses, with its partition count, named in one place.

The embedded broker keeps topics in memory only, so whoever (re)starts it must create
all of them again, including the worker's internal ones (its session-table changelog
and Faust's assignor leader topic); `required_topics` is that list.

    from stream.topics import required_topics
    [t.name for t in required_topics(get_settings())]
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.settings import Settings

SESSION_TABLE = "sessions"
# The session table's changelog keeps one record per live user once compacted. Kafka
# compacts only closed segments (a week's by default) and only once half the log is
# stale, and keeps tombstones a day: a restart would read days of updates. Here a segment
# closes hourly, a log a tenth stale is cleaned, and a tombstone stays an hour (a restore
# that started before its entry was cleaned away still sees it: restores take seconds).
# The embedded broker (Tansu 0.6) accepts these and compacts nothing (stream/restore.py).
CHANGELOG_CONFIGS = {
    "cleanup.policy": "compact",
    "segment.ms": str(60 * 60 * 1000),
    "min.cleanable.dirty.ratio": "0.1",
    "delete.retention.ms": str(60 * 60 * 1000),
}


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)


def changelog_topic(settings: Settings) -> str:
    """Faust's name for the session table's changelog: <app id>-<table>-changelog."""
    return f"{settings.stream.app_id}-{SESSION_TABLE}-changelog"


def leader_topic(settings: Settings) -> str:
    """Faust's assignor leader topic: <app id>-__assignor-__leader."""
    return f"{settings.stream.app_id}-__assignor-__leader"


def required_topics(settings: Settings) -> list[TopicSpec]:
    k = settings.kafka
    return [
        TopicSpec(k.clicks_topic, k.partitions),
        TopicSpec(k.dlq_topic, k.partitions),
        TopicSpec(k.scored_topic, k.partitions),
        # One partition: announcements are rare and every worker reads all of them.
        TopicSpec(k.models_topic, 1),
        # The table changelog must be co-partitioned with the source topic.
        TopicSpec(changelog_topic(settings), k.partitions, dict(CHANGELOG_CONFIGS)),
        TopicSpec(leader_topic(settings), 1),
    ]
