"""The notifications page: each person's own list, newest first, and marking them read."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from core.models import Notification
from core.notifications import notifications_mark_read
from core.pages import page_window


@login_required
def notification_list(request):
    page = page_window(request, Notification.objects.filter(recipient=request.user), size=50)
    return render(request, "core/notifications.html", {"page": page})


@login_required
@require_POST
def notification_read(request):
    """Mark one (``id``) or all of one's notifications read; then open its link, or go back to the list."""
    raw = request.POST.get("id", "")
    ids = [int(raw)] if raw.isdigit() else None
    notifications_mark_read(user=request.user, ids=ids)
    target = ""
    if ids:
        target = Notification.objects.filter(recipient=request.user, pk=ids[0]).values_list("link", flat=True).first() or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return redirect(target)
    return redirect("notifications")
