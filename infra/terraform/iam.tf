# Service accounts and every role they hold. Nothing here is project-wide beyond the runtime
# and webhook accounts' Firestore and log-writing roles and the build account's log writing.

# --- Runtime: the identity the billing functions run as -----------------------------------

resource "google_service_account" "runtime" {
  project      = var.project_id
  account_id   = "billing-runtime"
  display_name = "Billing functions runtime"
  description  = "Runs monthly_billing, generate_invoices, dunning, billing_admin: Firestore, the invoices bucket, the Stripe API key and SMTP password, logs."
}

# Firestore has no finer grant than the project (database-level IAM conditions aside).
resource "google_project_iam_member" "runtime_datastore_user" {
  project = var.project_id
  role    = "roles/datastore.user"
  member  = google_service_account.runtime.member
}

resource "google_project_iam_member" "runtime_log_writer" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = google_service_account.runtime.member
}

resource "google_storage_bucket_iam_member" "runtime_invoices_object_admin" {
  bucket = google_storage_bucket.invoices.name
  role   = "roles/storage.objectAdmin"
  member = google_service_account.runtime.member
}

# --- Webhook: the identity the public stripe_webhook runs as ------------------------------
# Anyone on the internet can reach the webhook, so it runs apart: Firestore (to record payments
# and reactivate customers), logs, and its own two secrets; nothing on the invoices bucket and
# no Stripe API key.

resource "google_service_account" "webhook" {
  project      = var.project_id
  account_id   = "billing-webhook"
  display_name = "Billing Stripe webhook"
  description  = "Runs stripe_webhook, the only public function: Firestore, the webhook signing secret and SMTP password, logs. Nothing on the invoices bucket."
}

resource "google_project_iam_member" "webhook_datastore_user" {
  project = var.project_id
  role    = "roles/datastore.user"
  member  = google_service_account.webhook.member
}

resource "google_project_iam_member" "webhook_log_writer" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = google_service_account.webhook.member
}

# --- Secrets: each account reads only the secrets its functions mount (access.tf) -----------

resource "google_secret_manager_secret_iam_member" "secret_accessor" {
  for_each = local.secret_access

  project   = var.project_id
  secret_id = google_secret_manager_secret.secrets[each.value.env].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = local.account_members[each.value.account]
}

# The runtime account's grants were keyed by secret alone; they keep their bindings. Its grant
# on the webhook secret is destroyed.
moved {
  from = google_secret_manager_secret_iam_member.runtime_secret_accessor["STRIPE_API_KEY"]
  to   = google_secret_manager_secret_iam_member.secret_accessor["runtime STRIPE_API_KEY"]
}

moved {
  from = google_secret_manager_secret_iam_member.runtime_secret_accessor["SMTP_PASSWORD"]
  to   = google_secret_manager_secret_iam_member.secret_accessor["runtime SMTP_PASSWORD"]
}

# --- Scheduler: the identity Cloud Scheduler signs its OIDC tokens as -----------------------

resource "google_service_account" "scheduler" {
  project      = var.project_id
  account_id   = "billing-scheduler"
  display_name = "Billing scheduler"
  description  = "Cloud Scheduler's OIDC identity: may invoke the scheduled billing functions, nothing else."
}

resource "google_cloud_run_service_iam_member" "scheduler_invoker" {
  for_each = local.scheduled_jobs

  project  = var.project_id
  location = var.region
  service  = google_cloudfunctions2_function.functions[each.key].name
  role     = "roles/run.invoker"
  member   = google_service_account.scheduler.member
}

# --- Build: the identity Cloud Build builds the function images as -------------------------
# A dedicated account, because the default build account differs between projects (legacy
# Cloud Build account or the Compute default account) and may lack permissions by org policy.
# It holds what Google lists for a custom build account of functions ("Custom service account
# for Cloud Build": Logs Writer, Artifact Registry Writer, read access to the source), each on
# the one resource it needs rather than roles/run.builder on the whole project: it reads the
# source zips and writes the images, nothing else in the project.

resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = "billing-build"
  display_name = "Billing functions build"
  description  = "Builds the billing functions' container images from their source zips."
}

resource "google_storage_bucket_iam_member" "build_source_viewer" {
  bucket = google_storage_bucket.source.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.build.member
}

