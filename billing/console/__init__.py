"""``billing_console``: the server-rendered HTML console for finance (contract, "Operator visibility").

Flask and Jinja2 (autoescaped), no JavaScript, no build step. Behind IAP in production
(``billing.http.auth.iap``), scoped per tenant like the functions (``billing.console.security``),
with a CSRF token on every form (Flask-WTF). Pages (``billing.console.pages``): runs and a run's
errors by stage, invoices (filters, detail with lines, history, credit notes, PDF), the draft
review queue, overdue invoices with their dunning stage, credit notes, CSV exports, and the
scheduled functions with "Dry run" then "Run now". Actions (``billing.console.actions``) go
through ``billing_admin``'s own dispatcher (``billing.runs.admin_actions.dispatch``).
``functions/billing_console/main.py`` serves ``create_app()`` as a Cloud Function.
"""

from billing.console.app import create_app

__all__ = ["create_app"]
