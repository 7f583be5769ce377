"""Review and correction (issue 10): the ``billing_admin`` actions a person uses on drafts.

Contract, "Review and correction": edit, refresh, finalize and delete drafts, create one-off
invoices, and bill a voided period again.

One module per use case, each composed of named steps: ``draft_editing`` (``add_line_item``,
``remove_line_item``, ``delete_draft``), ``refresh_draft``, ``finalize``, ``one_off``
(``create_invoice``) and ``regenerate``; ``common`` holds the request, the field validators, the
invoice view and the transactional edit every change goes through. ``run_review_action`` routes
one validated request to its use case; ``billing.runs.admin_actions`` registers the actions.
"""
