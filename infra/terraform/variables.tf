variable "project_id" {
  type        = string
  description = "Google Cloud project id everything is deployed to."
}

variable "region" {
  type        = string
  description = "Region of the functions, the scheduler jobs and the Cloud Run services behind the functions (e.g. europe-west2)."
  default     = "europe-west2"
}

variable "firestore_location" {
  type        = string
  description = "Location of the Firestore (default) database: a region (europe-west2) or a multi-region (eur3, nam5). Cannot change once created."
  default     = "europe-west2"
}

variable "storage_location" {
  type        = string
  description = "Location of the invoices and function-source buckets (region or multi-region)."
  default     = "EUROPE-WEST2"
}

variable "invoices_bucket_name" {
  type        = string
  description = "Name of the bucket invoice PDFs are written to; null means \"<project_id>-invoices\"."
  default     = null
}

variable "source_bucket_name" {
  type        = string
  description = "Name of the bucket holding the function source zips; null means \"<project_id>-function-source\"."
  default     = null
}

variable "noncurrent_version_retention_days" {
  type        = number
  description = "Days an overwritten or deleted object version (invoice PDF, source zip) is kept before deletion."
  default     = 90

  validation {
    condition     = var.noncurrent_version_retention_days >= 1
    error_message = "noncurrent_version_retention_days must be at least 1."
  }
}

variable "build_dir" {
  type        = string
  description = "Folder holding the <function>.zip files made by `make build`; relative paths are relative to infra/terraform."
  default     = "../../build"
}

variable "time_zone" {
  type        = string
  description = "IANA time zone the scheduler job schedules are read in."
  default     = "Europe/London"
}

variable "monthly_billing_schedule" {
  type        = string
  description = "Cron schedule of the month close (monthly_billing), in time_zone: the 1st of the month, late enough that the previous month has ended in every tenant's timezone (UTC-12 reaches midnight at 12:00 UTC; 13:00 London is 12:00 or 13:00 UTC). Each tenant closes its previous month in its own timezone."
  default     = "0 13 1 * *"
}

variable "generate_invoices_schedule" {
  type        = string
  description = "Cron schedule of generate_invoices (anniversary billing, draft finalization), in time_zone."
  default     = "5 * * * *"
}

variable "dunning_schedule" {
  type        = string
  description = "Cron schedule of dunning, in time_zone."
  default     = "0 7 * * *"
}

variable "aggregate_usage_schedule" {
  type        = string
  description = "Cron schedule of aggregate_usage (the hourly usage fold), in time_zone. A run folds the events up to the last UTC hour that ended at least 10 minutes earlier (FOLD_GRACE), so a quarter past the hour folds the hour just ended."
  default     = "15 * * * *"
}

variable "admin_members" {
  type        = list(string)
  description = "Principals that call the functions with their own ID token, as IAM members (\"serviceAccount:ci@p.iam.gserviceaccount.com\", or \"user:alice@example.com\" for tokens minted with a matching audience): granted run.invoker on every function but stripe_webhook and listed in AUTH_ALLOWED_PRINCIPALS. People usually impersonate the operator account instead (operator_members). Groups are not accepted: the functions check the token's email."
  default     = []

  validation {
    condition     = alltrue([for m in var.admin_members : can(regex("^(user|serviceAccount):[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)+$", m))])
    error_message = "Each admin member must be \"user:EMAIL\" or \"serviceAccount:EMAIL\" (one address, no public principal, no domain)."
  }
}

variable "operator_members" {
  type        = list(string)
  description = "IAM members (user:, group:, serviceAccount:) who may impersonate the billing-operator service account, the identity admins call the functions as (roles/iam.serviceAccountTokenCreator on that account only)."
  default     = []

  validation {
    condition     = alltrue([for m in var.operator_members : can(regex("^(user|group|serviceAccount):[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)+$", m))])
    error_message = "Each operator member must be \"user:EMAIL\", \"group:EMAIL\" or \"serviceAccount:EMAIL\" (one address, no public principal, no domain)."
  }
}

