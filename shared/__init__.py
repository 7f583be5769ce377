"""The billing library every Cloud Function imports.

Modules, smallest first: ``errors`` (the exception family and its HTTP statuses), ``money``
(integer minor units, ISO 4217 exponents, rounding, formatting), ``periods`` (billing periods in a
tenant's IANA timezone), ``aggregation`` (meters over usage events), ``charges`` (charge models),
``tax``, ``invoicing`` (the invoice builder shared by every run), ``store`` (the Firestore layout of
``CONTRACT.md``), ``numbering``, ``pdf``, ``storage``, ``auth``, ``http`` and ``runs``.
"""
