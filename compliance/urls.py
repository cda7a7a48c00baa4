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
]
