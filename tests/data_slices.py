"""Small slices of the real data sets, with planted bad rows and canary identifiers.

Tests run the real jobs on these files: the first rows of each real file, plus a few
rows written here to exercise every quarantine reason and the pseudonymization.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
from pathlib import Path

from batch.sources import KNOWN_SOURCES

# Raw identifiers that must never appear in silver, gold or quarantine.
CANARY_CUSTOMER = "99999"
CANARY_TAOBAO_USER = "987654321"
CANARY_DIGINETICA_USER = "424242"

# Raw e-mail addresses and names planted in personal fields (customer, user and session
# ids) of rows rejected for every reason, and of rows accepted: none may appear past
# bronze, in any file under the lake's silver and gold folders (data and _delta_log).
PERSONAL_CANARIES = (
    "quinn.orders@example.com",
    "Zelda Quixotic",
    "ursula.clicks@example.com",
    "Ysolde Brannigan",
    "victor.session@example.com",
    "Wilhelmina Dusk",
)
_ORDER_EMAIL, _ORDER_NAME, _CLICK_EMAIL, _CLICK_NAME, _SESSION_EMAIL, _SESSION_NAME = PERSONAL_CANARIES
PLANTED_PERSONAL_ORDERS = [
    # one row per reason code, the customer id an e-mail address or a name
    ["582001", "85123A", "EMAIL BAD QUANTITY", "abc", "2011-12-09 10:00:00", "2.55", _ORDER_EMAIL, "France"],
    ["582002", "85123A", "NAME BAD DATE", "6", "someday", "2.55", _ORDER_NAME, "France"],
    ["C582003", "85123A", "EMAIL CANCELLED", "-6", "2011-12-09 10:00:00", "2.55", _ORDER_EMAIL, "France"],
    ["A582004", "85123A", "NAME ADJUSTMENT", "1", "2011-12-09 10:00:00", "2.55", _ORDER_NAME, "France"],
    ["582005", "POST", "EMAIL POSTAGE", "1", "2011-12-09 10:00:00", "18.0", _ORDER_EMAIL, "France"],
    ["582006", "85123A", "NAME FREE", "1", "2011-12-09 10:00:00", "0", _ORDER_NAME, "France"],
    ["582007", "85123A", "EMAIL NONE", "0", "2011-12-09 10:00:00", "2.55", _ORDER_EMAIL, "France"],
    ["582008", "85123A", "", "1", "2011-12-09 10:00:00", "2.55", _ORDER_NAME, "France"],
    ["582009", "85123A", "EMAIL TWICE", "1", "2011-12-09 10:00:00", "2.55", _ORDER_EMAIL, "France"],
    ["582009", "85123A", "EMAIL TWICE", "1", "2011-12-09 10:00:00", "2.55", _ORDER_EMAIL, "France"],
    ["582010", "85123A", "NAME ACCEPTED", "1", "2011-12-09 10:00:00", "2.55", _ORDER_NAME, "France"],
]
MALFORMED_PERSONAL_ORDER_LINE = (
    f'582011,85123A,"TOO, MANY",1,2011-12-09 10:00:00,2.55,{_ORDER_EMAIL},{_ORDER_NAME},extra,fields'
)
PLANTED_PERSONAL_TAOBAO = [
    f"{_CLICK_EMAIL},1715,1464116,zzz,1511658100",  # unknown_event_type
    f"{_CLICK_NAME},1715,1464116,pv,not-a-time",  # bad_timestamp
    f"{_CLICK_EMAIL},,1464116,pv,1511658100",  # missing_field
    f"{_CLICK_NAME},   ,1464116,pv,1511658100",  # blank_id
    f"{_CLICK_EMAIL}{'x' * 130},1715,1464116,pv,1511658100",  # too_long
    f"{_CLICK_NAME},1715,1464116,pv,1511658100,{_CLICK_EMAIL}",  # malformed_row
    f"{_CLICK_EMAIL},1716,1464116,pv,1511658100",  # accepted...
    f"{_CLICK_EMAIL},1716,1464116,pv,1511658100",  # ... and its duplicate
]
PLANTED_PERSONAL_VIEWS = [
    f"{_SESSION_EMAIL};{_SESSION_NAME};81766;526309;2016-05-09",  # accepted
    f"{_SESSION_NAME};{_SESSION_EMAIL};81766;abc;2016-05-09",  # bad_timestamp
    f"{_SESSION_EMAIL};NA;81766;526309;2016-05-09",  # anonymous: the session stands in for the user
]

PLANTED_ORDERS = [
    # invoice, stock, description, qty, date, price, customer, country
    [
        "581001",
        "85123A",
        "CANARY HEART HOLDER",
        "6",
        "2011-12-09 10:00:00",
        "2.55",
        f"{CANARY_CUSTOMER}.0",
        "United Kingdom",
    ],
    ["581002", "85123A", "BAD QUANTITY", "abc", "2011-12-09 10:00:00", "2.55", "17850.0", "United Kingdom"],
    ["581003", "85123A", "BAD DATE", "6", "9th of December", "2.55", "17850.0", "United Kingdom"],
    ["C581004", "85123A", "CANCELLED", "-6", "2011-12-09 10:00:00", "2.55", "17850.0", "United Kingdom"],
    ["581005", "POST", "POSTAGE", "1", "2011-12-09 10:00:00", "18.0", "17850.0", "France"],
    ["581006", "85123A", "FREE SAMPLE", "1", "2011-12-09 10:00:00", "0", "17850.0", "United Kingdom"],
    ["581007", "85123A", "", "1", "2011-12-09 10:00:00", "2.55", "17850.0", "United Kingdom"],
    ["A581008", "B", "Adjust bad debt", "1", "2011-12-09 10:00:00", "-11062.06", "", "United Kingdom"],
]
MALFORMED_ORDER_LINE = '581009,85123A,"TOO, MANY",1,2011-12-09 10:00:00,2.55,17850.0,United Kingdom,extra,fields'

PLANTED_TAOBAO = [
    f"{CANARY_TAOBAO_USER},1715,1464116,pv,1511658100",
    f"{CANARY_TAOBAO_USER},1715,1464116,cart,1511658160",
    "100001,1715,1464116,zzz,1511658100",
    "100002,1715,1464116,pv,not-a-time",
    "100003,1715,1464116,pv,99999999999",
    ",1715,1464116,pv,1511658100",
    "100004,1715,1464116,pv,1511658100,surplus",
]


def _write_gz(path: Path, text: str) -> None:
    with gzip.open(path, "wt", encoding="utf-8", newline="") as handle:
        handle.write(text)


def _head_lines(path: Path, n: int) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as handle:
        return [line.rstrip("\r\n") for line in itertools.islice(handle, n)]


def _reviews(source: Path, target: Path, n: int) -> None:
    with source.open(encoding="utf-8", newline="") as handle:
        rows = list(itertools.islice(csv.reader(handle), n + 1))
    header, body = rows[0], rows[1:]
    dup = list(body[1])
    dup[0] = "900001"  # same garment, title and text as an earlier review
    body += [
        dup,
        ["900002", "767", "33", "Nice", "", "5", "1", "0", "General", "Tops", "Knits"],
        ["900003", "767", "33", "Odd", "Rated seven stars", "7", "1", "0", "General", "Tops", "Knits"],
        [
            "900004",
            "767",
            "33",
            "Lovely",
            "my fianc\u00e3\u00a9 loved the ombr\u00e3\u00a9 color",
            "5",
            "1",
            "0",
            "General",
            "Tops",
            "Knits",
        ],
        ["900005", "767", "x", "Bad age", "Text", "4", "1", "0", "General", "Tops", "Knits"],
    ]
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([header, *body])
    target.write_text(buffer.getvalue(), encoding="utf-8")


def build_slices(data_root: Path, target: Path, rows: int = 2000) -> Path:
    """Write the sliced data tree under `target` (same relative paths as the real one)."""
    paths = {s.name: s.relative_path for s in KNOWN_SOURCES}
    for relative in paths.values():
        (target / relative).parent.mkdir(parents=True, exist_ok=True)

    _reviews(data_root / paths["reviews"], target / paths["reviews"], rows // 4)

    recent = _head_lines(data_root / paths["orders_2010_2011"], rows + 1)
    planted = io.StringIO()
    csv.writer(planted, lineterminator="\n").writerows(PLANTED_ORDERS + PLANTED_PERSONAL_ORDERS)
    duplicate = recent[1]
    _write_gz(
        target / paths["orders_2010_2011"],
        "\n".join(recent + [duplicate])
        + "\n"
        + planted.getvalue()
        + MALFORMED_ORDER_LINE
        + "\n"
        + MALFORMED_PERSONAL_ORDER_LINE
        + "\n",
    )
    # Online Retail II: its first rows (2009) and its last rows (the overlap days).
    older_all = _head_lines(data_root / paths["orders_2009_2010"], 10**7)
    _write_gz(target / paths["orders_2009_2010"], "\n".join(older_all[: rows + 1] + older_all[-200:]) + "\n")

    # Every 20th user with all of their events: the slice spans the whole two hours,
    # so sessions, the label horizon and the time split all have room.
    taobao = [
        line for line in _head_lines(data_root / paths["clicks_taobao"], 10**6) if int(line.split(",", 1)[0]) % 20 == 0
    ]
    (target / paths["clicks_taobao"]).write_text("\n".join(taobao + PLANTED_TAOBAO + PLANTED_PERSONAL_TAOBAO) + "\n")

    views = _head_lines(data_root / paths["views_diginetica"], rows // 2)
    views.append(f"1;{CANARY_DIGINETICA_USER};81766;526309;2016-05-09")
    views += PLANTED_PERSONAL_VIEWS
    (target / paths["views_diginetica"]).write_text("\n".join(views) + "\n")
    purchases = _head_lines(data_root / paths["purchases_diginetica"], rows // 2)
    (target / paths["purchases_diginetica"]).write_text("\n".join(purchases + purchases[1:3]) + "\n")
    categories = _head_lines(data_root / paths["item_categories_diginetica"], rows * 5)
    (target / paths["item_categories_diginetica"]).write_text("\n".join(categories) + "\n")
    return target
