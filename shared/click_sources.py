"""Facts about the click logs, stated once for the batch clean job and the stream replay.

Both turn the same raw rows into CLICK_EVENTs and must agree on every fact here (the
event id hashes the source name and the raw fields, so a replayed row and the cleaned
row share an id and the fold drops the repeat).

    from shared.click_sources import TAOBAO_BEHAVIOR, TAOBAO_FILE
    TAOBAO_BEHAVIOR["cart"]      # -> "add_to_cart"
    data_root / TAOBAO_FILE      # -> the Taobao UserBehavior slice
"""

from __future__ import annotations

# Where each file lies, relative to the data root (settings.data_root).
TAOBAO_FILE = "taobao_user_behavior/user_behavior_2017-11-26_0100-0310utc.csv"
DIGINETICA_VIEWS_FILE = "diginetica_cikm2016/sample_train-item-views.csv"
DIGINETICA_PURCHASES_FILE = "diginetica_cikm2016/train-purchases.csv"
DIGINETICA_CATEGORIES_FILE = "diginetica_cikm2016/product-categories.csv"

# The `source` of a click event (silver/clicks.source) and the first part of its id.
TAOBAO_SOURCE = "taobao"
DIGINETICA_VIEWS_SOURCE = "diginetica_views"
DIGINETICA_PURCHASES_SOURCE = "diginetica_purchases"
# Clicks that came through the stream and were folded back (jobs.fold): the live click
# log of the platform, in the same event schema.
STREAM_SOURCE = "stream"

# Raw fields in file order: the event id hashes them in this order.
TAOBAO_RAW = ("user_id", "item_id", "category_id", "behavior_type", "timestamp")
DIGINETICA_VIEWS_RAW = ("session_id", "user_id", "item_id", "timeframe", "eventdate")
DIGINETICA_PURCHASES_RAW = ("session_id", "user_id", "timeframe", "eventdate", "ordernumber", "item_id")

# Taobao's behavior_type -> CLICK_EVENT.event_type; any other value is not a click.
TAOBAO_BEHAVIOR = {"pv": "view", "cart": "add_to_cart", "fav": "favorite", "buy": "purchase"}
# Diginetica marks anonymous visitors 'NA'; their session stands in for the user.
DIGINETICA_ANONYMOUS_USER = "NA"
ANONYMOUS_USER_PREFIX = "anon-session:"
