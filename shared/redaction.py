"""The safe form of a rejected record: what may be written anywhere past the input.

A record the click rules reject (or a line batch cleaning cannot split) is still the
sender's data: raw identifiers stop at bronze and at the input topic, so before a
rejected value goes to the dead-letter topic, the quarantine or a log, it is redacted:

* A value that parses as a JSON object keeps its declared fields (CLICK_EVENT's), with
  every personal field (`shared.schemas.PERSONAL_FIELDS`) replaced by its pseudonym:
  same key and namespace as accepted events, so a rejected record still joins its
  user's accepted ones. A personal value that is not a string is pseudonymized as its
  JSON text. An event type of the schema's list and a readable time are kept; any other
  declared value (item and category ids, the query, a value of the wrong type) is kept
  as its outline (below), since a sender may put an identifier in any field. Values of
  fields the schema does not declare are dropped, names included (a field's name is the
  sender's text too): only their count is kept.
* A value that cannot be parsed (not UTF-8, not JSON, JSON that is not an object, a CSV
  line that does not split, or bytes cut at a size cap) cannot be redacted field by
  field. It is kept as a summary only: its size, a keyed hash of its bytes and a
  redacted outline (the first OUTLINE_CHARS characters with every letter written 'a',
  every digit 'n' and every other character outside printable ASCII '?'; ASCII
  punctuation and spaces stay, so the outline shows the shape: separators, quotes,
  field lengths, and no identifier byte). The reason code travels beside it. The bytes
  themselves are not kept, not even encrypted: nothing downstream needs them back, a
  summary needs no second key to manage, and the input topic and bronze still hold the
  original for as long as they retain it.

Every hash of sender bytes is keyed (`keyed_hash`: HMAC-SHA256 with the
pseudonymization key), so a small value cannot be recovered by hashing guesses.

    from shared.redaction import Redactor
    redactor = Redactor(key=b"...")
    redactor.click_value(raw_bytes)    # {"form": "fields", "record": {...}, ...}
    redactor.summary_text(raw_bytes)   # 'unparseable: 57 bytes, hmac-sha256 3f1c..., outline "nnnn,aaa"'
"""

from __future__ import annotations

import hashlib
import hmac
import json
import unicodedata
from collections.abc import Mapping
from typing import Any

from shared.click_rules import TRIMMED_FIELDS, ClickRejected, check_click_bytes, decode_click_json
from shared.pseudonymize import Pseudonymizer
from shared.schemas import CLICK_EVENT, EVENT_TYPES, PERSONAL_FIELDS, parse_timestamp

#: Characters of an unparseable value's outline.
OUTLINE_CHARS = 64
#: The prefix hashed before sender bytes, so a keyed hash never equals a pseudonym.
KEYED_HASH_NAMESPACE = b"bytes:"
FORM_FIELDS = "fields"
FORM_SUMMARY = "summary"
#: How a dead-letter entry's `raw` is written: the JSON text of the fields form, or of
#: the summary form (`Redactor.click_value`). Entries written before redaction say "latin-1".
RAW_REDACTED_JSON = "redacted-json"
RAW_REDACTED_SUMMARY = "redacted-summary"
REDACTED_ENCODINGS = frozenset({RAW_REDACTED_JSON, RAW_REDACTED_SUMMARY})
_CLICK_FIELDS = frozenset(CLICK_EVENT.names)


def keyed_hash(data: bytes, *, key: bytes) -> str:
    """HMAC-SHA256(key, "bytes:" + data) in hex (64 characters): the hash of sender bytes."""
    return hmac.new(key, KEYED_HASH_NAMESPACE + bytes(data), hashlib.sha256).hexdigest()


def outline(text: str, limit: int = OUTLINE_CHARS) -> str:
    """The shape of `text` without its content: letters -> 'a', digits -> 'n', printable
    ASCII punctuation and spaces kept, anything else '?'; the first `limit` characters,
    then '...' when there were more. (batch.cleaning's Spark twin: `outline_column`.)"""
    out = []
    for ch in text[:limit]:
        category = unicodedata.category(ch)[0]
        if category in "LM":
            out.append("a")
        elif category == "N":
            out.append("n")
        elif " " <= ch <= "~":
            out.append(ch)
        else:
            out.append("?")
    return "".join(out) + ("..." if len(text) > limit else "")


