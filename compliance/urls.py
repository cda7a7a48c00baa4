from django.urls import path, re_path

from compliance import views

app_name = "pages"  # the API's router already names incident-list, feedback-list, ...

urlpatterns = [
    path("", views.home, name="home"),
    path("clinician/", views.clinician_home, name="clinician-home"),
    path("deployments/<int:deployment_id>/feedback/new/", views.feedback_new, name="feedback-new"),
    path("feedback/", views.feedback_list, name="feedback-list"),
    path("feedback/<int:pk>/edit/", views.feedback_edit, name="feedback-edit"),
    path("monitoring/", views.monitoring_list, name="monitoring-list"),
    path("monitoring/<int:pk>/", views.monitoring_detail, name="monitoring-detail"),
    path("alerts/", views.alert_list, name="alert-list"),
    path("incidents/", views.incident_list, name="incident-list"),
    re_path(r"^incidents/new/(?P<source>alert|feedback)/(?P<pk>[0-9]+)/$", views.incident_new, name="incident-new"),
    path("incidents/<int:pk>/", views.incident_detail, name="incident-detail"),
    path("incidents/<int:pk>/transition/", views.incident_transition, name="incident-transition"),
    path("incidents/<int:pk>/actions/", views.incident_action, name="incident-action"),
    path("incidents/<int:pk>/report.pdf", views.incident_pdf, name="incident-pdf"),
    path("dossiers/", views.dossier_list, name="dossier-list"),
    path("versions/<int:pk>/dossiers/open/", views.dossier_start, name="dossier-start"),
    path("dossiers/<int:pk>/", views.dossier_detail, name="dossier-detail"),
    path("dossiers/<int:pk>/save/", views.dossier_save, name="dossier-save"),
    path("dossiers/<int:pk>/review/", views.dossier_review, name="dossier-review"),
    path("dossiers/<int:pk>/request-changes/", views.dossier_request_changes, name="dossier-request-changes"),
    path("dossiers/<int:pk>/sign/", views.dossier_signing, name="dossier-sign"),
    path("dossiers/<int:pk>/documents/", views.document_list, name="dossier-documents"),
    path("dossiers/<int:pk>/documents/render/", views.documents_render, name="dossier-documents-render"),
    path("versions/<int:pk>/documents/", views.version_document_list, name="version-documents"),
    path("documents/<int:pk>/download/", views.document_download, name="document-download"),
    path("versions/<int:pk>/change-log/", views.change_log, name="change-log"),
    path("versions/<int:pk>/trust/", views.version_trust, name="version-trust"),
]
