"""Offline checks of infra/terraform: parsed with python-hcl2, scanned with checkov, fmt-checked.

`terraform init` cannot reach the provider registry here, so nothing is planned: these tests read
the configuration itself and assert what the deployment relies on (scheduler jobs and their OIDC,
least-privilege IAM, each function's secrets and service account, no public member but the Stripe
webhook's invoker, a composite index for every query shape in ``billing.store.indexes.QUERIES``, typed
and described variables), then run checkov from its own virtualenv (``make`` installs it before
the tests) and ``terraform fmt -check``. Where a terraform binary is on PATH, the parts that need
no provider are evaluated by Terraform itself in a scratch module: ``access.tf`` (self-contained
data) with ``terraform console``, and the variable validations with ``terraform plan``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hcl2
import pytest
from hcl2 import SerializationOptions

from billing.store.indexes import QUERIES, UNINDEXED_FIELDS, QueryShape
from tests.conftest import REPO

TF_DIR = REPO / "infra" / "terraform"
CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"

CONTRACT_FUNCTIONS = frozenset(
    {"monthly_billing", "generate_invoices", "dunning", "billing_admin", "stripe_webhook"}
)
# Issue 13: the hourly usage fold (scheduled) and current_usage, beside the contract's five.
USAGE_FUNCTIONS = frozenset({"aggregate_usage", "current_usage"})
SCHEDULED = frozenset({"monthly_billing", "generate_invoices", "dunning", "aggregate_usage"})
SWEEPER = "billing_worker"
"""Called by the fan-out sweeper's job (tasks.tf) as the tasks account, not the scheduler's."""
PUBLIC_FUNCTION = "stripe_webhook"
PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")
SECRET_ENV = frozenset({"STRIPE_API_KEY", "STRIPE_WEBHOOK_SECRET", "SMTP_PASSWORD", "CONSOLE_SECRET_KEY"})
CONSOLE = "billing_console"
# The secrets each function's code reads, worked out from the code independently of access.tf:
# the billing runs push invoices to Stripe and send email; dunning and billing_admin sync statuses
# with Stripe and send email; the webhook verifies the Stripe-Signature locally (it never calls
# the Stripe API) and sends the reactivation notice when a payment clears a suspended customer.
BILLING_SECRETS = frozenset({"STRIPE_API_KEY", "SMTP_PASSWORD"})
EXPECTED_SECRETS = {
    "monthly_billing": BILLING_SECRETS,
    "generate_invoices": BILLING_SECRETS,
    "dunning": BILLING_SECRETS,
    "billing_admin": BILLING_SECRETS,
    "stripe_webhook": frozenset({"STRIPE_WEBHOOK_SECRET", "SMTP_PASSWORD"}),
    # The usage fold and current_usage touch Firestore only: no Stripe call, no email.
    "aggregate_usage": frozenset(),
    "current_usage": frozenset(),
    # The console runs the admin actions in-process and signs its sessions and CSRF tokens.
    CONSOLE: BILLING_SECRETS | {"CONSOLE_SECRET_KEY"},
    "billing_worker": BILLING_SECRETS,  # renders, emails and pushes to Stripe (fan-out stages)
}
# The service account (google_service_account.<name>) each function runs as.
EXPECTED_ACCOUNTS = {
    name: "runtime" for name in (CONTRACT_FUNCTIONS | USAGE_FUNCTIONS) - {PUBLIC_FUNCTION}
} | {PUBLIC_FUNCTION: "webhook", CONSOLE: "console", "billing_worker": "runtime"}
REQUIRED_ENV = (
    "GOOGLE_CLOUD_PROJECT",
    "INVOICES_BUCKET",
    "AUTH_MODE",
    "AUTH_AUDIENCE",
    "AUTH_ALLOWED_PRINCIPALS",
    "SMTP_HOST",
    "SMTP_PORT",
    "SMTP_USERNAME",
    "SMTP_STARTTLS",
    "SMTP_FROM",
)
# Cloud Scheduler's maximum attempt deadline for HTTP targets.
SCHEDULER_MAX_DEADLINE_S = 1800

# Queries on their way in (dunning, draft finalization): declared ahead of the code that makes
# them. The real list is billing.store.indexes.QUERIES, read at test time below.
UPCOMING_QUERIES = (
    QueryShape("invoices", ("status",), ("due_at",), "dunning: open invoices past due"),
    QueryShape("invoices", ("status",), ("finalize_at",), "drafts past their grace period"),
)

OPTIONS = SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=False)


@dataclass(frozen=True)
class Resource:
    """One ``resource "TYPE" "NAME"`` block."""

    type: str
    name: str
    body: dict[str, Any]
    file: str

    @property
    def address(self) -> str:
        return f"{self.type}.{self.name}"


@dataclass(frozen=True)
class Config:
    """Every .tf file of infra/terraform, parsed."""

    resources: list[Resource]
    variables: dict[str, dict[str, Any]]
    locals: dict[str, Any]
    outputs: dict[str, dict[str, Any]]
    terraform: list[dict[str, Any]]
    text: dict[str, str]

    def of_type(self, *types: str) -> list[Resource]:
        return [r for r in self.resources if r.type in types]

    def get(self, type_: str, name: str) -> Resource:
        found = [r for r in self.resources if r.type == type_ and r.name == name]
        assert found, f"{type_}.{name} is not declared"
        return found[0]


def load_config() -> Config:
    files = sorted(TF_DIR.glob("*.tf"))
    assert files, f"no .tf files in {TF_DIR}"
    resources: list[Resource] = []
    variables: dict[str, dict[str, Any]] = {}
    local_values: dict[str, Any] = {}
    outputs: dict[str, dict[str, Any]] = {}
    terraform: list[dict[str, Any]] = []
    text: dict[str, str] = {}
    for path in files:
        text[path.name] = path.read_text()
        with path.open() as handle:
            parsed = hcl2.load(handle, serialization_options=OPTIONS)
        for block in parsed.get("resource", []):
            for type_, by_name in block.items():
                for name, body in by_name.items():
                    resources.append(Resource(type_, name, body, path.name))
        for block in parsed.get("variable", []):
            variables.update(block)
        for block in parsed.get("locals", []):
            for key, value in block.items():
                assert key not in local_values, f"local.{key} declared twice"
                local_values[key] = value
        for block in parsed.get("output", []):
            outputs.update(block)
        terraform.extend(parsed.get("terraform", []))
    return Config(resources, variables, local_values, outputs, terraform, text)


@pytest.fixture(scope="module")
def tf() -> Config:
    return load_config()


def one(body: dict[str, Any], key: str) -> dict[str, Any]:
    """The single nested block ``key`` of a block body."""
    blocks = body.get(key)
    assert isinstance(blocks, list) and len(blocks) == 1, f"expected one {key} block: {blocks!r}"
    block = blocks[0]
    assert isinstance(block, dict)
    return block


def strings(value: Any) -> Iterator[str]:
    """Every string anywhere inside a parsed value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def for_each_keys(tf: Config, resource: Resource) -> list[str | None]:
    """Instance keys of a resource: the literal keys of the ``local`` it iterates, or [None]."""
    for_each = resource.body.get("for_each")
    if for_each is None:
        return [None]
    match = re.fullmatch(r"\$\{local\.(\w+)\}", str(for_each))
    assert match, f"{resource.address}: for_each must be a local map, got {for_each!r}"
    value = tf.locals[match.group(1)]
    assert isinstance(value, dict), f"local.{match.group(1)} must be a literal map"
    return list(value)