def _speaks_for_itself(name: str, value: Any) -> bool:
    """An event type from the schema's list, or a time the rules can read: values kept
    in a redacted record because they hold nothing a sender could choose freely."""
    if not isinstance(value, str):
        return False
    if name == "event_type":
        return value in EVENT_TYPES
    if name == "ts":
        try:
            parse_timestamp(value)
        except (TypeError, ValueError):
            return False
        return True
    return False


def summary_text(size: int, hashed: str, shape: str) -> str:
    """The one-line form of an unparseable value (batch quarantine's `detail`)."""
    return f"unparseable: {size} bytes, hmac-sha256 {hashed}, outline {json.dumps(shape)}"


class Redactor:
    """Redacts rejected values with one pseudonymization key (the settings' key, the one
    accepted events are pseudonymized with). Pure and cheap: build it once per worker."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._pseudonyms = {name: Pseudonymizer(ns, key=key) for name, ns in PERSONAL_FIELDS.items()}

    def keyed_hash(self, data: bytes) -> str:
        return keyed_hash(data, key=self._key)

    def pseudonym(self, name: str, value: Any) -> Any:
        """A personal field's value -> its pseudonym; null and blank text stay as they are
        (they identify no one). Text is trimmed the way the click rules trim it first,
        so the pseudonym equals the accepted event's."""
        if value is None or (isinstance(value, str) and value.strip() == ""):
            return value
        if isinstance(value, str):
            text = value.strip(" ") if name in TRIMMED_FIELDS else value
            try:
                return self._pseudonyms[name](text)
            except UnicodeEncodeError:  # a lone surrogate: hash its JSON text instead
                pass
        return self._pseudonyms[name](json.dumps(value, sort_keys=True))

    def record(self, obj: Mapping[str, Any], declared: frozenset[str] = _CLICK_FIELDS) -> dict[str, Any]:
        """The declared fields of a parsed record: personal ones pseudonymized; an event
        type of the schema's list and a readable ISO-8601 time kept as they are (neither
        can carry anyone's identifier); every other value (ids, the query, a value of the
        wrong type) as its outline, since a sender may put an identifier in any field.
        Booleans and nulls stay. Undeclared fields are left out."""
        out: dict[str, Any] = {}
        for name in sorted(declared & obj.keys()):
            value = obj[name]
            if name in PERSONAL_FIELDS:
                out[name] = self.pseudonym(name, value)
            elif value is None or isinstance(value, bool):
                out[name] = value
            elif _speaks_for_itself(name, value):
                out[name] = value
            else:
                out[name] = outline(value if isinstance(value, str) else json.dumps(value, sort_keys=True))
        return out

    def summary(self, raw: bytes, *, truncated: bool = False) -> dict[str, Any]:
        """The summary form of an unparseable value (see the module's docstring)."""
        return {
            "form": FORM_SUMMARY,
            "size": len(raw),
            "truncated": truncated,
            "hmac_sha256": self.keyed_hash(raw),
            "outline": outline(raw.decode("utf-8", errors="replace")),
        }

    def summary_text(self, raw: bytes) -> str:
        summary = self.summary(raw)
        return summary_text(summary["size"], summary["hmac_sha256"], summary["outline"])

    def click_value(self, raw: bytes | None, *, truncated: bool = False) -> dict[str, Any] | None:
        """A rejected click value (Kafka value bytes) -> its safe form, a JSON-ready dict.

        `truncated`: `raw` is only the first bytes of the value (cut at a size cap), so it
        is summarized, never parsed. `size` and `hmac_sha256` describe the bytes given.
        """
        if raw is None:
            return None
        raw = bytes(raw)
        if not truncated:
            try:
                obj = decode_click_json(raw)
            except ClickRejected:
                obj = None
            if isinstance(obj, dict):
                return {
                    "form": FORM_FIELDS,
                    "size": len(raw),
                    "hmac_sha256": self.keyed_hash(raw),
                    "record": self.record(obj),
                    "unknown_fields": sum(1 for k in obj if k not in _CLICK_FIELDS),
                }
        return self.summary(raw, truncated=truncated)

    def click_value_text(self, raw: bytes | None, *, truncated: bool = False) -> str | None:
        """`click_value` as compact JSON text (ASCII: escapes keep any surrogate writable)."""
        value = self.click_value(raw, truncated=truncated)
        return None if value is None else json.dumps(value, separators=(",", ":"), sort_keys=True)

    def dead_letter_raw(self, raw: bytes | None, *, truncated: bool = False) -> tuple[str | None, str | None]:
        """(`raw`, `raw_encoding`) of a dead-letter entry: the safe form's JSON text and
        which form it is (RAW_REDACTED_JSON or RAW_REDACTED_SUMMARY); (None, None) without a value."""
        value = self.click_value(raw, truncated=truncated)
        if value is None:
            return None, None
        encoding = RAW_REDACTED_JSON if value["form"] == FORM_FIELDS else RAW_REDACTED_SUMMARY
        return json.dumps(value, separators=(",", ":"), sort_keys=True), encoding

    def reasons(self, raw: bytes | None, step: str, reason_code: str | None, *, truncated: bool = False) -> list[str]:
        """Reasons safe to write for a record that failed at `step`, re-derived from the
        value where the click rules rejected it (their reasons quote nothing), else only
        the reason code: for a dead-letter entry written before reasons were safe."""
        if raw is not None and not truncated and step == "parse_validate":
            try:
                check_click_bytes(raw)
            except ClickRejected as exc:
                return list(exc.reasons)
        # Accepted today (a time that was in the future then), or no value to read.
        return [] if reason_code is None else [reason_code]


