# Provider, project facts and the names everything else is derived from.

provider "google" {
  project = var.project_id
  region  = var.region
}

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  # The HTTP functions (the contract's five, then the usage fold and current_usage of issue 13):
  # functions/<key>/main.py with entry point <key>.
  # Cloud Run service names cannot hold underscores, so each is deployed as the key with
  # hyphens (monthly_billing -> monthly-billing); the entry point keeps the contract's name.
  functions = {
    monthly_billing = {
      description = "Month close: invoices every calendar subscription for the previous month."
    }
    generate_invoices = {
      description = "Anniversary billing and finalization of drafts past their grace period."
    }
    dunning = {
      description = "Reminders and suspension for open invoices past due."
    }
    billing_admin = {
      description = "One admin action on one invoice (mark paid, void, resend, render PDF)."
    }
    stripe_webhook = {
      description = "Stripe events; authenticated by the Stripe signature, not by IAM."
    }
    billing_console = {
      description = "The finance console (HTML), behind IAP (console.tf)."
    }
    aggregate_usage = {
      description = "Hourly usage fold: new usage events into per-period accumulators (issue 13)."
    }
    current_usage = {
      description = "The open period's usage of a customer, priced by the billing engine."
    }
    billing_worker = {
      description = "Executes one fan-out task (Cloud Tasks) or the sweeper (Scheduler); invoked by the tasks account only."
    }
  }

  # Functions Cloud Scheduler calls, with their schedule and retry policy. Every run is
  # idempotent (at most one invoice per subscription and period), so a retry is safe.
  scheduled_jobs = {
    monthly_billing = {
      schedule    = var.monthly_billing_schedule
      retry_count = 5
    }
    generate_invoices = {
      schedule    = var.generate_invoices_schedule
      retry_count = 2
    }
    dunning = {
      schedule    = var.dunning_schedule
      retry_count = 3
    }
    aggregate_usage = {
      schedule    = var.aggregate_usage_schedule
      retry_count = 2
    }
  }

  # Functions admins may call by hand (run.invoker for the operator account,
  # var.admin_members and var.tenant_admin_members): everything but the Stripe webhook, which
  # only Stripe calls.
  # The console is reached through IAP, not run.invoker (console.tf); only the tasks account
  # invokes billing_worker (tasks.tf).
  admin_functions = toset([for name in keys(local.functions) : name if !contains(["stripe_webhook", "billing_console", "billing_worker"], name)])

  service_names = { for name in keys(local.functions) : name => replace(name, "_", "-") }

  # The audience cycle: a function's URL is known only once it exists, but its own
  # AUTH_AUDIENCE and the scheduler's OIDC audience are inputs. Cloud Run gives every service a
  # deterministic URL, https://<service>-<project number>.<region>.run.app, computable before
  # creation from the project number. That string is the function's AUTH_AUDIENCE, the scheduler
  # job's target URI and OIDC audience, and the `function_urls` output admins call.
  function_urls = {
    for name in keys(local.functions) :
    name => "https://${local.service_names[name]}-${data.google_project.this.number}.${var.region}.run.app"
  }

  # Emails the functions accept as platform principals besides the scheduler's: the operator
  # account admins impersonate, and var.admin_members (validated in variables.tf to be users or
  # accounts). Never var.tenant_admin_members: tenant admins are read from Firestore
  # (tenants/{t}.admins) and may act only on their own tenant.
  admin_emails = concat(
    [google_service_account.operator.email],
    [for member in var.admin_members : split(":", member)[1]],
  )

  # AUTH_ALLOWED_PRINCIPALS per function: the scheduler account only where it calls.
  allowed_principals = {
    for name in keys(local.functions) :
    name => join(",", concat(
      # The console's account dry-runs the scheduled functions (console.tf).
      contains(keys(local.scheduled_jobs), name) ? [google_service_account.scheduler.email, google_service_account.console.email] : [],
      name == "billing_worker" ? [google_service_account.tasks.email] : local.admin_emails,
    ))
  }

  # The accounts the functions run as (access.tf names them by key).
  account_emails = {
    runtime = google_service_account.runtime.email
    webhook = google_service_account.webhook.email
    console = google_service_account.console.email
  }
  account_members = {
    runtime = google_service_account.runtime.member
    webhook = google_service_account.webhook.member
    console = google_service_account.console.member
  }

  # Secret Manager secret id for each secret environment variable (values added with gcloud);
  # which function mounts which is local.function_secrets (access.tf).
  secrets = {
    STRIPE_API_KEY        = "stripe-api-key"
    STRIPE_WEBHOOK_SECRET = "stripe-webhook-secret"
    SMTP_PASSWORD         = "smtp-password"
    CONSOLE_SECRET_KEY    = "console-secret-key"
  }

  invoices_bucket_name = coalesce(var.invoices_bucket_name, "${var.project_id}-invoices")
  source_bucket_name   = coalesce(var.source_bucket_name, "${var.project_id}-function-source")

  build_dir = startswith(var.build_dir, "/") ? var.build_dir : "${path.module}/${var.build_dir}"
}
