# The invoices bucket (PDFs at gs://BUCKET/{tenant_id}/{YYYY-MM}/{number}.pdf) and the bucket
# holding the function source zips. Both private, versioned, old versions expired.

resource "google_storage_bucket" "invoices" {
  #checkov:skip=CKV_GCP_62:Access is recorded by Cloud Audit Logs (Data Access logs for Cloud Storage), which Google recommends over legacy usage logs; a log bucket would need its own log bucket.
  name                        = local.invoices_bucket_name
  project                     = var.project_id
  location                    = var.storage_location
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  labels                      = var.labels

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      with_state                 = "ARCHIVED"
      days_since_noncurrent_time = var.noncurrent_version_retention_days
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket" "source" {
  #checkov:skip=CKV_GCP_62:Holds only build inputs that are also in git; access is recorded by Cloud Audit Logs, which Google recommends over legacy usage logs.
  name                        = local.source_bucket_name
  project                     = var.project_id
  location                    = var.storage_location
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true
  labels                      = var.labels

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      with_state                 = "ARCHIVED"
      days_since_noncurrent_time = var.noncurrent_version_retention_days
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}

# One object per function, named by the SHA-256 of its zip: a code change is a new object name,
# so the function's build_config changes and Terraform redeploys exactly the changed functions.
resource "google_storage_bucket_object" "source" {
  for_each = local.functions

  bucket       = google_storage_bucket.source.name
  name         = "${each.key}/${filesha256("${local.build_dir}/${each.key}.zip")}.zip"
  source       = "${local.build_dir}/${each.key}.zip"
  content_type = "application/zip"
}

# The functions' container images. Ours rather than the default gcf-artifacts repository (which
# Cloud Functions creates on first deploy, outside this configuration), so that the build account
# can be granted the writer role on this repository alone (iam.tf).
resource "google_artifact_registry_repository" "functions" {
  #checkov:skip=CKV_GCP_84:The images hold only the functions' code, which is also in git and in the source bucket; Google-managed encryption at rest, as for every other resource here, rather than a KMS key ring to run and rotate.
  project       = var.project_id
  location      = var.region
  repository_id = "billing-functions"
  format        = "DOCKER"
  description   = "Container images of the billing functions, built by Cloud Build as billing-build."
  labels        = var.labels

  depends_on = [google_project_service.apis]
}