resource "google_artifact_registry_repository_iam_member" "build_writer" {
  project    = var.project_id
  location   = google_artifact_registry_repository.functions.location
  repository = google_artifact_registry_repository.functions.name
  role       = "roles/artifactregistry.writer"
  member     = google_service_account.build.member
}

# Build logs. Cloud Logging has no finer grant than the project.
resource "google_project_iam_member" "build_log_writer" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = google_service_account.build.member
}

# --- Operator: the identity people call the functions as, by impersonation ----------------
# The functions check the token's audience, and a user account cannot mint an ID token for an
# arbitrary audience: admins impersonate this account (gcloud auth print-identity-token
# --impersonate-service-account) to trigger runs by hand and to call billing_admin.

resource "google_service_account" "operator" {
  project      = var.project_id
  account_id   = "billing-operator"
  display_name = "Billing operator"
  description  = "Impersonated by admins to call the billing functions by hand."
}

resource "google_service_account_iam_member" "operator_token_creator" {
  for_each = toset(var.operator_members)

  service_account_id = google_service_account.operator.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = each.value

  lifecycle {
    # Behind the variable's validation: whoever may impersonate the operator calls every private
    # function, so no public member, whatever feeds this for_each later.
    precondition {
      condition     = !contains(local.public_members, each.value)
      error_message = "operator_members must name users, groups or service accounts, never a public principal (local.public_members)."
    }
  }
}

# --- Callers -------------------------------------------------------------------------------

resource "google_cloud_run_service_iam_member" "operator_invoker" {
  for_each = local.admin_functions

  project  = var.project_id
  location = var.region
  service  = google_cloudfunctions2_function.functions[each.key].name
  role     = "roles/run.invoker"
  member   = google_service_account.operator.member
}

resource "google_cloud_run_service_iam_member" "admin_invoker" {
  for_each = {
    for pair in setproduct(sort(tolist(local.admin_functions)), var.admin_members) :
    "${pair[0]} ${pair[1]}" => { function = pair[0], member = pair[1] }
  }

  project  = var.project_id
  location = var.region
  service  = google_cloudfunctions2_function.functions[each.value.function].name
  role     = "roles/run.invoker"
  member   = each.value.member

  lifecycle {
    # Behind the variable's validation: a private function never gets a public member.
    precondition {
      condition     = !contains(local.public_members, each.value.member)
      error_message = "A private function's invoker must be a named identity, never a public principal (local.public_members)."
    }
  }
}

# Tenant admins: Cloud Run lets them reach the private functions, and each function scopes them
# to their own tenants (tenants/{t}.admins and X-Tenant-ID; CONTRACT.md, "Tenants: who may act
# on one"). IAM cannot express that scope: this grant is only the door. Members already in
# admin_members keep their admin grant instead (two resources must not manage one binding).
resource "google_cloud_run_service_iam_member" "tenant_admin_invoker" {
  for_each = {
    for pair in setproduct(
      sort(tolist(local.admin_functions)),
      sort(tolist(setsubtract(toset(var.tenant_admin_members), toset(var.admin_members)))),
    ) :
    "${pair[0]} ${pair[1]}" => { function = pair[0], member = pair[1] }
  }

  project  = var.project_id
  location = var.region
  service  = google_cloudfunctions2_function.functions[each.value.function].name
  role     = "roles/run.invoker"
  member   = each.value.member

  lifecycle {
    # Behind the variable's validation: a private function never gets a public member.
    precondition {
      condition     = !contains(local.public_members, each.value.member)
      error_message = "A private function's invoker must be a named identity, never a public principal (local.public_members)."
    }
  }
}

# The only public member in this configuration (tests/test_infra.py and the custom checkov
# policy in policies/ fail on any other).
resource "google_cloud_run_service_iam_member" "stripe_webhook_public" {
  #checkov:skip=CKV_GCP_102:Stripe cannot present a Google identity; the function authenticates every event by its Stripe-Signature (HMAC with STRIPE_WEBHOOK_SECRET) and rejects unsigned or stale ones.
  #checkov:skip=CKV2_BILLING_1:The one public function by design: Stripe cannot present a Google identity, and the Stripe-Signature (HMAC with STRIPE_WEBHOOK_SECRET) authenticates every event.
  project  = var.project_id
  location = var.region
  service  = google_cloudfunctions2_function.functions["stripe_webhook"].name
  role     = "roles/run.invoker"
  member   = "allUsers"
}
