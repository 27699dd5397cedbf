"""Silver clicks plus the clicks the stream folded back (jobs.fold -> silver/clicks_stream).

The fold keeps the stream's events in their own table, with the score and model version
the worker gave them, so a rebuild of silver clicks from bronze never loses them. Every
gold table that is built from clicks reads both, through this one function.

    clicks = with_stream_clicks(silver_clicks, silver_clicks_stream_or_None)
"""

from __future__ import annotations

from pyspark.sql import DataFrame

from shared.silver import SILVER_CLICKS


def with_stream_clicks(clicks: DataFrame, stream: DataFrame | None) -> DataFrame:
    """`clicks` with the stream's rows appended (silver click columns), one row per event id.

    The fold already drops events silver clicks holds; deduplicating here as well keeps
    the union exact when the same events later arrive through a file too.
    """
    if stream is None:
        return clicks
    columns = SILVER_CLICKS.names
    return clicks.select(*columns).unionByName(stream.select(*columns)).dropDuplicates(["event_id"])
