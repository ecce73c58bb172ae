"""The account: orders (Alpaca's state machine), fills, and positions and P&L derived from
fills only (DESIGN.md §5). See ``orders``, ``book`` and ``account``."""

from tradenova_dagster.ledger.account import AccountLedger, LedgerOrder
from tradenova_dagster.ledger.book import Book, BookPosition, ClosedPart, LedgerFill, LongOnlyViolation
from tradenova_dagster.ledger.orders import FINAL, IllegalTransition, advance

__all__ = ["AccountLedger", "Book", "BookPosition", "ClosedPart", "FINAL", "IllegalTransition", "LedgerFill",
           "LedgerOrder", "LongOnlyViolation", "advance"]
