"""Server-rendered pages for clinicians, officers and auditors: thin views over the same
services, selectors and access rules as the API (``core.access``), one module per family."""

from compliance.views.change_log import change_log
from compliance.views.documents import document_download, document_list, documents_render, version_document_list
from compliance.views.home import home, page_context
from compliance.views.dossiers import (
    dossier_detail,
    dossier_list,
    dossier_request_changes,
    dossier_review,
    dossier_save,
    dossier_signing,
    dossier_start,
)
from compliance.views.trust import version_trust
from compliance.views.post_market import (
    alert_list,
    clinician_home,
    feedback_edit,
    feedback_list,
    feedback_new,
    incident_action,
    incident_detail,
    incident_list,
    incident_new,
    incident_pdf,
    incident_transition,
    monitoring_detail,
    monitoring_list,
)

__all__ = [
    "alert_list", "change_log", "clinician_home", "document_download", "document_list", "documents_render", "dossier_detail", "dossier_list", "dossier_request_changes", "dossier_review", "dossier_save",
    "dossier_signing", "dossier_start", "feedback_edit", "feedback_list", "feedback_new", "home", "incident_action", "incident_detail",
    "incident_list", "incident_new", "incident_pdf", "incident_transition", "monitoring_detail", "monitoring_list", "page_context", "version_trust", "version_document_list",
]
