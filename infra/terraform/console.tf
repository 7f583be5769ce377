# billing_console: the finance console (issue 12), a function like the others (local.functions,
# functions.tf) with its own account, reachable only through IAP.
#
# - IAP is enabled on the function's Cloud Run service (IAP for Cloud Run, no load balancer):
#   every request is authenticated by Google and carries X-Goog-IAP-JWT-Assertion, which the
#   console verifies (ES256, audience IAP_AUDIENCE). Only var.console_iap_members may pass
#   (roles/iap.httpsResourceAccessor on the service); the console then authorizes each email
#   itself (platform principals, or tenants/{t}.admins for their tenant only).
# - Cloud Run IAM admits only IAP's service agent (run.invoker), so the service cannot be called
#   around IAP.
# - "Run now" is Cloud Scheduler's RunJob on the jobs of scheduler.tf: the console's account
#   holds roles/cloudscheduler.jobRunner, restricted by an IAM condition to exactly those jobs
#   (Cloud Scheduler grants roles only at project level; the condition names the jobs).
#   "Dry run" calls the scheduled functions themselves: run.invoker on those three only, and
#   the account is one of their AUTH_ALLOWED_PRINCIPALS (main.tf).

locals {
  console_service = local.service_names["billing_console"]

  # IAP's service agent, which calls the service once IAP has let a user through.
  iap_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-iap.iam.gserviceaccount.com"

  # IAP's audience for IAP on Cloud Run: /projects/NUMBER/locations/REGION/services/SERVICE.
  console_iap_audience = coalesce(
    var.console_iap_audience,
    "/projects/${data.google_project.this.number}/locations/${var.region}/services/${local.console_service}",
  )

  console_job_names = {
    for name in keys(local.scheduled_jobs) :
    name => "projects/${var.project_id}/locations/${var.region}/jobs/${local.service_names[name]}"
  }

  # The console's own environment, merged into local.function_env (functions.tf).
  console_env = {
    IAP_AUDIENCE           = local.console_iap_audience
    CONSOLE_RUN_MODE       = "scheduler"
    CONSOLE_SCHEDULER_JOBS = join(",", [for name, job in local.console_job_names : "${name}=${job}"])
    CONSOLE_FUNCTION_URLS  = join(",", [for name in keys(local.scheduled_jobs) : "${name}=${local.function_urls[name]}"])
    CONSOLE_URL            = local.function_urls["billing_console"]
  }
}

resource "google_service_account" "console" {
  project      = var.project_id
  account_id   = "billing-console"
  display_name = "Billing console"
  description  = "Runs billing_console: Firestore, the invoices bucket, the admin actions' secrets, RunJob on the billing jobs, dry runs of the scheduled functions."
}

# The console performs every billing_admin action in-process (the same library code), so it
# needs what billing_admin needs: Firestore, the invoices bucket (render_pdf), logs.
resource "google_project_iam_member" "console_datastore_user" {
  project = var.project_id
  role    = "roles/datastore.user"
  member  = google_service_account.console.member
}

resource "google_project_iam_member" "console_log_writer" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = google_service_account.console.member
}

resource "google_storage_bucket_iam_member" "console_invoices_object_admin" {
  bucket = google_storage_bucket.invoices.name
  role   = "roles/storage.objectAdmin"
  member = google_service_account.console.member
}

# "Run now": RunJob on the billing jobs only.
resource "google_project_iam_member" "console_job_runner" {
  project = var.project_id
  role    = "roles/cloudscheduler.jobRunner"
  member  = google_service_account.console.member

  condition {
    title       = "billing-jobs-only"
    description = "RunJob on the scheduled billing functions' jobs, nothing else."
    expression  = join(" || ", [for job in values(local.console_job_names) : "resource.name == \"${job}\""])
  }
}

# "Dry run": the console calls the scheduled functions with its own ID token.
resource "google_cloud_run_service_iam_member" "console_dry_run_invoker" {
  for_each = local.scheduled_jobs

  project  = var.project_id
  location = var.region
  service  = google_cloudfunctions2_function.functions[each.key].name
  role     = "roles/run.invoker"
  member   = google_service_account.console.member
}

# IAP in front of the console's service. The service belongs to the function, so IAP is turned
# on with gcloud after each deployment of it (IAP for Cloud Run: `gcloud run services update
# --iap`), and the IAP service agent is its only invoker.
resource "google_project_service" "iap" {
  project            = var.project_id
  service            = "iap.googleapis.com"
  disable_on_destroy = false
}

resource "google_cloud_run_service_iam_member" "console_iap_invoker" {
  project  = var.project_id
  location = var.region
  service  = google_cloudfunctions2_function.functions["billing_console"].name
  role     = "roles/run.invoker"
  member   = local.iap_service_agent

  depends_on = [google_project_service.iap]
}

resource "terraform_data" "console_iap_enabled" {
  triggers_replace = [google_cloudfunctions2_function.functions["billing_console"].service_config[0].service]

  provisioner "local-exec" {
    command = "gcloud run services update ${local.console_service} --project ${var.project_id} --region ${var.region} --iap --quiet"
  }
}

resource "google_iap_web_cloud_run_service_iam_member" "console_users" {
  for_each = toset(var.console_iap_members)

  project                = var.project_id
  location               = var.region
  cloud_run_service_name = google_cloudfunctions2_function.functions["billing_console"].name
  role                   = "roles/iap.httpsResourceAccessor"
  member                 = each.value

  lifecycle {
    # Behind the variable's validation: the console never gets a public member.
    precondition {
      condition     = !contains(local.public_members, each.value)
      error_message = "The console must not be public."
    }
  }

  depends_on = [terraform_data.console_iap_enabled]
}