def targets(expression: str, key: str | None, collection: str) -> str | None:
    """The function key an expression indexes ``collection`` with (``each.key`` resolved)."""
    match = re.search(re.escape(collection) + r'\[(each\.key|"(\w+)")\]', expression)
    if not match:
        return None
    return key if match.group(1) == "each.key" else match.group(2)


def memberish(resource: Resource) -> str:
    return str(resource.body.get("member", resource.body.get("members", "")))


IAM_MEMBER_TYPES = (
    "google_artifact_registry_repository_iam_member",
    "google_artifact_registry_repository_iam_binding",
    "google_project_iam_member",
    "google_project_iam_binding",
    "google_project_iam_policy",
    "google_storage_bucket_iam_member",
    "google_storage_bucket_iam_binding",
    "google_secret_manager_secret_iam_member",
    "google_secret_manager_secret_iam_binding",
    "google_cloud_run_service_iam_member",
    "google_cloud_run_service_iam_binding",
    "google_cloud_run_v2_service_iam_member",
    "google_cloud_run_v2_service_iam_binding",
    "google_cloudfunctions2_function_iam_member",
    "google_cloudfunctions2_function_iam_binding",
    "google_service_account_iam_member",
    "google_service_account_iam_binding",
    "google_cloud_tasks_queue_iam_member",
    "google_cloud_tasks_queue_iam_binding",
)
INVOKER_TYPES = (
    "google_cloud_run_service_iam_member",
    "google_cloud_run_v2_service_iam_member",
    "google_cloudfunctions2_function_iam_member",
)


def bindings_of(tf: Config, account: str) -> list[Resource]:
    """IAM grants whose member is ``google_service_account.<account>``."""
    pattern = re.compile(rf"google_service_account\.{account}\.(member|email)\b")
    return [r for r in tf.of_type(*IAM_MEMBER_TYPES) if pattern.search(memberish(r))]


def function_resource(tf: Config) -> Resource:
    functions = tf.of_type("google_cloudfunctions2_function")
    assert len(functions) == 1, "one for_each google_cloudfunctions2_function for all functions"
    return functions[0]


# --- layout and variables -------------------------------------------------------------------


def test_module_layout_and_provider_pin(tf: Config) -> None:
    for name in ("versions.tf", "variables.tf", "outputs.tf"):
        assert (TF_DIR / name).is_file(), f"infra/terraform/{name} is missing"
    assert (TF_DIR / "terraform.tfvars.example").is_file()
    assert tf.terraform, "versions.tf needs a terraform block"
    block = tf.terraform[0]
    assert block.get("required_version"), "required_version is not set"
    google = one(block, "required_providers")["google"]
    assert google["source"] == "hashicorp/google"
    assert google.get("version"), "the google provider version is not pinned"


def test_every_variable_has_type_and_description(tf: Config) -> None:
    assert tf.variables
    for name, body in tf.variables.items():
        assert body.get("type"), f"variable {name} has no type"
        assert str(body.get("description", "")).strip(), f"variable {name} has no description"


def test_tfvars_example_sets_every_required_variable(tf: Config) -> None:
    with (TF_DIR / "terraform.tfvars.example").open() as handle:
        example = hcl2.load(handle, serialization_options=OPTIONS)
    required = {name for name, body in tf.variables.items() if "default" not in body}
    assert required <= set(example), f"example lacks {sorted(required - set(example))}"
    assert set(example) <= set(tf.variables), "example sets an undeclared variable"


# --- functions ------------------------------------------------------------------------------


def existing_function_dirs() -> set[str]:
    return {p.parent.name for p in (REPO / "functions").glob("*/main.py")}


def test_every_function_is_deployed(tf: Config) -> None:
    fn = function_resource(tf)
    deployed = set(for_each_keys(tf, fn))
    expected = CONTRACT_FUNCTIONS | USAGE_FUNCTIONS | existing_function_dirs()
    assert expected <= deployed, f"no google_cloudfunctions2_function for {expected - deployed}"
    build = one(fn.body, "build_config")
    assert build["runtime"] == "python311"
    assert build["entry_point"] == "${each.key}", "the entry point is the function's name"
    storage = one(one(build, "source"), "storage_source")
    assert "google_storage_bucket_object.source[each.key]" in storage["object"]


def test_functions_run_private_as_their_accounts(tf: Config) -> None:
    service = one(function_resource(tf).body, "service_config")
    assert service["service_account_email"] == "${local.account_emails[local.function_accounts[each.key]]}"
    for key in ("available_memory", "timeout_seconds", "min_instance_count", "max_instance_count"):
        assert str(service[key]).startswith("${var."), f"{key} must come from a variable"
    # Private: no invoker binding for allUsers except the webhook's (checked below), and no
    # cloudfunctions-level public invoker either.
    for resource in tf.of_type("google_cloudfunctions2_function_iam_member"):
        assert memberish(resource) not in PUBLIC_MEMBERS


def test_function_environment(tf: Config) -> None:
    service = one(function_resource(tf).body, "service_config")
    env_expr = str(service["environment_variables"])
    match = re.fullmatch(r"\$\{local\.(\w+)\[each\.key\]\}", env_expr)
    assert match, f"environment_variables should be a per-function local, got {env_expr!r}"
    env = str(tf.locals[match.group(1)])
    for key in REQUIRED_ENV:
        assert re.search(rf"\b{key}\s*=", env), f"{key} is not set on the functions"
    assert re.search(r'\bAUTH_MODE\s*=\s*"platform"', env), "AUTH_MODE must be platform"
    assert re.search(r"\bAUTH_AUDIENCE\s*=\s*local\.function_urls\[name\]", env)
    assert "STRIPE_API_BASE" in env, "STRIPE_API_BASE should be settable"
    for secret_key in SECRET_ENV:
        assert not re.search(rf"\b{secret_key}\s*=", env), f"{secret_key} must be a secret"

    content = one(one(service, "dynamic")["secret_environment_variables"], "content")
    assert content["version"] == "latest"
    assert set(tf.locals["secrets"]) == SECRET_ENV
    assert not tf.of_type("google_secret_manager_secret_version"), (
        "secret values are added with gcloud, never through Terraform state"
    )


def test_function_urls_are_the_deterministic_run_app_urls(tf: Config) -> None:
    urls = str(tf.locals["function_urls"])
    assert "data.google_project.this.number" in urls and ".run.app" in urls
    assert tf.outputs["function_urls"]["value"] == "${local.function_urls}"


# --- scheduler ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One scheduler job instance (a for_each resource expanded by its keys)."""

    address: str
    key: str | None
    body: dict[str, Any]