variable "tenant_admin_members" {
  type        = list(string)
  description = "Tenant admins, the people of a customer's finance team (or a service account of theirs), as IAM members: \"user:EMAIL\", \"group:EMAIL\" or \"serviceAccount:EMAIL\". Granted roles/run.invoker on every function but stripe_webhook, which only lets them reach the functions: a function lets a caller act on tenant T only if the token's email is in tenants/T.admins in Firestore and the request carries X-Tenant-ID: T (403 tenant_required or tenant_not_allowed otherwise). They are not platform principals and never enter AUTH_ALLOWED_PRINCIPALS; the function checks the token's audience as for anyone (its URL). A member also in admin_members is granted once, as an admin. Public principals and domains are refused."
  default     = []

  validation {
    condition     = alltrue([for m in var.tenant_admin_members : can(regex("^(user|group|serviceAccount):[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)+$", m))])
    error_message = "Each tenant admin member must be \"user:EMAIL\", \"group:EMAIL\" or \"serviceAccount:EMAIL\" (one address, no public principal, no domain)."
  }
}

variable "function_memory" {
  type        = map(string)
  description = "Memory of each function (Cloud Run units: 256Mi, 512Mi, 1Gi...), keyed by function name; give all eight."
  default = {
    monthly_billing   = "1Gi"
    generate_invoices = "1Gi"
    dunning           = "512Mi"
    billing_admin     = "512Mi"
    stripe_webhook    = "256Mi"
    aggregate_usage   = "512Mi"
    current_usage     = "256Mi"
    billing_console   = "512Mi"
    billing_worker    = "1Gi"
  }

  validation {
    condition = alltrue([
      for f in ["monthly_billing", "generate_invoices", "dunning", "billing_admin", "stripe_webhook", "aggregate_usage", "current_usage", "billing_console", "billing_worker"] :
      contains(keys(var.function_memory), f)
    ])
    error_message = "function_memory must have an entry for each of the nine functions."
  }
}

variable "function_timeout_seconds" {
  type        = map(number)
  description = "Request timeout of each function in seconds (15 to 3600), keyed by function name; give all eight. A scheduler job's attempt deadline is min(timeout, 1800)."
  default = {
    monthly_billing   = 1800
    generate_invoices = 900
    dunning           = 900
    billing_admin     = 120
    stripe_webhook    = 60
    aggregate_usage   = 900
    current_usage     = 60
    billing_console   = 300
    billing_worker    = 1800
  }

  validation {
    condition = alltrue([
      for f in ["monthly_billing", "generate_invoices", "dunning", "billing_admin", "stripe_webhook", "aggregate_usage", "current_usage", "billing_console", "billing_worker"] :
      contains(keys(var.function_timeout_seconds), f)
    ])
    error_message = "function_timeout_seconds must have an entry for each of the nine functions."
  }

  validation {
    condition     = alltrue([for t in values(var.function_timeout_seconds) : t >= 15 && t <= 3600])
    error_message = "HTTP function timeouts must be between 15 and 3600 seconds."
  }
}

variable "function_min_instances" {
  type        = map(number)
  description = "Minimum warm instances of each function, keyed by function name; give all eight (0 scales to zero)."
  default = {
    monthly_billing   = 0
    generate_invoices = 0
    dunning           = 0
    billing_admin     = 0
    stripe_webhook    = 0
    aggregate_usage   = 0
    current_usage     = 0
    billing_console   = 0
    billing_worker    = 0
  }

  validation {
    condition = alltrue([
      for f in ["monthly_billing", "generate_invoices", "dunning", "billing_admin", "stripe_webhook", "aggregate_usage", "current_usage", "billing_console", "billing_worker"] :
      contains(keys(var.function_min_instances), f)
    ])
    error_message = "function_min_instances must have an entry for each of the nine functions."
  }
}

variable "function_max_instances" {
  type        = map(number)
  description = "Maximum instances of each function, keyed by function name; give all eight. Billing runs need few: one run per call, and the code is safe under concurrent runs."
  default = {
    monthly_billing   = 2
    generate_invoices = 2
    dunning           = 2
    billing_admin     = 3
    stripe_webhook    = 10
    aggregate_usage   = 1
    current_usage     = 5
    billing_console   = 2
    billing_worker    = 4
  }

  validation {
    condition = alltrue([
      for f in ["monthly_billing", "generate_invoices", "dunning", "billing_admin", "stripe_webhook", "aggregate_usage", "current_usage", "billing_console", "billing_worker"] :
      contains(keys(var.function_max_instances), f)
    ])
    error_message = "function_max_instances must have an entry for each of the nine functions."
  }
}

variable "smtp_host" {
  type        = string
  description = "SMTP server the functions send invoice and dunning emails through (SMTP_HOST)."
}

variable "smtp_port" {
  type        = number
  description = "SMTP port (SMTP_PORT), e.g. 587 with STARTTLS."
  default     = 587
}

