"""Tax per invoice line, exclusive or inclusive, rounded once per line (ROUND_HALF_UP).

Units: line amounts and taxes are ``int`` minor units of the tenant's currency; rates are
``Decimal`` percents (``Decimal("20")`` = 20 %).

The rate comes from the tenant's ``tax_rates`` by the customer's ``address.country`` (ISO 3166
alpha-2, upper-cased by ``Customer.parse``); a country not listed, a customer without a country
and a ``tax_exempt`` customer have rate 0 (``CONTRACT.md``).

Modes (``CONTRACT.md``: "Tax is computed per line, rounded the same way, then summed"):

- Exclusive (default): the line's amount is net; ``tax = round(amount x rate / 100)`` and the
  invoice's ``total = subtotal + tax``. 20 % of 1234 = 246.8 -> 247.
- Inclusive (``tenant.tax_inclusive``): the amount already contains the tax, which is backed out
  of each line: ``tax = round(amount x rate / (100 + rate))``, and the net is ``amount - tax``, so
  net + tax is exactly the price charged and ``total == subtotal`` (Stripe's inclusive tax
  behaviour: the subtotal includes the tax, the tax is shown as "of which"; the PDF prints
  "Total (incl. tax)"). 1200 at 20 %: 200 (net 1000); 1000 at 20 %: 166.67 -> 167 (net 833);
  3 at 20 %: 0.5 -> 1 (the tax is what is rounded half up, not the net).

Summing rounded per-line taxes can differ by a minor unit or two from taxing the invoice total;
that is the contract's rule (the same as Stripe's per-line tax amounts).

Errors: none; rates are validated (0-100) by ``Tenant.parse``.
"""

from __future__ import annotations

from decimal import Decimal, localcontext

from billing.pricing.money import round_minor
from billing.records import Customer, Tenant

_HUNDRED = Decimal(100)


def tax_rate_for(tenant: Tenant, customer: Customer) -> Decimal:
    """Return the customer's tax rate in percent (``Decimal("20")``), 0 when exempt or unlisted."""
    if customer.tax_exempt or customer.country is None:
        return Decimal(0)
    return tenant.tax_rates.get(customer.country, Decimal(0))


def line_tax(amount: int, rate_percent: Decimal, *, inclusive: bool) -> int:
    """Return the tax in minor units carried by a line of ``amount`` minor units at ``rate_percent``.

    Exclusive: ``round(amount x rate / 100)``. Inclusive: ``round(amount x rate / (100 + rate))``,
    backed out of the amount (the line's net is ``amount - tax``).
    """
    if rate_percent == 0 or amount == 0:
        return 0
    with localcontext(prec=60):
        divisor = _HUNDRED + rate_percent if inclusive else _HUNDRED
        return round_minor(Decimal(amount) * rate_percent / divisor)
