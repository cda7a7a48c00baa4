"""Server-rendered pages for clinicians, officers and auditors: thin views over the same
services, selectors and access rules as the API (``core.access``), one module per family."""

from compliance.pages.alert_pages import alert_handle_page, alert_list
from compliance.pages.change_log_page import change_log
from compliance.pages.document_pages import document_download, document_list, documents_render, version_document_list
from compliance.pages.dossier_autosave import dossier_autosave
from compliance.pages.dossier_pages import (
    dossier_detail,
    dossier_list,
    dossier_preview,
    dossier_request_changes,
    dossier_review,
    dossier_save,
    dossier_section,
    dossier_signing,
    dossier_start,
)
from compliance.pages.export_pages import alerts_csv, feedback_csv, incidents_csv, technical_file
from compliance.pages.feedback_pages import feedback_quick
from compliance.pages.home import home, page_context
from compliance.pages.market_page import version_market
from compliance.pages.post_market_pages import (
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
from compliance.pages.risk_file_page import qms_register_page, version_risk_file
from compliance.pages.trust_page import trust_chart, version_trust
from compliance.pages.usage_pages import usage_log_list
from compliance.pages.vigilance_pages import (
    incident_awareness,
    incident_decision,
    incident_decision_confirm,
    incident_field_safety,
    incident_intake,
    incident_mir_pdf,
    incident_report_add,
    incident_triage,
)

__all__ = [
    "alert_handle_page",
    "alert_list",
    "alerts_csv",
    "change_log",
    "clinician_home",
    "document_download",
    "document_list",
    "documents_render",
    "dossier_autosave",
    "dossier_preview",
    "dossier_detail",
    "dossier_list",
    "dossier_request_changes",
    "dossier_review",
    "dossier_save",
    "dossier_section",
    "dossier_signing",
    "dossier_start",
    "feedback_csv",
    "feedback_edit",
    "feedback_list",
    "feedback_new",
    "feedback_quick",
    "home",
    "incident_action",
    "incidents_csv",
    "incident_detail",
    "incident_list",
    "incident_new",
    "incident_pdf",
    "incident_transition",
    "incident_awareness",
    "incident_decision",
    "incident_decision_confirm",
    "incident_field_safety",
    "incident_intake",
    "incident_mir_pdf",
    "incident_report_add",
    "incident_triage",
    "monitoring_detail",
    "monitoring_list",
    "page_context",
    "qms_register_page",
    "release_evidence_pin_page",
    "technical_file",
    "trust_chart",
    "usage_log_list",
    "version_risk_file",
    "version_trust",
    "version_document_list",
    "version_market",
]
