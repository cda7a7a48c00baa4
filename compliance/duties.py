"""Separation of duties: who may act for an institution, and the second officer.

Justified exceptions, version approvals and scoring policies take two compliance officers: one
proposes, a different one of the right institution confirms. Dossiers are signed by an officer of
the institution whose document it is, who neither wrote nor submitted the revision. Every refusal
names who may act instead, changes nothing, and is written to the audit trail.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NoReturn

from django.core.exceptions import PermissionDenied

from core.access import role_of
from core.audit import audit_record
from core.choices import Role
from registry.models import Institution, User


def officer_names(institution: Institution, *, excluding: Iterable[int | None] = ()) -> list[str]:
    """The active compliance officers of ``institution`` by user name, less the excluded ids."""
    officers = User.objects.filter(institution=institution, is_active=True, groups__name=Role.COMPLIANCE_OFFICER)
    return list(officers.exclude(pk__in=[pk for pk in excluding if pk is not None]).order_by("username").values_list("username", flat=True))


def who_may_act(institution: Institution, *, excluding: Iterable[int | None] = ()) -> str:
    """``officer2 or carol``; or, when nobody is left, what an administrator must do."""
    names = officer_names(institution, excluding=excluding)
    if not names:
        return f"no such compliance officer of {institution.name} is registered; an administrator adds one with manage.py create_user"
    return " or ".join([", ".join(names[:-1]), names[-1]]) if len(names) > 1 else names[0]


def officer_refusal(actor, institution: Institution, what: str, *, excluding: Iterable[int | None] = ()) -> str | None:
    """Why ``actor`` may not ``what``, or None: only a compliance officer of ``institution`` may."""
    if role_of(actor) == Role.COMPLIANCE_OFFICER and actor.institution_id == institution.pk:
        return None
    return f"Only a compliance officer of {institution.name} may {what}; who may: {who_may_act(institution, excluding=excluding)}."


def provider_officer_refusal(actor, foundation_model, what: str) -> str | None:
    """Why ``actor`` may not ``what`` for the model, or None: only its provider's compliance officers may."""
    return officer_refusal(actor, foundation_model.provider, f"{what} of {foundation_model.name}")


def second_officer_refusal(actor, *, first, institution: Institution, what: str, did: str = "proposed this") -> str | None:
    """Why ``actor`` may not confirm what ``first`` ``did``, or None: a different officer of ``institution`` must."""
    refusal = officer_refusal(actor, institution, what, excluding=[getattr(first, "pk", None)])
    if refusal is None and first is not None and actor.pk == first.pk:
        refusal = (
            f"Four eyes: {first.username} {did}, so a second compliance officer of {institution.name} must {what}; "
            f"who may: {who_may_act(institution, excluding=[first.pk])}."
        )
    return refusal


def signing_institution(dossier) -> Institution:
    """Whose document a dossier is, and so whose officers review and sign it: the provider's.

    Every document RadTrust renders from a dossier (Annex IV technical documentation, instructions
    for use, the declaration of conformity draft, model cards, change logs, the general-purpose
    model documents) is a provider's document under the AI Act (Art. 11, 13, 47, 53); a deployer
    (a hospital) uses them but never signs them (docs/compliance.md)."""
    return dossier.version.foundation_model.provider


def refuse(instance, action: str, message: str, error: type[Exception] = PermissionDenied, **details) -> NoReturn:
    """Write the refusal to the audit trail, then raise it (``details``: the error's own keywords,
    such as a ``Conflict``'s code). Called outside the service's transaction, so the event stays
    when the request ends in the error."""
    audit_record(action=action, instance=instance, changes={"refused": message})
    raise error(message, **details)
