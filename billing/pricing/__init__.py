"""Pricing rules, free of I/O: money, periods, aggregation, routing, charges, proration, tax.

Every amount is an integer in the currency's minor unit or a ``Decimal``; every datetime is
aware; periods are computed in the tenant's IANA timezone. ``invoicing.build_invoice`` composes
the rest into one invoice for one subscription and period.
"""
