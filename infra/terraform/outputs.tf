output "function_urls" {
  description = "URL of each function, keyed by contract name: the one to call (admin tooling, Stripe's webhook endpoint) and the audience its tokens must carry."
  value       = local.function_urls
}

output "function_service_uris" {
  description = "The URI Cloud Run reports for each function's service (an alias of function_urls)."
  value       = { for name, fn in google_cloudfunctions2_function.functions : name => fn.service_config[0].uri }
}

output "function_names" {
  description = "Deployed name of each function (and of its Cloud Run service), keyed by contract name."
  value       = local.service_names
}

output "invoices_bucket" {
  description = "Bucket holding the invoice PDFs (INVOICES_BUCKET)."
  value       = google_storage_bucket.invoices.name
}

output "source_bucket" {
  description = "Bucket holding the function source zips."
  value       = google_storage_bucket.source.name
}

output "runtime_service_account" {
  description = "Email of the account the billing functions (all but stripe_webhook) run as."
  value       = google_service_account.runtime.email
}

output "webhook_service_account" {
  description = "Email of the account stripe_webhook runs as (Firestore and its two secrets only)."
  value       = google_service_account.webhook.email
}

output "scheduler_service_account" {
  description = "Email of the account Cloud Scheduler calls the functions as."
  value       = google_service_account.scheduler.email
}

output "operator_service_account" {
  description = "Email of the account admins impersonate to call the functions by hand."
  value       = google_service_account.operator.email
}

output "build_service_account" {
  description = "Email of the account Cloud Build builds the functions as."
  value       = google_service_account.build.email
}

output "artifact_repository" {
  description = "Artifact Registry repository the function images are built into."
  value       = google_artifact_registry_repository.functions.id
}

output "scheduler_jobs" {
  description = "Cloud Scheduler job id of each scheduled function."
  value       = { for name, job in google_cloud_scheduler_job.jobs : name => job.id }
}

output "secret_ids" {
  description = "Secret Manager secret id of each secret environment variable; add their versions with gcloud."
  value       = local.secrets
}

output "function_secrets" {
  description = "Secret environment variables mounted in each function, keyed by contract name."
  value       = local.function_secrets
}

output "console_url" {
  description = "URL of the finance console (billing_console), behind IAP."
  value       = local.function_urls["billing_console"]
}

output "console_iap_audience" {
  description = "The IAP audience the console checks (IAP_AUDIENCE)."
  value       = local.console_iap_audience
}

output "tasks_queues" {
  description = "Cloud Tasks queue ids of the fan-out (work, delivery)."
  value       = local.tasks_queues
}

output "tasks_service_account" {
  description = "Email of the account whose OIDC tokens the fan-out tasks and the sweeper carry."
  value       = google_service_account.tasks.email
}
