"""The safe form of rejected records: no identifier a sender put in survives in it."""

from __future__ import annotations

import hashlib
import hmac
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.pseudonymize import pseudonymize
from shared.redaction import (
    Redactor,
    keyed_hash,
    outline,
    redact_legacy_dlq_entry,
    safe_failure_reason,
    summary_text,
)
from shared.schemas import CLICK_EVENT, PERSONAL_FIELDS

KEY = b"test-key"
REDACTOR = Redactor(KEY)
GOOD = {
    "event_id": "e1",
    "user_id": "u1",
    "session_id": None,
    "item_id": "i1",
    "event_type": "view",
    "ts": "2017-11-26T01:00:00Z",
    "query": None,
    "category_id": "c1",
}

# Identifiers as senders put them in: e-mail addresses, names, long digit strings.
# A word starts with a capital (never 'A'): the safe forms' own text (JSON keys, hex
# hashes, outlines of 'a' and 'n') is lowercase, so a hit is a leak, not a coincidence.
_WORD = st.builds(
    str.__add__,
    st.sampled_from("BCDEFGHJKLMNPQRSTUVWXYZÉŁ"),
    st.text(alphabet=st.characters(categories=["Ll", "Lu", "Lo"]), min_size=3, max_size=11),
)
EMAILS = st.builds(lambda a, b: f"{a}@{b}.example", _WORD, _WORD)
NAMES = st.builds(lambda a, b: f"{a} {b}", _WORD, _WORD)
DIGITS = st.from_regex(r"[1-9][0-9]{7,15}", fullmatch=True)
IDENTIFIERS = st.one_of(EMAILS, NAMES, DIGITS)


def _text(value) -> str:
    return json.dumps(value, ensure_ascii=False)


def _pieces(identifier: str) -> list[str]:
    """The identifier and each word of it: no part may survive either."""
    words = identifier.replace("@", " ").replace(".", " ").split()
    return [identifier, *[w for w in words if len(w) >= 4 and w != "example"]]


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    identifier=IDENTIFIERS,
    field=st.sampled_from(sorted(set(PERSONAL_FIELDS) & set(CLICK_EVENT.names)) + ["email", "customer_id"]),
    as_number=st.booleans(),
    unknown=st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=8), max_size=3),
)
def test_personal_fields_of_a_parseable_record_leave_only_as_pseudonyms(identifier, field, as_number, unknown):
    value: object = int(identifier) if as_number and identifier.isdigit() else identifier
    record = {**{k: v for k, v in unknown.items() if k not in CLICK_EVENT.names}, **GOOD, field: value}
    # The identifier is also an unknown field's name and value: both are dropped.
    record[f"x-{identifier}"] = identifier
    raw = json.dumps(record).encode()
    safe = REDACTOR.click_value(raw)
    out = _text(safe) + json.dumps(safe)
    for piece in _pieces(identifier):
        assert piece not in out
    assert safe["form"] == "fields" and safe["unknown_fields"] >= 1
    if field in CLICK_EVENT.names:
        expected = (
            pseudonymize(identifier.strip(" "), PERSONAL_FIELDS[field], key=KEY)
            if isinstance(value, str)
            else pseudonymize(json.dumps(value), PERSONAL_FIELDS[field], key=KEY)
        )
        assert safe["record"][field] == expected
    else:  # an e-mail or customer field the click schema does not declare: dropped
        assert field not in safe["record"]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    identifier=IDENTIFIERS,
    before=st.binary(max_size=40),
    after=st.binary(max_size=40),
    form=st.sampled_from(["csv", "bytes", "cut_json", "array", "latin1"]),
    truncated=st.booleans(),
)
def test_identifiers_anywhere_in_unparseable_bytes_never_appear(identifier, before, after, form, truncated):
    if form == "csv":
        raw = f"{identifier},1715,{identifier},pv,not-a-time".encode()
    elif form == "bytes":
        raw = before + identifier.encode() + after
    elif form == "cut_json":
        raw = json.dumps({**GOOD, "item_id": identifier, "user_id": identifier}).encode()[:-3]
    elif form == "array":
        raw = json.dumps([identifier, {"user_id": identifier}]).encode()
    else:
        raw = identifier.encode("utf-8") + b"\xff\xfe" + after
    safe = REDACTOR.click_value(raw, truncated=truncated)
    assert safe["form"] == "summary"
    texts = [_text(safe), json.dumps(safe), REDACTOR.summary_text(raw), REDACTOR.click_value_text(raw) or ""]
    for text in texts:
        for piece in _pieces(identifier):
            assert piece not in text
    assert safe["size"] == len(raw) and safe["hmac_sha256"] == keyed_hash(raw, key=KEY)


@settings(max_examples=100)
@given(identifier=IDENTIFIERS, field=st.sampled_from(CLICK_EVENT.names), cut=st.booleans())
def test_a_truncated_value_is_summarized_even_when_what_is_left_parses(identifier, field, cut):
    raw = json.dumps({**GOOD, field: identifier}).encode()
    safe = REDACTOR.click_value(raw, truncated=True)
    assert safe["form"] == "summary" and safe["truncated"]
    for piece in _pieces(identifier):
        assert piece not in json.dumps(safe, ensure_ascii=False)


