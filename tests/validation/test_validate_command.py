"""``manage.py validate``: names resolved, errors as messages, the run queued and audited to its requester."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from core.models import AuditEvent
from validation.models import ValidationRun


def test_queues_a_run_by_model_name_and_dataset_name(run_setup, capsys):
    version = run_setup["version"]
    call_command(
        "validate",
        f"{version.foundation_model.name}:{version.version}",
        run_setup["dataset"].name,
        "--user",
        "engineer",
        "--config",
        '{"n_resamples": 99}',
    )
    run = ValidationRun.objects.get()
    assert (run.version, run.dataset, run.config["n_resamples"], run.requested_by.username) == (version, run_setup["dataset"], 99, "engineer")
    assert f"Queued validation run {run.pk} on queue gpu." in capsys.readouterr().out
    assert AuditEvent.objects.get(object_type="validation.validationrun", action="create").actor_username == "engineer"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Nope:1.0.0", "1"], "No model version 'Nope:1.0.0'"),
        (["{version}", "no such set"], "No dataset 'no such set'"),
        (["{version}", "{dataset}", "--config", "{bad"], "--config is not JSON"),
        (["{version}", "{dataset}", "--config", '{"seed": -1}'], "config: suite option 'seed'"),
        (["{version}", "{dataset}", "--user", "auditor"], "only ML engineers start validation runs"),
    ],
)
def test_errors_are_messages_not_tracebacks(run_setup, args, message):
    names = {"{version}": str(run_setup["version"].pk), "{dataset}": str(run_setup["dataset"].pk)}
    args = [names.get(a, a) for a in args]
    if "--user" not in args:
        args += ["--user", "engineer"]
    with pytest.raises(CommandError, match=message):
        call_command("validate", *args)
    assert not ValidationRun.objects.exists()
