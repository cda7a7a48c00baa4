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
def test_sweep_task_queues_what_it_finds(settings):
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
    # The factory's artifact has no files on disk: the mirror is refused, and says why.
    assert version.mirror_state == MirrorState.REFUSED
    assert "fails verification" in version.mirror_error


@pytest.mark.django_db
def test_a_mirror_lease_is_taken_once_until_released_or_expired():
    from registry.services import version_mirror_claim, version_mirror_state_set

    version = ModelVersionFactory(mirror_state=MirrorState.PENDING)
    assert version_mirror_claim(version_id=version.pk, lease_seconds=60) is True
    assert version_mirror_claim(version_id=version.pk, lease_seconds=60) is False  # a second worker backs off
    assert not versions_awaiting_mirror(older_than=timezone.now() + timedelta(hours=1)).filter(pk=version.pk).exists()
    version_mirror_state_set(version_id=version.pk, state=MirrorState.FAILED, error="boom")
    assert version_mirror_claim(version_id=version.pk, lease_seconds=-1) is True  # released, then taken with an expired lease
    assert version_mirror_claim(version_id=version.pk, lease_seconds=60) is True


@pytest.mark.django_db
def test_refused_versions_are_not_swept():
    version = ModelVersionFactory(mirror_state=MirrorState.REFUSED)
    ModelVersion.objects.filter(pk=version.pk).update(updated_at=timezone.now() - timedelta(hours=1))
    assert not versions_awaiting_mirror(older_than=timezone.now()).exists()
