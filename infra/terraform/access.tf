# Which secrets each function reads and which account it runs as: plain data, self-contained
# (no resource, no other file), so tests/test_infra.py evaluates it with `terraform console`.
# functions.tf mounts local.function_secrets[name] on function `name`; iam.tf grants each account
# secretAccessor on exactly the secrets of the functions it runs (local.secret_access), per
# secret, never project-wide.

locals {
  # Secret environment variables each function's code reads, from the code itself (grep
  # STRIPE_API_KEY, SMTP_PASSWORD, STRIPE_WEBHOOK_SECRET under billing/):
  # - STRIPE_API_KEY (billing.delivery.stripe_billing.StripeSettings): monthly_billing and
  #   generate_invoices push finalized invoices (delivery.deliver_finalized_invoices); dunning
  #   marks them uncollectible and retries pushes (dunning, delivery.sweep); billing_admin syncs
  #   paid/void/uncollectible (admin_actions.sync_status). The webhook never calls Stripe: it
  #   verifies the Stripe-Signature locally.
  # - SMTP_PASSWORD (billing.delivery.mailer.SmtpSettings): every function sends email, the webhook too (the
  #   reactivation notice when a payment clears a suspended customer, webhook.process_event).
  # - STRIPE_WEBHOOK_SECRET (billing.http.webhook.webhook_secret): the webhook only.
  # - CONSOLE_SECRET_KEY (billing.console.settings): the console's session and CSRF key; the
  #   console also runs the admin actions (Stripe, email) in-process.
  function_secrets = {
    monthly_billing   = ["STRIPE_API_KEY", "SMTP_PASSWORD"]
    generate_invoices = ["STRIPE_API_KEY", "SMTP_PASSWORD"]
    dunning           = ["STRIPE_API_KEY", "SMTP_PASSWORD"]
    billing_admin     = ["STRIPE_API_KEY", "SMTP_PASSWORD"]
    stripe_webhook    = ["STRIPE_WEBHOOK_SECRET", "SMTP_PASSWORD"]
    billing_console   = ["STRIPE_API_KEY", "SMTP_PASSWORD", "CONSOLE_SECRET_KEY"]
    # The usage fold and current_usage read and write Firestore only.
    aggregate_usage = []
    current_usage   = []
    billing_worker  = ["STRIPE_API_KEY", "SMTP_PASSWORD"]
  }

  # The service account each function runs as (google_service_account.<value>). The public
  # webhook has its own: reachable by anyone, it holds Firestore, its two secrets and nothing else
  # (no invoices bucket, no Stripe API key).
  function_accounts = {
    monthly_billing   = "runtime"
    generate_invoices = "runtime"
    dunning           = "runtime"
    billing_admin     = "runtime"
    stripe_webhook    = "webhook"
    billing_console   = "console"
    aggregate_usage   = "runtime"
    current_usage     = "runtime"
    billing_worker    = "runtime"
  }

  # Every (account, secret) pair some function needs, keyed "<account> <ENV_NAME>".
  secret_access = {
    for pair in distinct(flatten([
      for name, envs in local.function_secrets : [
        for env in envs : { account = local.function_accounts[name], env = env }
      ]
    ])) : "${pair.account} ${pair.env}" => pair
  }

  # IAM members that would make a function public. Only stripe_webhook's invoker may be one
  # (iam.tf); every member list that reaches a private function is checked against these.
  public_members = ["allUsers", "allAuthenticatedUsers"]
}