def scheduler_jobs(tf: Config) -> list[Job]:
    jobs = []
    for resource in tf.of_type("google_cloud_scheduler_job"):
        for key in for_each_keys(tf, resource):
            jobs.append(Job(resource.address + (f'["{key}"]' if key else ""), key, resource.body))
    return jobs


def job_target(job: Job) -> str | None:
    uri = str(one(job.body, "http_target")["uri"])
    return targets(uri, job.key, "local.function_urls")


def test_each_scheduled_function_has_exactly_one_job_with_oidc(tf: Config) -> None:
    jobs = scheduler_jobs(tf)
    by_function: dict[str, list[Job]] = {}
    for job in jobs:
        target = job_target(job)
        assert target is not None, f"{job.address}: uri must be local.function_urls[...]"
        by_function.setdefault(target, []).append(job)
    assert set(by_function) == SCHEDULED | {SWEEPER}, f"scheduled: {sorted(by_function)}"
    for name, found in by_function.items():
        assert len(found) == 1, f"{name} has {len(found)} scheduler jobs"
        job = found[0]
        http = one(job.body, "http_target")
        assert http.get("http_method", "POST") == "POST"
        oidc = one(http, "oidc_token")
        account = "tasks" if name == SWEEPER else "scheduler"
        assert oidc["service_account_email"] == f"${{google_service_account.{account}.email}}"
        assert oidc.get("audience"), f"{job.address}: the OIDC audience must be explicit"
        assert targets(str(oidc["audience"]), job.key, "local.function_urls") == name
        assert oidc["audience"] == http["uri"], "audience must equal the function URL called"
        assert "oauth_token" not in http
        assert job.body.get("time_zone"), f"{job.address}: time_zone is not set"
        assert job.body.get("schedule"), f"{job.address}: schedule is not set"
        retry = one(job.body, "retry_config")
        assert retry.get("retry_count") is not None


def test_monthly_billing_runs_on_the_first_of_the_month(tf: Config) -> None:
    schedule = tf.variables["monthly_billing_schedule"]["default"]
    assert schedule.split()[2] == "1", schedule
    assert tf.variables["time_zone"]["default"] == "Europe/London"


def seconds(value: Any) -> int:
    match = re.fullmatch(r"(\d+)s?", str(value))
    assert match, f"not a number of seconds: {value!r}"
    return int(match.group(1))


def resolve_timeout(tf: Config, expression: str, key: str) -> int:
    """Evaluate ``${var.NAME[each.key]}`` (or a literal) against the variable's default."""
    match = re.fullmatch(r"\$\{var\.(\w+)\[each\.key\]\}", expression)
    if not match:
        return seconds(expression)
    return int(tf.variables[match.group(1)]["default"][key])


def resolve_deadline(tf: Config, expression: str, key: str) -> int:
    """Evaluate a literal ``"600s"`` or ``"${min(var.NAME[each.key], N)}s"``."""
    match = re.fullmatch(r"\$\{min\(var\.(\w+)\[each\.key\],\s*(\d+)\)\}s", expression)
    if not match:
        return seconds(expression)
    default = tf.variables[match.group(1)]["default"][key]
    return min(int(default), int(match.group(2)))


def test_attempt_deadline_within_function_timeout(tf: Config) -> None:
    service = one(function_resource(tf).body, "service_config")
    timeout_expr = str(service["timeout_seconds"])
    for job in scheduler_jobs(tf):
        name = job_target(job)
        assert name is not None
        deadline_expr = str(job.body["attempt_deadline"])
        deadline = resolve_deadline(tf, deadline_expr, name)
        timeout = resolve_timeout(tf, timeout_expr, name)
        assert deadline <= timeout, f"{name}: attempt_deadline {deadline}s > timeout {timeout}s"
        assert deadline <= SCHEDULER_MAX_DEADLINE_S
        # When the deadline is derived, it must be derived from the same variable as the timeout,
        # so an override of the timeout cannot leave the deadline above it.
        match = re.fullmatch(r"\$\{min\((var\.\w+)\[each\.key\],.*", deadline_expr)
        if match:
            assert timeout_expr.startswith("${" + match.group(1) + "[")


# --- IAM ------------------------------------------------------------------------------------


def test_no_public_member_except_the_stripe_webhook_invoker(tf: Config) -> None:
    public = [r for r in tf.resources if any(m in s for s in strings(r.body) for m in PUBLIC_MEMBERS)]
    assert len(public) == 1, f"public members in {[r.address for r in public]}"
    (resource,) = public
    assert resource.type in INVOKER_TYPES
    assert resource.body["role"] == "roles/run.invoker"
    assert resource.body["member"] == "allUsers"
    assert "for_each" not in resource.body and "count" not in resource.body
    service = str(resource.body.get("service", resource.body.get("name", "")))
    assert targets(service, None, "google_cloudfunctions2_function.functions") == PUBLIC_FUNCTION
    # Admin members are IAM members the variable validation restricts to users/service accounts.
    validation = str(tf.variables["admin_members"].get("validation"))
    assert "user|serviceAccount" in validation


def test_runtime_account_has_only_what_the_functions_use(tf: Config) -> None:
    assert not tf.of_type("google_project_iam_binding", "google_project_iam_policy"), (
        "authoritative project IAM would strip other members"
    )
    # Its secrets are granted per secret through local.account_members (see the secrets tests).
    allowed = {
        ("google_project_iam_member", "roles/datastore.user"),
        ("google_project_iam_member", "roles/logging.logWriter"),
        ("google_storage_bucket_iam_member", "roles/storage.objectAdmin"),
        # fan-out (tasks.tf): enqueue on the two queues, and mint the tasks' tokens as the
        # tasks account (on that account only)
        ("google_cloud_tasks_queue_iam_member", "roles/cloudtasks.enqueuer"),
        ("google_service_account_iam_member", "roles/iam.serviceAccountUser"),
    }
    grants = bindings_of(tf, "runtime")
    assert grants, "the runtime account has no roles"
    for grant in grants:
        role = str(grant.body["role"])
        assert role not in ("roles/editor", "roles/owner"), f"{grant.address} grants {role}"
        if grant.type.startswith("google_project_iam"):
            assert "admin" not in role.lower(), f"{grant.address}: project-wide {role}"
        assert (grant.type, role) in allowed, f"{grant.address}: unexpected {role}"
        if grant.type == "google_storage_bucket_iam_member":
            assert grant.body["bucket"] == "${google_storage_bucket.invoices.name}"
    assert {(g.type, g.body["role"]) for g in grants} == allowed


def test_scheduler_account_only_invokes_the_scheduled_functions(tf: Config) -> None:
    grants = bindings_of(tf, "scheduler")
    invoked: list[str] = []
    for grant in grants:
        assert grant.type in INVOKER_TYPES, f"{grant.address}: scheduler account beyond invoker"
        assert grant.body["role"] == "roles/run.invoker"
        service = str(grant.body.get("service", grant.body.get("name", "")))
        for key in for_each_keys(tf, grant):
            target = targets(service, key, "google_cloudfunctions2_function.functions")
            assert target is not None, f"{grant.address}: not a function's service"
            invoked.append(target)
    assert sorted(invoked) == sorted(SCHEDULED)


