"""The billing library every Cloud Function imports (``functions/<name>/main.py`` stay thin).

The package is laid out along the flow of a billing run:

- ``billing.http``: the request shell. ``shell.handle`` (method, OIDC token, tenant
  authorization, JSON body, field validators, errors -> JSON responses), ``auth`` (OIDC checks
  and the signing-certificate cache), and the handlers each function calls once its request is
  accepted (``handlers``, ``payment_handlers``, ``webhook``).
- ``billing.records``: typed, frozen records parsed once from Firestore documents (tenant,
  customer, meter, plan, subscription, usage event); a broken document is a ``DataError``.
- ``billing.pricing``: the rules this product exists for, free of I/O: money in integer minor
  units, billing periods in the tenant's timezone, meter aggregation, usage routing, charge
  models, proration, tax, the invoice builder and invoice numbers.
- ``billing.runs``: the use cases, each composed from named steps and run through one run shell
  (``shell``: context, report, run record, lease, per-tenant loop): the billing pipeline
  (``pipeline``), the month close (``month_close``), anniversary billing (``anniversary``),
  ``dunning``, admin actions on one invoice (``admin_actions``) and payment status changes
  (``payments``).
- ``billing.store``: the Firestore layout of ``../shared/CONTRACT.md`` (reads, transactional
  writes, numbering, leases), the Google Cloud clients and the list of query shapes (``indexes``).
- ``billing.delivery``: what leaves the system: invoice PDFs (``pdf``, ``documents``), email
  (``mailer``), Stripe (``stripe_billing``) and the once-only delivery outbox (``outbox``).
- ``billing.errors`` (the exception family and its HTTP statuses) and ``billing.logs`` (one JSON
  object per line) serve every layer.

Names follow Stripe Billing and Lago (customer, plan, charge, meter, subscription, billing
period, invoice, line item, dunning).
"""
