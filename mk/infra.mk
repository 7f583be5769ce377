# Deployment: function zips, Terraform, and the offline infrastructure checks.
#   make build         one deterministic zip per function in build/ (git-ignored)
#   make check-infra   the Terraform and packaging checks alone (also part of `make test`)
#   make deploy-secrets first deploy only: the APIs and the empty secrets (see README.md, "Deploying to Google Cloud")
#   make deploy        terraform init + apply with infra/terraform/terraform.tfvars

TF_DIR := infra/terraform
TERRAFORM ?= terraform
# checkov has heavy pinned dependencies: it lives in its own virtualenv.
CHECKOV_VERSION := 3.3.30
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed

# `make test` runs tests/infra/test_infra.py, which needs checkov.
TEST_DEPS += $(CHECKOV_STAMP)

.PHONY: build check-infra deploy deploy-secrets tfvars-check

$(CHECKOV_STAMP): mk/infra.mk
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check checkov==$(CHECKOV_VERSION)
	touch $@

## build: one zip per function in build/ (main.py, billing/, requirements.txt)
build: $(STAMP)
	$(PY) -m devtools.build

## check-infra: parse and assert the Terraform, checkov, terraform fmt, the function zips
check-infra: $(STAMP) $(CHECKOV_STAMP)
	$(PY) -m pytest tests/infra

tfvars-check:
	@test -f $(TF_DIR)/terraform.tfvars || { \
	  echo "Write $(TF_DIR)/terraform.tfvars first (copy $(TF_DIR)/terraform.tfvars.example)."; \
	  exit 1; }

## deploy-secrets: first deploy only, create the APIs and secrets so their values can be added
deploy-secrets: tfvars-check
	$(TERRAFORM) -chdir=$(TF_DIR) init -input=false
	$(TERRAFORM) -chdir=$(TF_DIR) apply -var-file=terraform.tfvars \
	  -target=google_project_service.apis -target=google_secret_manager_secret.secrets

## deploy: build the zips, then terraform init and apply (asks for confirmation)
deploy: tfvars-check build
	$(TERRAFORM) -chdir=$(TF_DIR) init -input=false
	$(TERRAFORM) -chdir=$(TF_DIR) apply -var-file=terraform.tfvars
