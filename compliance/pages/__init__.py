"""Server-rendered pages for clinicians, officers and auditors: thin views over the same
services, selectors and access rules as the API (``core.access``), one module per family."""

from compliance.pages.change_log_page import change_log
from compliance.pages.document_pages import document_download, document_list, documents_render, version_document_list
from compliance.pages.dossier_pages import (
    dossier_detail,
    dossier_list,
    dossier_request_changes,
    dossier_review,
    dossier_save,
    dossier_signing,
    dossier_start,
)
from compliance.pages.home import home, page_context
from compliance.pages.post_market_pages import (
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
from compliance.pages.release_evidence_page import release_evidence_pin_page
from compliance.pages.trust_page import trust_chart, version_trust

__all__ = [
    "alert_list",
    "change_log",
    "clinician_home",
    "document_download",
    "document_list",
    "documents_render",
    "dossier_detail",
    "dossier_list",
    "dossier_request_changes",
    "dossier_review",
    "dossier_save",
    "dossier_signing",
    "dossier_start",
    "feedback_edit",
    "feedback_list",
    "feedback_new",
    "home",
    "incident_action",
    "incident_detail",
    "incident_list",
    "incident_new",
    "incident_pdf",
    "incident_transition",
    "monitoring_detail",
    "monitoring_list",
    "page_context",
    "release_evidence_pin_page",
    "trust_chart",
    "version_trust",
    "version_document_list",
]
