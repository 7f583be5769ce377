# APIs the system uses. Left enabled on destroy: other things in the project may rely on them.
locals {
  apis = toset([
    "artifactregistry.googleapis.com", # images of the function builds
    "cloudbuild.googleapis.com",       # function builds
    "cloudfunctions.googleapis.com",
    "cloudresourcemanager.googleapis.com", # data.google_project (project number)
    "cloudscheduler.googleapis.com",
    "cloudtasks.googleapis.com", # fan-out queues (tasks.tf)
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "run.googleapis.com", # the Cloud Run services behind 2nd gen functions
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
  ])
}

resource "google_project_service" "apis" {
  for_each = local.apis

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}
