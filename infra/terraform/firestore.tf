# The Firestore database (Native mode) and every composite index the code's queries need.
#
# billing/store/indexes.py lists every query shape; tests/test_infra.py fails until each shape that
# needs a composite index has a google_firestore_index here (equality fields first, then the
# range/order fields in order, all ASCENDING). The emulator ignores indexes; production refuses
# a query whose index is missing, so the test is the only guard.

resource "google_firestore_database" "default" {
  project                           = var.project_id
  name                              = "(default)"
  location_id                       = var.firestore_location
  type                              = "FIRESTORE_NATIVE"
  concurrency_mode                  = "PESSIMISTIC"
  app_engine_integration_mode       = "DISABLED"
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = "DELETE_PROTECTION_ENABLED"
  # Billing records outlive this configuration: `terraform destroy` leaves the database.
  deletion_policy = "ABANDON"

  depends_on = [google_project_service.apis]
}

# dunning: open invoices past due (status == "open", due_at <= as_of).
resource "google_firestore_index" "invoices_status_due_at" {
  project     = var.project_id
  database    = google_firestore_database.default.name
  collection  = "invoices"
  query_scope = "COLLECTION"

  fields {
    field_path = "status"
    order      = "ASCENDING"
  }
  fields {
    field_path = "due_at"
    order      = "ASCENDING"
  }
}

# generate_invoices: drafts whose grace period is over (status == "draft", finalize_at <= as_of).
resource "google_firestore_index" "invoices_status_finalize_at" {
  project     = var.project_id
  database    = google_firestore_database.default.name
  collection  = "invoices"
  query_scope = "COLLECTION"

  fields {
    field_path = "status"
    order      = "ASCENDING"
  }
  fields {
    field_path = "finalize_at"
    order      = "ASCENDING"
  }
}

# aggregate_usage and the billing runs' tail (issue 13): late usage events, ingested in a fold
# window with a timestamp before it (ingested_at in [start, end), timestamp < start).
resource "google_firestore_index" "usage_events_ingested_at_timestamp" {
  project     = var.project_id
  database    = google_firestore_database.default.name
  collection  = "usage_events"
  query_scope = "COLLECTION"

  fields {
    field_path = "ingested_at"
    order      = "ASCENDING"
  }
  fields {
    field_path = "timestamp"
    order      = "ASCENDING"
  }
}

# Two readers (one index: Firestore refuses a second identical one): billing's completeness
# check (issue 13, billing/runs/usage_source.py) reads one customer whose hour holds an event
# the fold never read (customer_id ==, timestamp range); a fan-out price task reads its chunk's
# customers' events (a customer_id range and the month, billing.store.usage).
resource "google_firestore_index" "usage_events_customer_id_timestamp" {
  project     = var.project_id
  database    = google_firestore_database.default.name
  collection  = "usage_events"
  query_scope = "COLLECTION"

  fields {
    field_path = "customer_id"
    order      = "ASCENDING"
  }
  fields {
    field_path = "timestamp"
    order      = "ASCENDING"
  }
}

# Usage accumulators (issue 13, billing/store/accumulators.py): no query reads the `state` map (up
# to 10,000 unique_count values). Its automatic single-field indexes would cost an index entry
# per value on every hourly write and could reach Firestore's 40,000 entries per document, so they
# are off (billing/store/indexes.py UNINDEXED_FIELDS; tests/infra checks both sides).
resource "google_firestore_field" "usage_accumulators_state" {
  project    = var.project_id
  database   = google_firestore_database.default.name
  collection = "usage_accumulators"
  field      = "state"

  index_config {}
}
