# The HTTP functions (2nd gen: a Cloud Run service each), built from the zips `make build`
# puts in build/. All are private behind Cloud Run IAM (AUTH_MODE=platform: the platform checks
# the token's signature, the function its issuer, expiry, audience and email), except that
# stripe_webhook's invoker is allUsers (see iam.tf). Each function mounts only the secrets its
# code reads and runs as the account access.tf names (the webhook as its own).
#
# Ingress is ALLOW_ALL on purpose: Stripe calls the webhook from the internet and admins call the
# others by hand from their machines; IAM, not the network, is the boundary.

locals {
  function_env = {
    for name in keys(local.functions) : name => merge(
      {
        GOOGLE_CLOUD_PROJECT    = var.project_id
        AUTH_MODE               = "platform"
        AUTH_AUDIENCE           = local.function_urls[name]
        AUTH_ALLOWED_PRINCIPALS = local.allowed_principals[name]
        SMTP_HOST               = var.smtp_host
        SMTP_PORT               = tostring(var.smtp_port)
        SMTP_USERNAME           = var.smtp_username
        SMTP_STARTTLS           = var.smtp_starttls ? "true" : "false"
        SMTP_FROM               = var.smtp_from
      },
      # The webhook has no access to the invoices bucket, nor needs its name.
      name == "stripe_webhook" ? {} : { INVOICES_BUCKET = google_storage_bucket.invoices.name },
      var.stripe_api_base == "" ? {} : { STRIPE_API_BASE = var.stripe_api_base },
      name == "billing_console" ? local.console_env : {},
      # Fan-out (tasks.tf): the functions that enqueue or execute tasks.
      contains(local.tasks_functions, name) ? local.tasks_env : {},
      contains(["generate_invoices", "dunning"], name) ? local.fanout_threshold_env : {},
    )
  }
}

resource "google_cloudfunctions2_function" "functions" {
  #checkov:skip=CKV_GCP_124:Ingress must admit the internet: Stripe calls stripe_webhook and admins trigger runs from their own machines. Cloud Run IAM (run.invoker) and the functions' token checks are the boundary, not the network.
  for_each = local.functions

  project     = var.project_id
  location    = var.region
  name        = local.service_names[each.key]
  description = each.value.description
  labels      = var.labels

  build_config {
    runtime           = "python311"
    entry_point       = each.key
    service_account   = google_service_account.build.id
    docker_repository = google_artifact_registry_repository.functions.id

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source[each.key].name
      }
    }
  }

  service_config {
    service_account_email            = local.account_emails[local.function_accounts[each.key]]
    available_memory                 = var.function_memory[each.key]
    timeout_seconds                  = var.function_timeout_seconds[each.key]
    min_instance_count               = var.function_min_instances[each.key]
    max_instance_count               = var.function_max_instances[each.key]
    max_instance_request_concurrency = 1
    ingress_settings                 = "ALLOW_ALL"
    all_traffic_on_latest_revision   = true
    environment_variables            = local.function_env[each.key]

    # Only the secrets this function's code reads (access.tf).
    dynamic "secret_environment_variables" {
      for_each = toset(local.function_secrets[each.key])
      content {
        key        = secret_environment_variables.value
        project_id = var.project_id
        secret     = google_secret_manager_secret.secrets[secret_environment_variables.value].secret_id
        version    = "latest"
      }
    }
  }

  depends_on = [
    google_project_service.apis,
    google_artifact_registry_repository_iam_member.build_writer,
    google_project_iam_member.build_log_writer,
    google_storage_bucket_iam_member.build_source_viewer,
    google_project_iam_member.runtime_datastore_user,
    google_project_iam_member.runtime_log_writer,
    google_project_iam_member.webhook_datastore_user,
    google_project_iam_member.webhook_log_writer,
    google_secret_manager_secret_iam_member.secret_accessor,
    google_storage_bucket_iam_member.runtime_invoices_object_admin,
  ]
}