def test_operator_account_only_invokes_the_admin_functions(tf: Config) -> None:
    grants = bindings_of(tf, "operator")
    assert grants, "the operator account cannot invoke anything"
    for grant in grants:
        assert grant.type in INVOKER_TYPES and grant.body["role"] == "roles/run.invoker"
        assert PUBLIC_FUNCTION not in str(grant.body)
    impersonation = tf.of_type("google_service_account_iam_member")
    for grant in impersonation:
        if grant.body["service_account_id"] == "${google_service_account.tasks.name}":
            # the functions act as the tasks account to put its OIDC token on tasks (tasks.tf)
            assert grant.body["role"] == "roles/iam.serviceAccountUser"
            assert grant.body["member"] == "${google_service_account.runtime.member}"
            continue
        assert grant.body["service_account_id"] == "${google_service_account.operator.name}"
        assert grant.body["role"] == "roles/iam.serviceAccountTokenCreator"


def test_build_account_holds_its_roles_on_the_source_bucket_and_repository(tf: Config) -> None:
    build = one(function_resource(tf).body, "build_config")
    assert build["service_account"] == "${google_service_account.build.id}"
    # The images go to a repository of ours, so the writer role can be granted on it alone
    # (the default, gcf-artifacts, is created by Cloud Functions outside this configuration).
    assert build["docker_repository"] == "${google_artifact_registry_repository.functions.id}"
    repository = tf.get("google_artifact_registry_repository", "functions").body
    assert repository["format"] == "DOCKER"
    assert repository["location"] == "${var.region}"
    grants = bindings_of(tf, "build")
    assert {(g.type, g.body["role"]) for g in grants} == {
        ("google_storage_bucket_iam_member", "roles/storage.objectViewer"),
        ("google_artifact_registry_repository_iam_member", "roles/artifactregistry.writer"),
        # Build logs: Cloud Logging grants only on the project (or above).
        ("google_project_iam_member", "roles/logging.logWriter"),
    }, [g.address for g in grants]
    for grant in grants:
        if grant.type == "google_storage_bucket_iam_member":
            assert grant.body["bucket"] == "${google_storage_bucket.source.name}"
        if grant.type == "google_artifact_registry_repository_iam_member":
            assert grant.body["repository"] == "${google_artifact_registry_repository.functions.name}"
            assert grant.body["location"] == ("${google_artifact_registry_repository.functions.location}")


def test_no_project_wide_impersonation(tf: Config) -> None:
    for grant in tf.of_type("google_project_iam_member"):
        role = str(grant.body["role"])
        assert not role.startswith("roles/iam.serviceAccount"), f"{grant.address}: {role}"


def test_no_account_holds_editor_or_owner(tf: Config) -> None:
    for grant in tf.of_type(*IAM_MEMBER_TYPES):
        assert grant.body.get("role") not in ("roles/editor", "roles/owner"), grant.address


# --- secrets and service accounts per function (issue 8, item 15) ---------------------------


def terraform_or_skip() -> str:
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("no terraform binary on PATH")
    return terraform


