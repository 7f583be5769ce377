# generate_invoices and dunning fan out on the month close's Cloud Tasks machinery (tasks.tf)
# once a tenant's work reaches FANOUT_MIN_ITEMS items (billing.runs.fanout.anniversary and
# billing.runs.fanout.dunning). They run as the shared runtime account, which already holds
# roles/cloudtasks.enqueuer on both queues and roles/iam.serviceAccountUser on the tasks account
# (tasks.tf), so they need only the TASKS_* environment and the threshold.

variable "fanout_min_items" {
  type        = number
  description = "FANOUT_MIN_ITEMS: from this many items (generate_invoices: due anniversary subscriptions + due drafts; dunning: overdue invoices) a tenant's run fans out on Cloud Tasks instead of running in its request. 1000 invoices are ~7,000 Stripe calls (~70 s live, ~5 min at the test limit of 25 req/s): an inline run below it ends well inside the Scheduler attempt deadline of 30 minutes."
  default     = 1000

  validation {
    condition     = var.fanout_min_items >= 1 && floor(var.fanout_min_items) == var.fanout_min_items
    error_message = "fanout_min_items is a whole number of at least 1."
  }
}

locals {
  # Functions that enqueue or execute tasks: they get local.tasks_env (functions.tf).
  tasks_functions = ["monthly_billing", "generate_invoices", "dunning", "billing_worker"]

  # The threshold, for the functions that decide between inline and fanned out.
  fanout_threshold_env = {
    FANOUT_MIN_ITEMS = tostring(var.fanout_min_items)
  }
}
