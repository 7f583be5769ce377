"""Terraform of the fanned-out generate_invoices and dunning (infra/terraform/fanout_runs.tf)."""

from __future__ import annotations

from tests.infra.test_infra import Config, tf

__all__ = ["tf"]


def test_generate_invoices_and_dunning_get_the_tasks_environment_and_threshold(tf: Config) -> None:
    functions = tf.locals["tasks_functions"]
    assert set(functions) == {"monthly_billing", "generate_invoices", "dunning", "billing_worker"}
    env = str(tf.locals["function_env"])
    assert "contains(local.tasks_functions, name) ? local.tasks_env" in env
    assert "local.fanout_threshold_env" in env
    assert tf.locals["fanout_threshold_env"] == {"FANOUT_MIN_ITEMS": "${tostring(var.fanout_min_items)}"}
    threshold = tf.variables["fanout_min_items"]
    assert threshold["type"] == "number" and threshold["default"] == 1000
    assert "Scheduler attempt deadline" in threshold["description"]
    assert threshold["validation"], "FANOUT_MIN_ITEMS must be validated (>= 1)"


def test_the_fanning_functions_run_as_the_account_that_may_enqueue(tf: Config) -> None:
    """They run as ``runtime``, which enqueues on both queues and acts as the tasks account."""
    accounts = tf.locals["function_accounts"]
    assert accounts["generate_invoices"] == accounts["dunning"] == "runtime"
    enqueuer = tf.get("google_cloud_tasks_queue_iam_member", "runtime_enqueuer").body
    assert enqueuer["member"] == "${google_service_account.runtime.member}"
    acts_as = tf.get("google_service_account_iam_member", "runtime_acts_as_tasks").body
    assert acts_as["role"] == "roles/iam.serviceAccountUser"
    assert acts_as["member"] == "${google_service_account.runtime.member}"
