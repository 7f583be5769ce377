# Fan-out on Cloud Tasks (issue 11; contract "Fan-out"). A fanned-out month close enqueues HTTP
# tasks to billing_worker on two queues, each task carrying an OIDC token for the tasks account
# with the worker's URL as audience. The functions (runtime account) may enqueue on both queues
# (roles/cloudtasks.enqueuer, per queue) and mint tokens as the tasks account
# (roles/iam.serviceAccountUser on that account only, which Cloud Tasks requires of the
# enqueuer for oidc_token). Only the tasks account may invoke billing_worker (run.invoker on that
# service alone). A Scheduler job calls the worker's sweeper every 15 minutes as the tasks account.

resource "google_service_account" "tasks" {
  project      = var.project_id
  account_id   = "billing-tasks"
  display_name = "Billing fan-out tasks (OIDC identity of Cloud Tasks and the sweeper)"
}

resource "google_cloud_tasks_queue" "work" {
  project  = var.project_id
  location = var.region
  name     = var.tasks_queue_work

  rate_limits {
    max_dispatches_per_second = var.tasks_work_rate.dispatches_per_second
    max_concurrent_dispatches = var.tasks_work_rate.concurrent_dispatches
  }

  retry_config {
    max_attempts       = var.tasks_retry.max_attempts
    max_retry_duration = "${var.tasks_retry.max_retry_seconds}s"
    min_backoff        = "${var.tasks_retry.min_backoff_seconds}s"
    max_backoff        = "${var.tasks_retry.max_backoff_seconds}s"
    max_doublings      = var.tasks_retry.max_doublings
  }

  stackdriver_logging_config {
    sampling_ratio = 1.0
  }

  lifecycle {
    # Cloud Tasks must give up on an attempt (and retry it) before the worker's request times
    # out, or a retry could start while the first attempt still runs past its claim.
    precondition {
      condition     = var.tasks_dispatch_deadline_seconds < var.function_timeout_seconds["billing_worker"]
      error_message = "tasks_dispatch_deadline_seconds must be below function_timeout_seconds[\"billing_worker\"]."
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_cloud_tasks_queue" "delivery" {
  project  = var.project_id
  location = var.region
  name     = var.tasks_queue_delivery

  # About 7 Stripe requests per invoice (issue 11): dispatches/s x invoices per task x 7 must stay
  # under the Stripe account's limit (variables.tf, tasks_delivery_rate).
  rate_limits {
    max_dispatches_per_second = var.tasks_delivery_rate.dispatches_per_second
    max_concurrent_dispatches = var.tasks_delivery_rate.concurrent_dispatches
  }

  retry_config {
    max_attempts       = var.tasks_retry.max_attempts
    max_retry_duration = "${var.tasks_retry.max_retry_seconds}s"
    min_backoff        = "${var.tasks_retry.min_backoff_seconds}s"
    max_backoff        = "${var.tasks_retry.max_backoff_seconds}s"
    max_doublings      = var.tasks_retry.max_doublings
  }

  stackdriver_logging_config {
    sampling_ratio = 1.0
  }

  depends_on = [google_project_service.apis]
}

locals {
  tasks_queues = {
    work     = google_cloud_tasks_queue.work.name
    delivery = google_cloud_tasks_queue.delivery.name
  }

  # Environment of the functions that fan out or execute tasks (merged in functions.tf).
  tasks_env = {
    TASKS_MODE                      = "cloud_tasks"
    TASKS_PROJECT                   = var.project_id
    TASKS_LOCATION                  = var.region
    TASKS_QUEUE_WORK                = google_cloud_tasks_queue.work.name
    TASKS_QUEUE_DELIVERY            = google_cloud_tasks_queue.delivery.name
    TASKS_WORKER_URL                = local.function_urls["billing_worker"]
    TASKS_SERVICE_ACCOUNT           = google_service_account.tasks.email
    TASKS_DISPATCH_DEADLINE_SECONDS = tostring(var.tasks_dispatch_deadline_seconds)
    CHUNK_SIZE                      = tostring(var.tasks_chunk_size)
  }
}

resource "google_cloud_tasks_queue_iam_member" "runtime_enqueuer" {
  for_each = local.tasks_queues

  project  = var.project_id
  location = var.region
  name     = each.value
  role     = "roles/cloudtasks.enqueuer"
  member   = google_service_account.runtime.member
}

resource "google_service_account_iam_member" "runtime_acts_as_tasks" {
  service_account_id = google_service_account.tasks.name
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.runtime.member
}

resource "google_cloud_run_service_iam_member" "tasks_invoker" {
  project  = var.project_id
  location = var.region
  service  = google_cloudfunctions2_function.functions["billing_worker"].service_config[0].service
  role     = "roles/run.invoker"
  member   = google_service_account.tasks.member
}

resource "google_cloud_scheduler_job" "fanout_sweeper" {
  project          = var.project_id
  region           = var.region
  name             = "billing-fanout-sweeper"
  description      = "Every 15 minutes: billing_worker re-enqueues stalled fan-out work and fails runs past their budget."
  schedule         = "*/15 * * * *"
  time_zone        = var.time_zone
  attempt_deadline = "300s"

  retry_config {
    retry_count          = 1
    min_backoff_duration = "60s"
    max_backoff_duration = "300s"
  }

  http_target {
    http_method = "POST"
    uri         = local.function_urls["billing_worker"]
    body        = base64encode(jsonencode({ stage = "sweep" }))
    headers = {
      "Content-Type" = "application/json"
    }

    oidc_token {
      service_account_email = google_service_account.tasks.email
      audience              = local.function_urls["billing_worker"]
    }
  }

  depends_on = [google_cloud_run_service_iam_member.tasks_invoker]
}
