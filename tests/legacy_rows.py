"""The fold's row builders and table schemas for tests that write rows the old way.

They live in `shared.contract` where the stream<->lake contract has landed and in
`jobs.fold_rows` before; the privacy migration's tests read them from whichever exists.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

try:
    from shared.contract.dead_letter import dlq_row as _dlq_row
    from shared.contract.folded import QUARANTINE_SCHEMA, STREAM_SCHEMA, Position
    from shared.contract.scored import scored_row

    def dlq_row(value: bytes, pos: Position, *, batch_id: str, folded_at: datetime) -> dict[str, Any]:
        return _dlq_row(value, pos, max_raw_bytes=64 * 1024, batch_id=batch_id, folded_at=folded_at)

except ImportError:
    from jobs.fold_rows import QUARANTINE_SCHEMA, STREAM_SCHEMA, Position, dlq_row, scored_row  # type: ignore[no-redef]

__all__ = ["QUARANTINE_SCHEMA", "STREAM_SCHEMA", "Position", "dlq_row", "scored_row"]
