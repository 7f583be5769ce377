# One Cloud Scheduler job per scheduled function. Each calls the function's URL with an OIDC
# token signed for the scheduler account, whose audience is that same URL (the function's
# AUTH_AUDIENCE). The attempt deadline is the function's timeout, capped at Cloud Scheduler's
# 30-minute maximum for HTTP targets, so it is never longer than the function may run.

resource "google_cloud_scheduler_job" "jobs" {
  for_each = local.scheduled_jobs

  project          = var.project_id
  region           = var.region
  name             = local.service_names[each.key]
  description      = "Calls ${each.key}: ${local.functions[each.key].description}"
  schedule         = each.value.schedule
  time_zone        = var.time_zone
  attempt_deadline = "${min(var.function_timeout_seconds[each.key], 1800)}s"

  retry_config {
    retry_count          = each.value.retry_count
    min_backoff_duration = "60s"
    max_backoff_duration = "900s"
    max_doublings        = 3
  }

  http_target {
    http_method = "POST"
    uri         = local.function_urls[each.key]
    body        = base64encode("{}")
    headers = {
      "Content-Type" = "application/json"
    }

    oidc_token {
      service_account_email = google_service_account.scheduler.email
      audience              = local.function_urls[each.key]
    }
  }

  depends_on = [google_cloud_run_service_iam_member.scheduler_invoker]
}