def scratch_module(tmp_path: Path, *files: str) -> tuple[str, Path, dict[str, str]]:
    """A scratch module holding copies of ``files`` (no provider needed), initialized offline."""
    terraform = terraform_or_skip()
    module = tmp_path / "module"
    module.mkdir(parents=True)
    for name in files:
        shutil.copy(TF_DIR / name, module / name)
    cli_config = tmp_path / "terraformrc"
    cli_config.write_text("")
    env = {
        **os.environ,
        "TF_CLI_CONFIG_FILE": str(cli_config),
        "TF_IN_AUTOMATION": "1",
        "TF_INPUT": "0",
        "CHECKPOINT_DISABLE": "1",
    }
    init = subprocess.run(
        [terraform, "init", "-backend=false", "-no-color"],
        cwd=module,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert init.returncode == 0, init.stdout + init.stderr
    return terraform, module, env


def terraform_eval(tmp_path: Path, expression: str, *files: str) -> Any:
    """The JSON value of ``expression`` evaluated by ``terraform console`` over ``files``."""
    terraform, module, env = scratch_module(tmp_path, *files)
    result = subprocess.run(
        [terraform, "console"],
        cwd=module,
        env=env,
        capture_output=True,
        text=True,
        input=f"jsonencode({expression})\n",
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(json.loads(result.stdout.strip().splitlines()[-1]))


def secrets_read_by_the_code() -> set[str]:
    """Environment variables the code reads whose name says they hold a secret."""
    names: set[str] = set()
    for path in [*(REPO / "billing").rglob("*.py"), *(REPO / "functions").rglob("*.py")]:
        names.update(re.findall(r"environ\.get\(\s*\"([A-Z0-9_]+)\"", path.read_text()))
    return {n for n in names if re.search(r"(KEY|SECRET|PASSWORD|TOKEN)$", n)}


def test_every_secret_the_code_reads_is_a_secret_manager_secret(tf: Config) -> None:
    assert secrets_read_by_the_code() == SECRET_ENV == set(tf.locals["secrets"])


def test_each_function_mounts_only_the_secrets_it_reads(tf: Config) -> None:
    mapping = tf.locals["function_secrets"]
    assert {name: frozenset(envs) for name, envs in mapping.items()} == EXPECTED_SECRETS
    assert all(len(envs) == len(set(envs)) for envs in mapping.values())
    service = one(function_resource(tf).body, "service_config")
    dynamic = one(service, "dynamic")["secret_environment_variables"]
    assert dynamic["for_each"] == "${toset(local.function_secrets[each.key])}"
    content = one(dynamic, "content")
    assert content["key"] == "${secret_environment_variables.value}"
    assert content["secret"] == (
        "${google_secret_manager_secret.secrets[secret_environment_variables.value].secret_id}"
    )
    assert tf.outputs["function_secrets"]["value"] == "${local.function_secrets}"


def expected_secret_access() -> dict[str, dict[str, str]]:
    return {
        f"{EXPECTED_ACCOUNTS[name]} {env}": {"account": EXPECTED_ACCOUNTS[name], "env": env}
        for name, envs in EXPECTED_SECRETS.items()
        for env in envs
    }


def test_secret_accessor_is_granted_per_secret_to_the_accounts_that_mount_it(tf: Config) -> None:
    assert tf.locals["function_accounts"] == EXPECTED_ACCOUNTS
    grants = tf.of_type(
        "google_secret_manager_secret_iam_member",
        "google_secret_manager_secret_iam_binding",
        "google_secret_manager_secret_iam_policy",
    )
    assert len(grants) == 1, [g.address for g in grants]
    (grant,) = grants
    assert grant.type == "google_secret_manager_secret_iam_member"
    assert grant.body["for_each"] == "${local.secret_access}"
    assert grant.body["role"] == "roles/secretmanager.secretAccessor"
    assert grant.body["secret_id"] == ("${google_secret_manager_secret.secrets[each.value.env].secret_id}")
    assert grant.body["member"] == "${local.account_members[each.value.account]}"
    assert tf.locals["account_members"] == {
        account: f"${{google_service_account.{account}.member}}"
        for account in set(EXPECTED_ACCOUNTS.values())
    }
    assert tf.locals["account_emails"] == {
        account: f"${{google_service_account.{account}.email}}" for account in set(EXPECTED_ACCOUNTS.values())
    }
    for resource in tf.of_type("google_project_iam_member"):
        assert "secretmanager" not in str(resource.body["role"]), f"{resource.address}: project-wide"


def test_secret_access_evaluates_to_each_accounts_own_secrets(tmp_path: Path) -> None:
    # Terraform itself evaluates access.tf: the webhook account never reads the Stripe API key,
    # the runtime account never reads the webhook signing secret.
    access = terraform_eval(tmp_path, "local.secret_access", "access.tf")
    assert access == expected_secret_access()
    assert "webhook STRIPE_API_KEY" not in access
    assert "runtime STRIPE_WEBHOOK_SECRET" not in access


def test_webhook_runs_as_its_own_account_without_the_invoices_bucket(tf: Config) -> None:
    account = tf.get("google_service_account", "webhook").body
    assert account["account_id"] != tf.get("google_service_account", "runtime").body["account_id"]
    grants = bindings_of(tf, "webhook")
    assert {(g.type, g.body["role"]) for g in grants} == {
        ("google_project_iam_member", "roles/datastore.user"),
        ("google_project_iam_member", "roles/logging.logWriter"),
    }, [g.address for g in grants]
    # Nothing on any bucket: every bucket grant names its account directly, never the webhook's.
    for grant in tf.of_type("google_storage_bucket_iam_member", "google_storage_bucket_iam_binding"):
        member = memberish(grant)
        assert re.fullmatch(r"\$\{google_service_account\.(\w+)\.member\}", member), grant.address
        assert "webhook" not in member, f"{grant.address} gives the webhook a bucket role"
    # Nor the bucket's name in its environment.
    env = str(tf.locals["function_env"])
    assert re.search(
        r'name == "stripe_webhook" \? \{\} : \{INVOICES_BUCKET = google_storage_bucket\.invoices',
        env,
    ), "INVOICES_BUCKET must be left out of the webhook's environment"
    assert len(re.findall(r"\bINVOICES_BUCKET\s*=", env)) == 1
    assert tf.outputs["webhook_service_account"]["value"] == ("${google_service_account.webhook.email}")


# --- no public member on a private function, whatever the inputs (issue 8, item 15) ----------

POLICIES = TF_DIR / "policies"
# What a member variable must refuse: the public principals, and principals no token names.
REFUSED_MEMBERS = (
    "allUsers",
    "allAuthenticatedUsers",
    "domain:example.com",
    "user:allUsers",
    "principalSet://iam.googleapis.com/locations/global/workforcePools/p/*",
    "user:alice@example.com,allUsers",
    "user:alice@example.com allUsers",
    "serviceAccount:",
)
ACCEPTED_MEMBER = "user:alice@example.com"
# Resources that grant on a function with a list of members, or authoritatively: not used, so
# that every grant has one member to check.
LIST_INVOKER_TYPES = (
    *(
        f"{prefix}_{kind}"
        for prefix in (
            "google_cloud_run_service_iam",
            "google_cloud_run_v2_service_iam",
            "google_cloudfunctions_function_iam",
            "google_cloudfunctions2_function_iam",
        )
        for kind in ("binding", "policy")
    ),
    "google_cloudfunctions_function_iam_member",
)


def member_variables(tf: Config) -> list[str]:
    return sorted(name for name in tf.variables if name.endswith("_members"))


def validation_regexes(body: dict[str, Any]) -> list[re.Pattern[str]]:
    """The ``regex("...", m)`` patterns of a variable's validations, HCL escapes undone."""
    found = []
    for validation in body.get("validation", []):
        for literal in re.findall(r'regex\("((?:[^"\\]|\\.)*)"', str(validation["condition"])):
            found.append(re.compile(literal.replace("\\\\", "\\")))
    return found


def test_member_variables_refuse_public_principals(tf: Config) -> None:
    names = member_variables(tf)
    assert {"admin_members", "operator_members"} <= set(names)
    for name in names:
        body = tf.variables[name]
        assert body["type"] == "${list(string)}", f"{name} must be a list of IAM members"
        patterns = validation_regexes(body)
        assert patterns, f"variable {name} has no validation of its members"
        for bad in REFUSED_MEMBERS:
            assert not all(p.search(bad) for p in patterns), f"{name} accepts {bad!r}"
        assert all(p.search(ACCEPTED_MEMBER) for p in patterns), f"{name} refuses a user"


def plan_with(
    terraform: str, module: Path, env: dict[str, str], tf: Config, values: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    required = {name: "x" for name, body in tf.variables.items() if "default" not in body}
    var_file = module / "case.tfvars.json"
    var_file.write_text(json.dumps(required | values))
    return subprocess.run(
        [terraform, "plan", "-input=false", "-no-color", "-lock=false", f"-var-file={var_file}"],
        cwd=module,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_terraform_refuses_public_principals_in_member_variables(tf: Config, tmp_path: Path) -> None:
    # variables.tf alone is a module without providers: `terraform plan` evaluates the real
    # validations offline.
    terraform, module, env = scratch_module(tmp_path, "variables.tf")
    for name in member_variables(tf):
        accepted = plan_with(terraform, module, env, tf, {name: [ACCEPTED_MEMBER]})
        assert accepted.returncode == 0, accepted.stdout + accepted.stderr
        for bad in REFUSED_MEMBERS:
            refused = plan_with(terraform, module, env, tf, {name: [ACCEPTED_MEMBER, bad]})
            output = refused.stdout + refused.stderr
            assert refused.returncode != 0, f"terraform accepts {name} = [{bad!r}]"
            assert "Invalid value for variable" in output and f"var.{name} is" in output


def test_no_iam_grant_can_make_a_private_function_public(tf: Config) -> None:
    assert tf.locals["public_members"] == list(PUBLIC_MEMBERS)
    assert not tf.of_type(*LIST_INVOKER_TYPES), "grant functions one member per resource"
    for grant in tf.of_type(*IAM_MEMBER_TYPES):
        member = memberish(grant)
        if member in PUBLIC_MEMBERS:
            assert grant.address == "google_cloud_run_service_iam_member.stripe_webhook_public"
            continue
        variables = set(re.findall(r"\bvar\.(\w+)", member + str(grant.body.get("for_each", ""))))
        if grant.address == "google_cloud_run_service_iam_member.console_iap_invoker":
            # IAP's service agent is the console's only invoker (console.tf).
            assert member == "${local.iap_service_agent}", member
            assert "@gcp-sa-iap.iam.gserviceaccount.com" in str(tf.locals["iap_service_agent"])
            continue
        if not variables:
            assert re.fullmatch(
                r"\$\{(google_service_account\.\w+\.member"
                r"|local\.account_members\[each\.value\.account\])\}",
                member,
            ), f"{grant.address}: member {member!r} is neither an account of ours nor a variable"
            continue
        # Fed by a variable: the variable's validation refuses public principals (above), and a
        # precondition refuses them again on the grant itself, whatever feeds it later.
        assert variables <= set(member_variables(tf)), f"{grant.address}: {variables}"
        conditions = [
            str(precondition["condition"])
            for lifecycle in grant.body.get("lifecycle", [])
            for precondition in lifecycle.get("precondition", [])
        ]
        expected = f"${{!contains(local.public_members, {member[2:-1]})}}"
        assert expected in conditions, f"{grant.address} lacks the precondition {expected}"


BAD_INVOKERS = """
resource "google_cloud_run_v2_service_iam_member" "v2_authenticated" {
  name   = "monthly-billing"
  role   = "roles/run.invoker"
  member = "allAuthenticatedUsers"
}
resource "google_cloudfunctions2_function_iam_member" "function_authenticated" {
  cloud_function = "dunning"
  role           = "roles/cloudfunctions.invoker"
  member         = "allAuthenticatedUsers"
}
resource "google_cloud_run_service_iam_binding" "binding_public" {
  service = "billing-admin"
  role    = "roles/run.invoker"
  members = ["user:alice@example.com", "allUsers"]
}
resource "google_cloudfunctions2_function_iam_binding" "function_binding_authenticated" {
  cloud_function = "generate-invoices"
  role           = "roles/cloudfunctions.invoker"
  members        = ["allAuthenticatedUsers"]
}
resource "google_cloud_run_service_iam_member" "named_user" {
  service = "billing-admin"
  role    = "roles/run.invoker"
  member  = "user:alice@example.com"
}
resource "google_cloudfunctions2_function_iam_binding" "named_group" {
  cloud_function = "billing-admin"
  role           = "roles/cloudfunctions.invoker"
  members        = ["group:finance@example.com"]
}
"""


def run_checkov(directory: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    assert CHECKOV.exists(), (
        f"{CHECKOV} is missing: `make .venv-checkov/.installed` (a prerequisite of make test)"
    )
    return subprocess.run(
        [
            str(CHECKOV),
            "-d",
            str(directory),
            "--framework",
            "terraform",
            "--skip-download",
            "--compact",
            "--external-checks-dir",
            str(POLICIES),
            *extra,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
        timeout=600,
        check=False,
    )


def test_custom_checkov_policy_refuses_public_members_on_any_function(tmp_path: Path) -> None:
    # The built-in checks miss allAuthenticatedUsers on functions and every Cloud Run v2 grant.
    (tmp_path / "main.tf").write_text(BAD_INVOKERS)
    result = run_checkov(tmp_path, "--check", "CKV2_BILLING_1,CKV2_BILLING_2")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    failed = set(re.findall(r"FAILED for resource: (\S+)", output))
    passed = set(re.findall(r"PASSED for resource: (\S+)", output))
    assert failed == {
        "google_cloud_run_v2_service_iam_member.v2_authenticated",
        "google_cloudfunctions2_function_iam_member.function_authenticated",
        "google_cloud_run_service_iam_binding.binding_public",
        "google_cloudfunctions2_function_iam_binding.function_binding_authenticated",
    }, output
    assert passed == {
        "google_cloud_run_service_iam_member.named_user",
        "google_cloudfunctions2_function_iam_binding.named_group",
    }, output


# --- tenant admins (issue 8, item 10: Terraform half) ---------------------------------------

TENANT_ADMIN = "tenant_admin_invoker"


def unwrap(expression: Any) -> str:
    """The HCL of a parsed ``${...}`` expression."""
    text = str(expression)
    assert text.startswith("${") and text.endswith("}"), text
    return text[2:-1]


def evaluate_invoker_pairs(
    tf: Config, tmp_path: Path, resource: Resource, values: dict[str, Any]
) -> dict[str, Any]:
    """The for_each map of an invoker grant, evaluated by Terraform with these variable values.

    The scratch module holds variables.tf (its validations run too), local.functions as a literal
    and local.admin_functions and the grant's for_each copied from the configuration.
    """
    terraform, module, env = scratch_module(tmp_path, "variables.tf")
    (module / "probe.tf").write_text(
        "locals {\n"
        f"  functions       = {json.dumps(tf.locals['functions'])}\n"
        f"  admin_functions = {unwrap(tf.locals['admin_functions'])}\n"
        f"  probe           = {unwrap(resource.body['for_each'])}\n"
        "}\n"
    )
    required = {name: "x" for name, body in tf.variables.items() if "default" not in body}
    (module / "case.tfvars.json").write_text(json.dumps(required | values))
    result = subprocess.run(
        [terraform, "console", "-var-file=case.tfvars.json"],
        cwd=module,
        env=env,
        input="jsonencode(local.probe)\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    value: dict[str, Any] = json.loads(json.loads(result.stdout.strip().splitlines()[-1]))
    return value


def test_tenant_admins_are_a_typed_validated_variable(tf: Config) -> None:
    variable = tf.variables["tenant_admin_members"]
    assert variable["type"] == "${list(string)}"
    assert variable["default"] == []
    description = str(variable["description"])
    for phrase in (
        "run.invoker",
        "stripe_webhook",
        "tenants/T.admins",
        "X-Tenant-ID",
        "AUTH_ALLOWED_PRINCIPALS",
    ):
        assert phrase in description, f"the description should say {phrase}"
    assert "tenant_admin_members" in member_variables(tf)  # the public-principal tests cover it
    with (TF_DIR / "terraform.tfvars.example").open() as handle:
        assert "tenant_admin_members" in hcl2.load(handle, serialization_options=OPTIONS)


def test_tenant_admins_may_invoke_every_private_function(tf: Config) -> None:
    grant = tf.get("google_cloud_run_service_iam_member", TENANT_ADMIN)
    assert grant.body["role"] == "roles/run.invoker"
    assert grant.body["member"] == "${each.value.member}"
    service = str(grant.body["service"])
    assert service == "${google_cloudfunctions2_function.functions[each.value.function].name}"
    for_each = str(grant.body["for_each"])
    assert "var.tenant_admin_members" in for_each and "local.admin_functions" in for_each
    assert '!contains(["stripe_webhook", "billing_console", "billing_worker"], name)' in str(
        tf.locals["admin_functions"]
    )


def test_tenant_admin_grants_evaluate_to_the_private_functions_only(tf: Config, tmp_path: Path) -> None:
    grant = tf.get("google_cloud_run_service_iam_member", TENANT_ADMIN)
    pairs = evaluate_invoker_pairs(
        tf,
        tmp_path,
        grant,
        {
            "tenant_admin_members": [
                "user:carol@customer.example",
                "group:ap@customer.example",
                "user:dave@ops.example",
            ],
            "admin_members": ["user:dave@ops.example"],
        },
    )
    private = sorted((CONTRACT_FUNCTIONS | USAGE_FUNCTIONS) - {PUBLIC_FUNCTION})
    expected = {
        f"{function} {member}": {"function": function, "member": member}
        for function in private
        for member in ("user:carol@customer.example", "group:ap@customer.example")
    }
    # dave is an admin already: one grant per binding, the admin one.
    assert pairs == expected
    assert not evaluate_invoker_pairs(tf, tmp_path / "empty", grant, {})


def test_tenant_admins_are_not_platform_principals(tf: Config) -> None:
    # The functions read tenant admins from tenants/{t}.admins; AUTH_ALLOWED_PRINCIPALS would
    # let them act on every tenant.
    for name in ("admin_emails", "allowed_principals", "function_env"):
        assert "tenant_admin" not in str(tf.locals[name]), f"local.{name} names tenant admins"


# --- Firestore indexes ----------------------------------------------------------------------


def declared_indexes(tf: Config) -> list[tuple[str, str, tuple[tuple[str, str], ...]]]:
    indexes = []
    for resource in tf.of_type("google_firestore_index"):
        body = resource.body
        fields = tuple((str(f["field_path"]), str(f.get("order", ""))) for f in body["fields"])
        indexes.append((str(body["collection"]), str(body.get("query_scope", "")), fields))
    return indexes


def index_matches(shape: QueryShape, index: tuple[str, str, tuple[tuple[str, str], ...]]) -> bool:
    """Equality fields first (any order among them), then the ordered fields in order, ASC."""
    collection, scope, fields = index
    if collection != shape.collection_group or scope != "COLLECTION":
        return False
    wanted = len(shape.equality) + len(shape.ordered)
    if len(fields) != wanted or any(order != "ASCENDING" for _, order in fields):
        return False
    names = [name for name, _ in fields]
    head, tail = names[: len(shape.equality)], names[len(shape.equality) :]
    return sorted(head) == sorted(shape.equality) and tuple(tail) == shape.ordered


def hcl_for(shape: QueryShape) -> str:
    fields = "".join(
        f'  fields {{\n    field_path = "{f}"\n    order      = "ASCENDING"\n  }}\n'
        for f in (*shape.equality, *shape.ordered)
    )
    return (
        f'resource "google_firestore_index" "{shape.collection_group}_..." {{\n'
        f'  collection  = "{shape.collection_group}"\n  query_scope = "COLLECTION"\n{fields}}}'
    )


def test_every_query_needing_a_composite_index_has_one(tf: Config) -> None:
    indexes = declared_indexes(tf)
    missing = [
        shape
        for shape in (*QUERIES, *UPCOMING_QUERIES)
        if shape.needs_composite_index and not any(index_matches(shape, i) for i in indexes)
    ]
    assert not missing, "declare in infra/terraform/firestore.tf:\n" + "\n".join(
        f"# {shape.used_by}\n{hcl_for(shape)}" for shape in missing
    )


def test_index_check_has_teeth(tf: Config) -> None:
    indexes = declared_indexes(tf)
    unknown = QueryShape("invoices", ("status",), ("nowhere_at",), "test")
    assert unknown.needs_composite_index
    assert not any(index_matches(unknown, i) for i in indexes)
    swapped = QueryShape("invoices", ("due_at",), ("status",), "test")
    assert not any(index_matches(swapped, i) for i in indexes)


def test_usage_queries_are_declared_and_served() -> None:
    # Issue 13: the fold's and the close's read of late events (two inequality fields: a
    # composite index, checked above like every shape) is listed; the accumulators' state is
    # queried by nothing.
    shapes = {(q.collection_group, q.equality, q.ordered) for q in QUERIES}
    assert ("usage_events", (), ("ingested_at", "timestamp")) in shapes
    assert ("usage_accumulators", ("subscription_id",), ()) in shapes
    for collection, field_name in UNINDEXED_FIELDS:
        for shape in QUERIES:
            if shape.collection_group == collection:
                assert field_name not in (*shape.equality, *shape.ordered), shape


def test_unindexed_fields_have_their_single_field_indexes_off(tf: Config) -> None:
    exempt = {}
    for resource in tf.of_type("google_firestore_field"):
        body = resource.body
        assert body["database"] == "${google_firestore_database.default.name}"
        config = body.get("index_config")
        # `index_config {}`: no index at all (Terraform's way of turning them off).
        assert config in ({}, [{}]), f"{resource.address}: {config}"
        exempt[(body["collection"], body["field"])] = resource.address
    assert set(UNINDEXED_FIELDS) <= set(exempt), (
        f"exempt in firestore.tf: {set(UNINDEXED_FIELDS) - set(exempt)}"
    )


def test_indexes_belong_to_the_native_default_database(tf: Config) -> None:
    database = tf.get("google_firestore_database", "default").body
    assert database["name"] == "(default)"
    assert database["type"] == "FIRESTORE_NATIVE"
    assert database["location_id"] == "${var.firestore_location}"
    for resource in tf.of_type("google_firestore_index"):
        assert resource.body["database"] == "${google_firestore_database.default.name}"


# --- storage --------------------------------------------------------------------------------


@pytest.mark.parametrize("bucket", ["invoices", "source"])
def test_buckets_are_private_versioned_and_expire_old_versions(tf: Config, bucket: str) -> None:
    body = tf.get("google_storage_bucket", bucket).body
    assert body["uniform_bucket_level_access"] is True
    assert body["public_access_prevention"] == "enforced"
    assert one(body, "versioning")["enabled"] is True
    rules = body.get("lifecycle_rule", [])
    assert any(
        "days_since_noncurrent_time" in one(rule, "condition")
        or "num_newer_versions" in one(rule, "condition")
        for rule in rules
    ), f"{bucket}: no lifecycle rule for noncurrent versions"


def test_source_object_is_named_by_the_zip_hash(tf: Config) -> None:
    obj = tf.get("google_storage_bucket_object", "source").body
    assert re.search(r"\$\{file(sha256|md5|sha1|sha512|base64sha256)\(", str(obj["name"]))
    assert ".zip" in str(obj["source"])


# --- tools ----------------------------------------------------------------------------------


def test_checkov_skips_carry_a_reason(tf: Config) -> None:
    for name, text in tf.text.items():
        for line in text.splitlines():
            if "checkov:skip" in line:
                assert re.fullmatch(r"\s*#checkov:skip=CKV2?_[A-Z]+_\d+:\S.{20,}", line), (
                    f"{name}: skip without an inline reason: {line.strip()}"
                )


def test_checkov_passes() -> None:
    # With the custom policies of infra/terraform/policies (no public member on any function).
    result = run_checkov(TF_DIR, "--quiet")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert re.search(r"Failed checks: 0\b", output), output


def test_terraform_fmt() -> None:
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("no terraform binary on PATH")
    result = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "-diff", str(TF_DIR)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- billing_console: private, behind IAP, RunJob on the billing jobs only (issue 12) ---------


def test_the_console_is_a_function_reached_only_through_iap(tf: Config) -> None:
    assert CONSOLE in set(for_each_keys(tf, function_resource(tf)))
    # Not a run.invoker of any person: IAP's service agent is its only invoker.
    assert "billing_console" in str(tf.locals["admin_functions"]) and "!contains" in str(
        tf.locals["admin_functions"]
    )
    invokers = [
        r
        for r in tf.of_type(*INVOKER_TYPES)
        if 'functions["billing_console"]' in str(r.body.get("service", ""))
    ]  # the per-person grants iterate local.admin_functions, which leaves the console out
    assert [r.address for r in invokers] == ["google_cloud_run_service_iam_member.console_iap_invoker"]
    enable = tf.get("terraform_data", "console_iap_enabled").body
    command = str(one(enable, "provisioner")["local-exec"]["command"])
    assert "gcloud run services update ${local.console_service}" in command and "--iap" in command
    users = tf.get("google_iap_web_cloud_run_service_iam_member", "console_users").body
    assert users["role"] == "roles/iap.httpsResourceAccessor"
    assert users["for_each"] == "${toset(var.console_iap_members)}"
    assert (
        users["cloud_run_service_name"]
        == '${google_cloudfunctions2_function.functions["billing_console"].name}'
    )
    for name in ("console_iap_audience", "console_iap_members"):
        assert tf.variables[name].get("description") and tf.variables[name].get("type")


def test_the_console_runs_jobs_only_of_the_scheduled_functions(tf: Config) -> None:
    runner = tf.get("google_project_iam_member", "console_job_runner").body
    assert runner["role"] == "roles/cloudscheduler.jobRunner"
    assert runner["member"] == "${google_service_account.console.member}"
    condition = one(runner, "condition")
    assert "local.console_job_names" in str(condition["expression"]) and "resource.name ==" in str(
        condition["expression"]
    )
    names = str(tf.locals["console_job_names"])
    assert "keys(local.scheduled_jobs)" in names and "/jobs/${local.service_names[name]}" in names
    # The jobs it runs are scheduler.tf's (same names), and its dry runs invoke those functions only.
    job = tf.get("google_cloud_scheduler_job", "jobs").body
    assert job["name"] == "${local.service_names[each.key]}" and job["for_each"] == "${local.scheduled_jobs}"
    dry = tf.get("google_cloud_run_service_iam_member", "console_dry_run_invoker").body
    assert dry["for_each"] == "${local.scheduled_jobs}" and dry["role"] == "roles/run.invoker"


def test_the_console_account_holds_only_what_the_console_uses(tf: Config) -> None:
    grants = {(g.type, str(g.body["role"])) for g in bindings_of(tf, "console")}
    assert grants == {
        ("google_project_iam_member", "roles/datastore.user"),
        ("google_project_iam_member", "roles/logging.logWriter"),
        ("google_project_iam_member", "roles/cloudscheduler.jobRunner"),
        ("google_storage_bucket_iam_member", "roles/storage.objectAdmin"),
        ("google_cloud_run_service_iam_member", "roles/run.invoker"),  # dry runs (checked above)
    }, grants


def test_the_console_environment(tf: Config) -> None:
    env = tf.locals["console_env"]
    assert set(env) == {
        "IAP_AUDIENCE",
        "CONSOLE_RUN_MODE",
        "CONSOLE_SCHEDULER_JOBS",
        "CONSOLE_FUNCTION_URLS",
        "CONSOLE_URL",
    }
    assert env["CONSOLE_RUN_MODE"] == "scheduler" and env["IAP_AUDIENCE"] == "${local.console_iap_audience}"
    assert "local.console_job_names" in str(env["CONSOLE_SCHEDULER_JOBS"])
    assert 'name == "billing_console" ? local.console_env : {}' in str(tf.locals["function_env"])
    audience = str(tf.locals["console_iap_audience"])
    assert "var.console_iap_audience" in audience and "/locations/${var.region}/services/" in audience


# -- fan-out on Cloud Tasks (tasks.tf) ------------------------------------------------------------
def test_tasks_queues_have_described_limits_and_retries(tf: Config) -> None:
    for name in ("work", "delivery"):
        queue = tf.get("google_cloud_tasks_queue", name).body
        limits, retry = one(queue, "rate_limits"), one(queue, "retry_config")
        assert str(limits["max_dispatches_per_second"]).startswith("${var.tasks_")
        assert str(limits["max_concurrent_dispatches"]).startswith("${var.tasks_")
        for key in ("max_attempts", "max_retry_duration", "min_backoff", "max_backoff", "max_doublings"):
            assert str(retry[key]).count("${var.tasks_retry."), f"{name}.{key} must come from tasks_retry"
    for variable in (
        "tasks_work_rate",
        "tasks_delivery_rate",
        "tasks_retry",
        "tasks_dispatch_deadline_seconds",
    ):
        assert tf.variables[variable]["description"], variable
    delivery = tf.variables["tasks_delivery_rate"]["default"]
    assert delivery["concurrent_dispatches"] <= 4, "delivery must stay under Stripe's request limit"


def test_the_dispatch_deadline_is_below_the_workers_timeout(tf: Config) -> None:
    queue = tf.get("google_cloud_tasks_queue", "work").body
    conditions = [str(p["condition"]) for p in one(queue, "lifecycle").get("precondition", [])]
    assert any(
        "tasks_dispatch_deadline_seconds" in c and 'function_timeout_seconds["billing_worker"]' in c
        for c in conditions
    ), conditions
    deadline = tf.variables["tasks_dispatch_deadline_seconds"]["default"]
    assert deadline < tf.variables["function_timeout_seconds"]["default"]["billing_worker"]


def test_only_the_tasks_account_invokes_the_worker(tf: Config) -> None:
    grant = tf.get("google_cloud_run_service_iam_member", "tasks_invoker").body
    assert grant["role"] == "roles/run.invoker"
    assert grant["member"] == "${google_service_account.tasks.member}"
    assert 'functions["billing_worker"]' in str(grant["service"])
    assert [g.address for g in bindings_of(tf, "tasks")] == [
        "google_cloud_run_service_iam_member.tasks_invoker"
    ], "the tasks account holds run.invoker on billing_worker and nothing else"
    assert "billing_worker" not in str(tf.locals["admin_functions"]).split("if", 1)[0]
    assert '"billing_worker"' in str(tf.locals["admin_functions"])
    enqueuer = tf.get("google_cloud_tasks_queue_iam_member", "runtime_enqueuer").body
    assert enqueuer["role"] == "roles/cloudtasks.enqueuer"
    assert enqueuer["for_each"] == "${local.tasks_queues}"


def test_tasks_environment_reaches_the_functions(tf: Config) -> None:
    env = tf.locals["tasks_env"]
    for key in (
        "TASKS_MODE",
        "TASKS_QUEUE_WORK",
        "TASKS_QUEUE_DELIVERY",
        "TASKS_WORKER_URL",
        "TASKS_SERVICE_ACCOUNT",
        "TASKS_PROJECT",
        "TASKS_LOCATION",
        "TASKS_DISPATCH_DEADLINE_SECONDS",
        "CHUNK_SIZE",
    ):
        assert key in env, key
    assert env["TASKS_MODE"] == "cloud_tasks"
    assert env["TASKS_WORKER_URL"] == '${local.function_urls["billing_worker"]}'
    assert "local.tasks_env" in str(tf.locals["function_env"])
    assert "google_service_account.tasks.email" in str(tf.locals["allowed_principals"])
