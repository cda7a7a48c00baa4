from django.urls import path, re_path

from compliance import pages

app_name = "pages"  # the API's router already names incident-list, feedback-list, ...

urlpatterns = [
    path("", pages.home, name="home"),
    path("clinician/", pages.clinician_home, name="clinician-home"),
    path("deployments/<int:deployment_id>/feedback/new/", pages.feedback_new, name="feedback-new"),
    path("feedback/", pages.feedback_list, name="feedback-list"),
    path("feedback/<int:pk>/edit/", pages.feedback_edit, name="feedback-edit"),
    path("monitoring/", pages.monitoring_list, name="monitoring-list"),
    path("monitoring/<int:pk>/", pages.monitoring_detail, name="monitoring-detail"),
    path("alerts/", pages.alert_list, name="alert-list"),
    path("incidents/", pages.incident_list, name="incident-list"),
    re_path(r"^incidents/new/(?P<source>alert|feedback)/(?P<pk>[0-9]+)/$", pages.incident_new, name="incident-new"),
    path("incidents/<int:pk>/", pages.incident_detail, name="incident-detail"),
    path("incidents/<int:pk>/transition/", pages.incident_transition, name="incident-transition"),
    path("incidents/<int:pk>/actions/", pages.incident_action, name="incident-action"),
    path("incidents/<int:pk>/report.pdf", pages.incident_pdf, name="incident-pdf"),
    path("dossiers/", pages.dossier_list, name="dossier-list"),
    path("versions/<int:pk>/dossiers/open/", pages.dossier_start, name="dossier-start"),
    path("dossiers/<int:pk>/", pages.dossier_detail, name="dossier-detail"),
    path("dossiers/<int:pk>/save/", pages.dossier_save, name="dossier-save"),
    path("dossiers/<int:pk>/review/", pages.dossier_review, name="dossier-review"),
    path("dossiers/<int:pk>/request-changes/", pages.dossier_request_changes, name="dossier-request-changes"),
    path("dossiers/<int:pk>/sign/", pages.dossier_signing, name="dossier-sign"),
    path("dossiers/<int:pk>/release-evidence/", pages.release_evidence_pin_page, name="release-evidence-pin"),
    path("dossiers/<int:pk>/documents/", pages.document_list, name="dossier-documents"),
    path("dossiers/<int:pk>/documents/render/", pages.documents_render, name="dossier-documents-render"),
    path("versions/<int:pk>/documents/", pages.version_document_list, name="version-documents"),
    path("documents/<int:pk>/download/", pages.document_download, name="document-download"),
    path("versions/<int:pk>/change-log/", pages.change_log, name="change-log"),
    path("versions/<int:pk>/trust/", pages.version_trust, name="version-trust"),
    path("trust-assessments/<int:pk>/chart.svg", pages.trust_chart, name="trust-chart"),
]
