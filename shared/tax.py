"""Tax per invoice line, exclusive or inclusive, rounded once per line (ROUND_HALF_UP).

The rate comes from the tenant's ``tax_rates`` by the customer's ``address.country`` (ISO 3166
alpha-2); a country not listed has rate 0, and a ``tax_exempt`` customer always has 0.

- Exclusive (default): ``tax = round(amount x rate / 100)``; the line's amount is net.
- Inclusive (``tenant.tax_inclusive``): the amount already contains the tax, which is backed out:
  ``net = round(amount x 100 / (100 + rate))`` and ``tax = amount - net``, so net + tax is
  exactly the price charged (the way Stripe and EU VAT invoices show inclusive prices).
"""

from __future__ import annotations

from decimal import Decimal, localcontext

from shared.model import Customer, Tenant
from shared.money import round_minor

_HUNDRED = Decimal(100)


def tax_rate_for(tenant: Tenant, customer: Customer) -> Decimal:
    """Return the customer's tax rate in percent (``Decimal("20")``), 0 when exempt or unlisted."""
    if customer.tax_exempt or customer.country is None:
        return Decimal(0)
    return tenant.tax_rates.get(customer.country, Decimal(0))


def line_tax(amount: int, rate_percent: Decimal, *, inclusive: bool) -> int:
    """Return the tax in minor units carried by a line of ``amount`` minor units at ``rate_percent``."""
    if rate_percent == 0 or amount == 0:
        return 0
    with localcontext(prec=60):
        if inclusive:
            return amount - round_minor(Decimal(amount) * _HUNDRED / (_HUNDRED + rate_percent))
        return round_minor(Decimal(amount) * rate_percent / _HUNDRED)
