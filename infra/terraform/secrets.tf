# Secret Manager secrets read by the functions. Terraform creates the secrets only: their values
# (versions) are added with gcloud (see README.md, "Deploying to Google Cloud"), so they never enter the Terraform state.

resource "google_secret_manager_secret" "secrets" {
  for_each = local.secrets

  project   = var.project_id
  secret_id = each.value
  labels    = var.labels

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}
