# PyPI's gcloud-tasks-emulator, run once by tests/e2e/tasks/test_gcloud_tasks_emulator.py. Its pins
# (an older google-cloud-tasks, grpcio-status 1.62) clash with the project's: its own virtualenv.
GTE_VERSION := 0.6.2
GTE_VENV := .venv-gte
GTE_STAMP := $(GTE_VENV)/.installed

TEST_DEPS += $(GTE_STAMP)

$(GTE_STAMP): mk/tasks_emulator.mk
	test -x $(GTE_VENV)/bin/python || $(PYTHON) -m venv $(GTE_VENV)
	$(GTE_VENV)/bin/pip install --quiet --disable-pip-version-check gcloud-tasks-emulator==$(GTE_VERSION)
	touch $@