def test_keyed_hash_is_an_hmac_with_the_key_never_a_plain_hash():
    raw = b"12345"
    assert keyed_hash(raw, key=KEY) == hmac.new(KEY, b"bytes:" + raw, hashlib.sha256).hexdigest()
    assert keyed_hash(raw, key=KEY) != hashlib.sha256(raw).hexdigest()
    assert keyed_hash(raw, key=KEY) != keyed_hash(raw, key=b"other")


def test_outline_keeps_the_shape_and_no_letter_or_digit():
    assert outline('alice@example.com,42,"Zoë"') == 'aaaaa@aaaaaaa.aaa,nn,"aaa"'
    assert outline("x" * 100).endswith("...") and len(outline("x" * 100)) == 64 + 3
    assert outline("tab\there \u2028 ✓") == "aaa?aaaa ? ?"
    assert summary_text(3, "ab", 'a"b') == 'unparseable: 3 bytes, hmac-sha256 ab, outline "a\\"b"'


def test_declared_fields_keep_only_what_names_no_one():
    raw = json.dumps({**GOOD, "item_id": {"nested": "alice"}, "query": "q" * 5000, "category_id": 17}).encode()
    record = REDACTOR.click_value(raw)["record"]
    assert record["item_id"] == outline(json.dumps({"nested": "alice"})) and "alice" not in record["item_id"]
    assert record["query"] == outline("q" * 5000) and record["query"].endswith("...") and len(record["query"]) < 100
    assert record["category_id"] == "nn" and record["event_id"] == "an" and record["session_id"] is None
    assert record["event_type"] == "view" and record["ts"] == GOOD["ts"]  # a listed type, a readable time
    assert record["user_id"] == pseudonymize("u1", "user", key=KEY)
    odd = REDACTOR.click_value(json.dumps({**GOOD, "event_type": "Visit", "ts": "Tuesday"}).encode())["record"]
    assert odd["event_type"] == "aaaaa" and odd["ts"] == "aaaaaaa"


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(identifier=IDENTIFIERS, field=st.sampled_from(CLICK_EVENT.names), as_number=st.booleans())
def test_an_identifier_in_any_declared_field_never_leaves(identifier, field, as_number):
    value: object = int(identifier) if as_number and identifier.isdigit() else identifier
    safe = REDACTOR.click_value(json.dumps({**GOOD, field: value}).encode())
    out = _text(safe) + json.dumps(safe)
    for piece in _pieces(identifier):
        assert piece not in out


def test_blank_and_null_personal_values_stay_as_they_are():
    record = REDACTOR.click_value(json.dumps({**GOOD, "user_id": "  "}).encode())["record"]
    assert record["user_id"] == "  " and record["session_id"] is None


def test_lone_surrogates_and_none_are_handled():
    assert REDACTOR.click_value(None) is None
    safe = REDACTOR.click_value(b'{"user_id": "\\ud800alice", "item_id": "\\udfff"}')
    assert safe["form"] == "fields" and "alice" not in json.dumps(safe)
    json.dumps(safe).encode("utf-8")  # writable


def test_failure_reasons_quote_no_exception_text():
    code, reasons = safe_failure_reason("enrich", KeyError("alice@example.com"))
    assert code == "enrich_error" and reasons == ["KeyError"]


def test_legacy_dead_letter_entries_are_redacted_when_folded():
    raw = json.dumps({**GOOD, "user_id": "alice@example.com", "event_type": "teleport"}).encode()
    entry = {
        "raw": raw.decode("latin-1"),
        "raw_encoding": "latin-1",
        "raw_truncated": False,
        "reasons": ["event_type: 'teleport' is not one of ... alice@example.com"],
        "step": "parse_validate",
        "reason_code": "unknown_event_type",
        "raw_size": len(raw),
        "raw_sha256": hashlib.sha256(raw).hexdigest(),
    }
    out = redact_legacy_dlq_entry(entry, REDACTOR)
    text = json.dumps(out)
    assert "alice" not in text and "raw_sha256" not in out
    assert out["raw_encoding"] == "redacted-json" and out["raw_hmac_sha256"] == keyed_hash(raw, key=KEY)
    assert json.loads(out["raw"])["record"]["user_id"] == pseudonymize("alice@example.com", "user", key=KEY)
    assert out["reasons"] and all("teleport" not in r for r in out["reasons"])
    cut = redact_legacy_dlq_entry({**entry, "raw": entry["raw"][:20], "raw_truncated": True}, REDACTOR)
    assert "alice" not in json.dumps(cut) and cut["raw_hmac_sha256"] is None
    assert cut["reasons"] == ["unknown_event_type"]
    other = redact_legacy_dlq_entry({**entry, "step": "enrich", "reason_code": "enrich_error"}, REDACTOR)
    assert other["reasons"] == ["enrich_error"]


def test_a_pseudonym_is_told_from_a_raw_id():
    from shared.pseudonymize import is_pseudonym

    assert is_pseudonym(pseudonymize("12345", "session", key=KEY))
    assert not any(is_pseudonym(v) for v in (None, "12345", "alice@example.com", "A" * 32, "0" * 31))