variable "smtp_username" {
  type        = string
  description = "SMTP user name (SMTP_USERNAME); the password is the smtp-password secret."
}

variable "smtp_starttls" {
  type        = bool
  description = "Whether to upgrade the SMTP connection with STARTTLS (SMTP_STARTTLS)."
  default     = true
}

variable "smtp_from" {
  type        = string
  description = "Default sender address of emails (SMTP_FROM); a tenant's email.from overrides it."
}

variable "stripe_api_base" {
  type        = string
  description = "Override of the Stripe API base URL (STRIPE_API_BASE); empty means Stripe's own."
  default     = ""
}

variable "labels" {
  type        = map(string)
  description = "Labels put on the buckets, secrets and functions."
  default     = { app = "billing" }
}

variable "console_iap_audience" {
  type        = string
  description = "Audience of the IAP assertion the console accepts (IAP_AUDIENCE). Empty: IAP for Cloud Run's own, /projects/PROJECT_NUMBER/locations/REGION/services/billing-console."
  default     = ""
}

variable "console_iap_members" {
  type        = list(string)
  description = "Who may pass IAP to open the billing console (roles/iap.httpsResourceAccessor), e.g. group:finance@example.com. The console then allows only platform principals and tenant admins."
  default     = []

  validation {
    condition     = alltrue([for m in var.console_iap_members : can(regex("^(user|group|serviceAccount):[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)+$", m))])
    error_message = "Each console IAP member must be \"user:EMAIL\", \"group:EMAIL\" or \"serviceAccount:EMAIL\" (one address, no public principal, no domain)."
  }
}

# -- fan-out on Cloud Tasks (tasks.tf) ------------------------------------------------------------
variable "tasks_queue_work" {
  type        = string
  description = "Cloud Tasks queue id for plan, price, number, render and summarize tasks (TASKS_QUEUE_WORK)."
  default     = "billing-work"
}

variable "tasks_queue_delivery" {
  type        = string
  description = "Cloud Tasks queue id for Stripe and email delivery tasks, rate-limited below Stripe's limit (TASKS_QUEUE_DELIVERY)."
  default     = "billing-delivery"
}

variable "tasks_work_rate" {
  type = object({
    dispatches_per_second = number
    concurrent_dispatches = number
  })
  description = "Work queue limits: tasks started per second, and tasks running at once (at most that many worker instances busy; Firestore's 500/50/5 ramp makes more pointless for a new database)."
  default = {
    dispatches_per_second = 10
    concurrent_dispatches = 20
  }
}

variable "tasks_delivery_rate" {
  type = object({
    dispatches_per_second = number
    concurrent_dispatches = number
  })
  description = "Delivery queue limits. One task delivers one chunk (CHUNK_SIZE invoices, about 7 Stripe requests each, sequentially): concurrent_dispatches x per-instance request rate must stay under the Stripe account's limit (100 req/s live, 25 test); 2 concurrent chunks at ~10-20 req/s each leave headroom."
  default = {
    dispatches_per_second = 1
    concurrent_dispatches = 2
  }
}

variable "tasks_retry" {
  type = object({
    max_attempts        = number
    max_retry_seconds   = number
    min_backoff_seconds = number
    max_backoff_seconds = number
    max_doublings       = number
  })
  description = "Retry policy of both queues: max_attempts per task (then the sweeper re-enqueues with a new generation), max_retry_seconds in total, backoff from min to max seconds doubling max_doublings times. Every task is idempotent, so retries are safe."
  default = {
    max_attempts        = 10
    max_retry_seconds   = 3600
    min_backoff_seconds = 5
    max_backoff_seconds = 300
    max_doublings       = 5
  }
}

variable "tasks_dispatch_deadline_seconds" {
  type        = number
  description = "How long Cloud Tasks waits for billing_worker to answer one task (15..1800 s); must stay below billing_worker's timeout (TASKS_DISPATCH_DEADLINE_SECONDS)."
  default     = 900

  validation {
    condition     = var.tasks_dispatch_deadline_seconds >= 15 && var.tasks_dispatch_deadline_seconds <= 1800
    error_message = "Cloud Tasks dispatch deadlines are between 15 and 1800 seconds."
  }
}

variable "tasks_chunk_size" {
  type        = number
  description = "Subscriptions per price task (CHUNK_SIZE); 500 keeps a task well under 10 minutes."
  default     = 500
}
