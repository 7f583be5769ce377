"""The review actions' table and router (``billing.runs.admin_actions`` registers them).

``REVIEW_ACTIONS`` maps each action name of the contract's "Review and correction" to its use
case; ``run_review_action`` runs one on a validated ``ReviewCall`` and returns the response body.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from billing.runs.review.common import ReviewCall
from billing.runs.review.draft_editing import add_line_item, delete_draft, remove_line_item
from billing.runs.review.finalize import finalize
from billing.runs.review.one_off import create_invoice
from billing.runs.review.refresh_draft import refresh_draft
from billing.runs.review.regenerate import regenerate

REVIEW_ACTIONS: dict[str, Callable[[ReviewCall], dict[str, Any]]] = {
    "add_line_item": add_line_item,
    "remove_line_item": remove_line_item,
    "refresh_draft": refresh_draft,
    "finalize": finalize,
    "delete_draft": delete_draft,
    "create_invoice": create_invoice,
    "regenerate": regenerate,
}


def run_review_action(call: ReviewCall) -> dict[str, Any]:
    """Run the review action ``call.action`` (a key of ``REVIEW_ACTIONS``); its response body.

    Raises:
        BadRequest, NotFound, Conflict, DataError: before anything is written.

    """
    return REVIEW_ACTIONS[call.action](call)
