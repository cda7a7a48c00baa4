"""The sweeper re-queues versions whose mirror never happened (a lost message or a broker that was down)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from registry.choices import MirrorState
from registry.models import ModelVersion
from registry.selectors import versions_awaiting_mirror
from tests.factories import ModelVersionFactory


@pytest.mark.django_db
def test_only_stale_unmirrored_versions_are_selected():
    stale_pending = ModelVersionFactory(mirror_state=MirrorState.PENDING)
    stale_failed = ModelVersionFactory(mirror_state=MirrorState.FAILED)
    mirrored = ModelVersionFactory(mirror_state=MirrorState.MIRRORED)
    fresh = ModelVersionFactory(mirror_state=MirrorState.PENDING)
    old = timezone.now() - timedelta(hours=1)
    ModelVersion.objects.filter(pk__in=[stale_pending.pk, stale_failed.pk, mirrored.pk]).update(updated_at=old)
    selected = set(versions_awaiting_mirror(older_than=timezone.now() - timedelta(minutes=5)))
    assert selected == {stale_pending, stale_failed}
    assert fresh not in selected


@pytest.mark.django_db
def test_sweep_task_mirrors_what_it_finds(settings):
    """Run eagerly here: the sweep queues the real mirror task, which writes to a real MLflow store."""
    from radtrust.celery import app
    from registry.tasks import mirror_sweep

    version = ModelVersionFactory(mirror_state=MirrorState.PENDING)
    ModelVersion.objects.filter(pk=version.pk).update(updated_at=timezone.now() - timedelta(hours=1))
    app.conf.task_always_eager, app.conf.task_eager_propagates = True, False
    try:
        queued = mirror_sweep.apply(kwargs={"stale_after_seconds": 60}).get()
    finally:
        app.conf.task_always_eager = False
    assert queued == 1
    version.refresh_from_db()
    # The factory's artifact has no files on disk: the mirror fails, is recorded, and will be retried.
    assert version.mirror_state == MirrorState.FAILED
    assert "fails verification" in version.mirror_error