def safe_failure_reason(step: str, exc: BaseException) -> tuple[str, list[str]]:
    """(reason_code, reasons) of a record that failed at `step`, quoting nothing of it:
    the click rules' reasons, or the exception's type alone (its text may hold a value)."""
    if isinstance(exc, ClickRejected):
        return exc.code, list(exc.reasons)
    return f"{step}_error", [type(exc).__name__]


def redact_legacy_dlq_entry(entry: Mapping[str, Any], redactor: Redactor) -> dict[str, Any]:
    """A dead-letter entry as written before redaction (raw bytes as latin-1 text in
    `raw`, an unkeyed `raw_sha256`, reasons that may quote values) -> the same entry with
    `raw` replaced by the JSON text of its safe form (`raw_encoding` "redacted-json" or
    "redacted-summary"), `raw_sha256` dropped for `raw_hmac_sha256` (of the bytes kept,
    null when they were cut) and reasons re-derived (`Redactor.reasons`). An entry already redacted, or one
    without raw bytes, only loses its unkeyed hash and unsafe reasons."""
    out = dict(entry)
    raw_text = entry.get("raw")
    truncated = entry.get("raw_truncated") is True
    step = str(entry.get("step") or "")
    code = None if entry.get("reason_code") is None else str(entry["reason_code"])
    raw: bytes | None = None
    if isinstance(raw_text, str) and entry.get("raw_encoding", "latin-1") == "latin-1":
        try:
            raw = raw_text.encode("latin-1")
        except UnicodeEncodeError:  # not what a worker wrote: keep nothing of it
            raw = raw_text.encode("utf-8", errors="surrogatepass")
            truncated = True
        out["raw"], out["raw_encoding"] = redactor.dead_letter_raw(raw, truncated=truncated)
        out["raw_hmac_sha256"] = None if truncated else redactor.keyed_hash(raw)
    elif entry.get("raw_encoding") not in REDACTED_ENCODINGS:
        out["raw"] = None
    out.pop("raw_sha256", None)
    out["reasons"] = redactor.reasons(raw, step, code, truncated=truncated)
    return out
