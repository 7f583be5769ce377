"""What leaves the system: invoice PDFs, emails and Stripe invoices, each delivered once.

``pdf`` renders an invoice with fpdf2; ``documents`` stores it in Cloud Storage; ``mailer``
sends email over SMTP; ``stripe_billing`` mirrors invoices in Stripe with idempotency keys from
our ids; ``outbox`` claims each delivery before it happens so that retries never send twice.
"""
