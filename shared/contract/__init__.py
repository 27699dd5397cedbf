"""What passes between the stream and the lake, defined once.

The stream worker writes scored events and dead-letter entries to Kafka; the fold reads
them into two silver Delta tables; promotion announces a new champion to the workers.
Each of these formats has one module here, holding both its writer and its reader:

    shared.contract.scored        scored event: ScoredBatch (worker) / scored_row (fold)
    shared.contract.dead_letter   dead-letter entry: dlq_entry, minimal_dlq_entry / dlq_row
    shared.contract.folded        the folded tables: names (from settings), schemas, paths
    shared.contract.announcement  model announcement: announcement_value / parse_announcement

Versions. Every message carries `wire_version` (WIRE_VERSION when written); a message
without it was written before versions existed and is version 1. Readers accept every
version up to and past their own: fields they do not know are ignored, fields that are
absent are null, and each folded row keeps the version it was read from (`_wire_version`)
so rows of another writer can be found later. A change that an older reader would misread
(not only miss) needs its readers deployed first.

    from shared.contract.scored import ScoredBatch, scored_row
    from shared.contract.folded import stream_table_path
"""

from __future__ import annotations

# The wire version this code writes. 1: the formats before they carried a version;
# 2: the same fields plus `wire_version`; 3: a dead-letter entry's `raw` is the record's
# redacted form (`raw_encoding` says which) and its hash is keyed (`raw_hmac_sha256`
# for `raw_sha256`), and scored events carry pseudonymized session ids; 4: scored
# events carry `item_snapshot_version`, the item snapshot they were enriched with (null:
# the worker had none). The fold reads every version and redacts what a version-1/2
# entry still holds.
WIRE_VERSION = 4
# The first version whose scored events say which item snapshot served them: in rows
# of an older version a null `item_snapshot_version` means "not recorded", not "none".
ITEM_SNAPSHOT_WIRE_VERSION = 4
WIRE_VERSION_KEY = "wire_version"

# A dead-letter entry (and a value the fold quarantines itself) redacts at most this many
# raw bytes (a value cut there is summarized), plus the whole value's size and keyed hash,
# so an entry stays far below a producer's 1 MB request limit. The settings default
# (`stream.dlq_max_raw_bytes`); code reads the setting.
DLQ_MAX_RAW_BYTES = 64 * 1024


def wire_version_of(message: dict[str, object]) -> int | None:
    """The version a decoded message says it is (1 when it says nothing); None when the
    field is there but is not a positive integer."""
    version = message.get(WIRE_VERSION_KEY)
    if version is None:
        return 1
    if isinstance(version, int) and not isinstance(version, bool) and version >= 1:
        return version
    return None
