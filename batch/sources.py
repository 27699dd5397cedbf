"""The catalogue of known input files and how each is read into bronze.

A `Source` says where a file lies (relative to the data root), which bronze table it
feeds, and the reader options its format needs. Column names are normalized to
snake_case (Delta forbids spaces and an empty name); values stay as received, strings.

    from batch.sources import KNOWN_SOURCES
    [s.name for s in KNOWN_SOURCES]
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from shared.click_sources import (
    DIGINETICA_CATEGORIES_FILE,
    DIGINETICA_PURCHASES_FILE,
    DIGINETICA_VIEWS_FILE,
    TAOBAO_FILE,
    TAOBAO_RAW,
)

FileFormat = Literal["csv", "json", "parquet"]


@dataclass(frozen=True)
class Source:
    name: str
    relative_path: str
    bronze_table: str
    format: FileFormat = "csv"
    sep: str = ","
    header: bool = True
    multiline: bool = False
    # Headerless files: the names, in file order. Files with a header: raw -> bronze.
    columns: tuple[str, ...] = ()
    rename: dict[str, str] = field(default_factory=dict)


UCI_COLUMNS = {
    # Online Retail (2010-12 .. 2011-12)
    "InvoiceNo": "invoice_no",
    "UnitPrice": "unit_price",
    "CustomerID": "customer_id",
    # Online Retail II (2009-12 .. 2010-12) spells three columns differently
    "Invoice": "invoice_no",
    "Price": "unit_price",
    "Customer ID": "customer_id",
}

KNOWN_SOURCES: tuple[Source, ...] = (
    Source(
        name="reviews",
        relative_path="womens_clothing_reviews/womens_clothing_ecommerce_reviews.csv",
        bronze_table="reviews",
        multiline=True,  # Review Text holds quoted CR/LF line breaks
        rename={"": "review_id"},
    ),
    Source(
        name="orders_2010_2011",
        relative_path="uci_online_retail/online_retail_2010-12-01_2011-12-09.csv.gz",
        bronze_table="orders",
        rename=UCI_COLUMNS,
    ),
    Source(
        name="orders_2009_2010",
        relative_path="uci_online_retail/online_retail_II_2009-12-01_2010-12-09.csv.gz",
        bronze_table="orders",
        rename=UCI_COLUMNS,
    ),
    Source(
        name="clicks_taobao",
        relative_path=TAOBAO_FILE,
        bronze_table="clicks_taobao",
        header=False,
        columns=TAOBAO_RAW,
    ),
    Source(
        name="views_diginetica",
        relative_path=DIGINETICA_VIEWS_FILE,
        bronze_table="views_diginetica",
        sep=";",
    ),
    Source(
        name="purchases_diginetica",
        relative_path=DIGINETICA_PURCHASES_FILE,
        bronze_table="purchases_diginetica",
        sep=";",
        rename={"sessionId": "session_id", "userId": "user_id", "itemId": "item_id"},
    ),
    Source(
        name="item_categories_diginetica",
        relative_path=DIGINETICA_CATEGORIES_FILE,
        bronze_table="item_categories_diginetica",
        sep=";",
        rename={"itemId": "item_id", "categoryId": "category_id"},
    ),
)

# The continuous UCI history takes Online Retail II only before this day: both files
# hold 2010-12-01 .. 2010-12-09 (data README, "Overlap with 3a").
UCI_OVERLAP_SOURCE = "orders_2009_2010"
UCI_OVERLAP_START = "2010-12-01"


def source_by_name(name: str) -> Source:
    for source in KNOWN_SOURCES:
        if source.name == name:
            return source
    known = ", ".join(s.name for s in KNOWN_SOURCES)
    raise KeyError(f"unknown source {name!r}; known sources: {known}")


def bronze_column_name(raw: str, position: int) -> str:
    """snake_case a raw header; an empty header becomes column_<position>."""
    name = re.sub(r"[^0-9a-zA-Z]+", "_", raw.strip()).strip("_")
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()
    return name or f"column_{position}"
