"""Canonical schema of events, items and users (MerRec-compatible names), event codes, DataError."""

from __future__ import annotations

from pathlib import Path

from guim.errors import UserError

# Canonical column names of an event log. user_id, item_id and timestamp are required.
USER_ID, ITEM_ID, TIMESTAMP = "user_id", "item_id", "timestamp"
SESSION_ID, EVENT, PRICE = "session_id", "event", "price"
EVENT_COLUMNS = (USER_ID, ITEM_ID, TIMESTAMP, SESSION_ID, EVENT, PRICE)
REQUIRED_EVENT_COLUMNS = (USER_ID, ITEM_ID, TIMESTAMP)

# Item catalogue columns that become attribute ids (one shared id space, ID-embedding paper).
ITEM_CATEGORICAL = ("c0", "c1", "c2", "brand", "shop", "condition", "color", "size")
ITEM_TEXT = "title"
ITEM_TAGS = "tags"  # a list of attribute values per item (S3-Rec attributes, ml-100k genres)

# Event types, ordered by funnel depth; the code is the index (0 = padding). Logs without an
# event column get "interaction". Consecutive events of a user on one item collapse into one
# interaction whose event is the deepest stage reached.
EVENT_TYPES = (
    "<pad>",
    "interaction",
    "view",
    "like",
    "add_to_cart",
    "offer",
    "buy_start",
    "purchase",
)
EVENT_CODE = {name: code for code, name in enumerate(EVENT_TYPES)}
EVENT_ALIASES = {
    # MerRec event_id values
    "item_view": "view",
    "item_like": "like",
    "item_add_to_cart_tap": "add_to_cart",
    "offer_make": "offer",
    "buy_comp": "purchase",
    # common spellings in other public logs
    "click": "view",
    "cart": "add_to_cart",
    "addtocart": "add_to_cart",
    "add-to-cart": "add_to_cart",
    "buy": "purchase",
    "order": "purchase",
    "transaction": "purchase",
    "rating": "interaction",
    "review": "interaction",
}


def event_code(name: str) -> int | None:
    """Code of an event name (canonical or alias, case-insensitive), or None if unknown."""
    key = name.strip().lower()
    key = EVENT_ALIASES.get(key, key)
    return EVENT_CODE.get(key)


class DataError(UserError):
    """Bad input data. The message names the file, where in it (`line` for text files, 1-based
    with the header as line 1; `row` for Parquet, the 1-based data row) and the column."""

    def __init__(
        self,
        file: str | Path | None,
        message: str,
        *,
        line: int | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        self.file = str(file) if file is not None else None
        self.line = line
        self.row = row
        self.column = column
        self.reason = message
        where = self.file or "<input>"
        if line is not None:
            where += f", line {line}"
        if row is not None:
            where += f", row {row}"
        if column is not None:
            where += f", column '{column}'"
        super().__init__(f"{where}: {message}")
