"""The two-factor page: an officer enrols an authenticator app (TOTP) for signing.

The key is shown while the authenticator is unconfirmed, and never after: once the first code
matches, the page only says that one is enrolled (enrolling again replaces it).
"""

from __future__ import annotations

from base64 import b32encode

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render

from core.pages import form_errors, requires
from core.second_factor import confirmed_device, totp_enrol_confirm, totp_enrol_start


class CodeForm(forms.Form):
    code = forms.CharField(
        max_length=8,
        label="The six-digit code your app shows now",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )


@requires("dossier", write=True)
def two_factor(request):
    """GET: the enrolled authenticator, or a new one's key to type into the app; POST: confirm it with a code."""
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            totp_enrol_confirm(user=request.user, code=form.cleaned_data["code"])
        except ValidationError as exc:
            form_errors(form, exc)
        else:
            messages.success(request, "Your authenticator app is enrolled: give its current code when you sign.")
            return redirect("account-two-factor")
    enrolled = confirmed_device(request.user)
    pending = totp_enrol_start(user=request.user) if request.method == "POST" or request.GET.get("enrol") or enrolled is None else None
    context = {"enrolled": enrolled, "pending": pending, "form": form, "required": settings.RADTRUST_REQUIRE_OTP_FOR_SIGNING}
    if pending is not None:
        secret = b32encode(pending.bin_key).decode()
        context["secret"] = " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))  # in groups, to type it without a slip
    return render(request, "core/two_factor.html", context, status=400 if form.errors else 200)
