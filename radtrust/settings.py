"""RadTrust settings: everything from the environment, with embedded defaults under ``var/``.

``RADTRUST_ENV=production`` switches to the hardened mode (``manage.py check --deploy``
reports nothing); it then refuses to start without a strong ``DJANGO_SECRET_KEY`` and
without ``DJANGO_ALLOWED_HOSTS``. The defaults need no server: SQLite, kombu's filesystem
broker and a local MLflow store, all under ``RADTRUST_VAR_DIR``.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from radtrust.env import (
    database_from_url,
    development_keys,
    env_bool,
    env_float,
    env_int,
    env_keys,
    env_list,
    env_str,
    keys_parse,
    lockout_parameters,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("RADTRUST_VAR_DIR", str(BASE_DIR / "var"))).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)  # the embedded defaults (SQLite, broker, MLflow) live here

RADTRUST_ENV = env_str("RADTRUST_ENV", "development")
if RADTRUST_ENV not in {"development", "production"}:
    raise ImproperlyConfigured(f"RADTRUST_ENV={RADTRUST_ENV!r} must be development or production")
PRODUCTION = RADTRUST_ENV == "production"

# --- Core -------------------------------------------------------------------
_DEVELOPMENT_SECRET_KEY = "insecure-development-key-only-for-local-use-never-in-production-0123456789"
SECRET_KEY = env_str("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if PRODUCTION:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE) is required in production")
    SECRET_KEY = _DEVELOPMENT_SECRET_KEY
if PRODUCTION and (
    len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5 or SECRET_KEY.startswith("django-insecure-") or SECRET_KEY == _DEVELOPMENT_SECRET_KEY
):
    # The rule of Django's deploy check (security.W009), made fatal: sessions, password resets and
    # signed values are only as strong as this key.
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY is too weak for production: use at least 50 random characters with at least 5 different ones "
        "(for example: python -c 'import secrets; print(secrets.token_urlsafe(50))')"
    )
DEBUG = env_bool("DJANGO_DEBUG", not PRODUCTION)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", [] if PRODUCTION else ["localhost", "127.0.0.1", "[::1]", "testserver"])
if PRODUCTION and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("DJANGO_ALLOWED_HOSTS is required in production")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_celery_results",
    "django_celery_beat",
    "core",
    "registry",
    "validation",
    "compliance",
    "radtrust_demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "core.audit.AuditContextMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "core.middleware.QueryGuard",  # a NUL or control character in a query parameter is a 400, not a database error
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "core.headers.SecurityHeadersMiddleware",
    # Last, so that it sees the login views' answers and turns a lockout into its own page.
    "axes.middleware.AxesMiddleware",
]
# django-axes first: it refuses a locked-out login before the password is even checked.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]

ROOT_URLCONF = "radtrust.urls"
WSGI_APPLICATION = "radtrust.wsgi.application"
ASGI_APPLICATION = "radtrust.asgi.application"
AUTH_USER_MODEL = "registry.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "pages:home"
LOGOUT_REDIRECT_URL = "login"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "compliance.pages.page_context",
            ]
        },
    }
]

# --- Database -----------------------------------------------------------------
DATABASES = {"default": database_from_url(env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'radtrust.sqlite3'}"))}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # A file, not memory, so a real worker process can share the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Files --------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "static")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "media/"  # never served directly: artifacts go through views that check access
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# Model artifacts can be large (weights as external data); the limit covers the
# ONNX graph and all of its data files together.
RADTRUST_MAX_ARTIFACT_BYTES = env_int("RADTRUST_MAX_ARTIFACT_BYTES", 2 * 1024**3, minimum=1)
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DJANGO_DATA_UPLOAD_MAX_MEMORY_SIZE", 10 * 1024**2, minimum=1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024**2
FILE_UPLOAD_TEMP_DIR = None

# --- Validation runs ------------------------------------------------------------
# Workers read dataset files only below these folders (comma-separated absolute paths).
RADTRUST_DATA_ROOTS = env_list("RADTRUST_DATA_ROOTS", [str(VAR_DIR / "data")])
RADTRUST_PREFER_GPU = env_bool("RADTRUST_PREFER_GPU", True)
# A worker renews its lease on the run row every third of this; a run whose lease
# has expired is given to another worker by the sweeper (brokers do not redeliver reliably).
RADTRUST_RUN_LEASE_SECONDS = env_int("RADTRUST_RUN_LEASE_SECONDS", 120, minimum=3)
RADTRUST_RUN_MAX_ATTEMPTS = env_int("RADTRUST_RUN_MAX_ATTEMPTS", 3, minimum=1)
# A run over at least this many images is scored in shards of about RADTRUST_SHARD_IMAGES images
# (whole patients) by every worker on its queue, then merged (validation.sharding).
RADTRUST_SHARD_MIN_IMAGES = env_int("RADTRUST_SHARD_MIN_IMAGES", 20_000, minimum=2)
RADTRUST_SHARD_IMAGES = env_int("RADTRUST_SHARD_IMAGES", 5_000, minimum=1)
# Processes decoding images for a worker's model (0: on the loader thread); a GPU worker wants several.
RADTRUST_LOADER_PROCESSES = env_int("RADTRUST_LOADER_PROCESSES", 0, minimum=0)
# A site's agent reports a scheduled revalidation within this many days of its due date.
RADTRUST_AGENT_REVALIDATION_DAYS = env_int("RADTRUST_AGENT_REVALIDATION_DAYS", 7, minimum=1)
# Datasets held in a PACS (DICOMweb): a query matching more instances is refused at run creation;
# workers fetch with this many parallel requests into a cache by SOP Instance UID.
RADTRUST_DICOMWEB_MAX_INSTANCES = env_int("RADTRUST_DICOMWEB_MAX_INSTANCES", 400_000, minimum=1)
RADTRUST_DICOMWEB_WORKERS = env_int("RADTRUST_DICOMWEB_WORKERS", 4, minimum=1)
RADTRUST_DICOMWEB_TIMEOUT_SECONDS = env_int("RADTRUST_DICOMWEB_TIMEOUT_SECONDS", 30, minimum=1)
RADTRUST_DICOMWEB_CACHE = Path(env_str("RADTRUST_DICOMWEB_CACHE", str(VAR_DIR / "dicomweb-cache")))

# --- Documents ------------------------------------------------------------------
# Technical documentation is kept at least ten years after the system is placed on the market (AI Act Art. 18).
RADTRUST_DOCUMENT_RETENTION_YEARS = env_int("RADTRUST_DOCUMENT_RETENTION_YEARS", 10, minimum=10)

# --- Audit trail ------------------------------------------------------------------
# The audit chain's HMAC keys (core.audit), "id:base64secret,id2:base64secret": the first signs new
# events and checkpoints, every one listed still verifies what it signed (rotation: put the new key
# first, keep the old ones). Development generates one under var/; production refuses to start without.
RADTRUST_AUDIT_KEYS = env_keys("RADTRUST_AUDIT_KEYS")
if RADTRUST_AUDIT_KEYS is None:
    if PRODUCTION:
        raise ImproperlyConfigured(
            "RADTRUST_AUDIT_KEYS (or RADTRUST_AUDIT_KEYS_FILE) is required in production: the audit trail's hashes are keyed with it "
            "(for example: python -c 'import base64, secrets; print(\"k1:\" + base64.b64encode(secrets.token_bytes(32)).decode())')"
        )
    RADTRUST_AUDIT_KEYS = keys_parse(f"{VAR_DIR / 'audit-keys'} (the development audit key)", development_keys(VAR_DIR / "audit-keys"))
# Signed checkpoints of the chain's head are appended here (audit-checkpoints.jsonl): keep it off the
# database's host and append-only, since verify_audit trusts it to detect removed or rewritten events.
RADTRUST_AUDIT_CHECKPOINT_DIR = Path(env_str("RADTRUST_AUDIT_CHECKPOINT_DIR", str(VAR_DIR / "audit")))
RADTRUST_AUDIT_CHECKPOINT_SECONDS = env_int("RADTRUST_AUDIT_CHECKPOINT_SECONDS", 600, minimum=10)

# --- Feedback and monitoring ------------------------------------------------------
# A clinician may change their feedback for this many hours; then it is frozen.
RADTRUST_FEEDBACK_EDIT_HOURS = env_int("RADTRUST_FEEDBACK_EDIT_HOURS", 24, minimum=0)
# Hosts of the worklist or PACS that may open the feedback link with ?next=: after sending, the clinician goes back there.
RADTRUST_FEEDBACK_RETURN_HOSTS = env_list("RADTRUST_FEEDBACK_RETURN_HOSTS", [])
# A burst of feedback is scored once: the recomputation waits this long after the first report.
RADTRUST_TRUST_DEBOUNCE_SECONDS = env_int("RADTRUST_TRUST_DEBOUNCE_SECONDS", 60, minimum=0)
# The first reports of a deployment set its disagreement rate at deployment (the CUSUM's p0).
RADTRUST_MONITOR_BASELINE_FEEDBACK = env_int("RADTRUST_MONITOR_BASELINE_FEEDBACK", 100, minimum=50)  # compliance.monitoring.MIN_BASELINE_REPORTS
RADTRUST_RUN_TIME_LIMIT_SECONDS = env_int("RADTRUST_RUN_TIME_LIMIT_SECONDS", 4 * 3600, minimum=10)
RADTRUST_RUN_UNCLAIMED_SECONDS = env_int("RADTRUST_RUN_UNCLAIMED_SECONDS", 600, minimum=5)

# --- Security (production) ----------------------------------------------------
SESSION_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_SECURE = PRODUCTION
SESSION_COOKIE_HTTPONLY = True
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", PRODUCTION)
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 31536000 if PRODUCTION else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = PRODUCTION
SECURE_HSTS_PRELOAD = PRODUCTION
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if env_bool("DJANGO_BEHIND_TLS_PROXY", PRODUCTION):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Sent on every response by core.headers.SecurityHeadersMiddleware (a view may send a stricter one).
# No inline script anywhere; inline styles are allowed (style attributes carry data-driven widths).
RADTRUST_CONTENT_SECURITY_POLICY = env_str(
    "RADTRUST_CONTENT_SECURITY_POLICY",
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'",
)
RADTRUST_PERMISSIONS_POLICY = env_str(
    "RADTRUST_PERMISSIONS_POLICY",
    "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), payment=(), usb=()",
)

# --- Logins and API tokens ------------------------------------------------------
# django-axes counts failed logins (login page, admin, /api/auth/token/) and locks the
# username+address pair out for a while; a success resets the count.
AXES_FAILURE_LIMIT = env_int("RADTRUST_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("RADTRUST_LOGIN_COOLOFF_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = lockout_parameters(env_list("RADTRUST_LOGIN_LOCKOUT_BY", ["username+ip_address"]), "RADTRUST_LOGIN_LOCKOUT_BY")
AXES_RESET_ON_SUCCESS = True
# A locked-out attempt neither counts nor extends the lock, so "try again in N minutes" holds.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_LOCKOUT_CALLABLE = "core.lockout.lockout_response"
AXES_CLIENT_IP_CALLABLE = "core.lockout.client_ip"
AXES_VERBOSE = False
# How many reverse proxies append to X-Forwarded-For in front of the site (0: use the peer's address).
RADTRUST_TRUSTED_PROXY_COUNT = env_int("RADTRUST_TRUSTED_PROXY_COUNT", 0, minimum=0)
RADTRUST_API_TOKEN_DAYS = env_int("RADTRUST_API_TOKEN_DAYS", 30, minimum=1)
RADTRUST_API_TOKEN_MAX_DAYS = env_int("RADTRUST_API_TOKEN_MAX_DAYS", 365, minimum=1)
# Events of the audit trail about personal data (a clinician's feedback) keep their personal fields this long, then
# core.audit.audit_pseudonymise empties them (GDPR storage limitation); the chain still verifies.
RADTRUST_AUDIT_PERSONAL_RETENTION_DAYS = env_int("RADTRUST_AUDIT_PERSONAL_RETENTION_DAYS", 730, minimum=183)
if RADTRUST_API_TOKEN_DAYS > RADTRUST_API_TOKEN_MAX_DAYS:
    raise ImproperlyConfigured(
        f"RADTRUST_API_TOKEN_DAYS={RADTRUST_API_TOKEN_DAYS} must not exceed RADTRUST_API_TOKEN_MAX_DAYS={RADTRUST_API_TOKEN_MAX_DAYS}"
    )
# Officers prove a second factor (a TOTP code) before they sign a dossier.
RADTRUST_REQUIRE_OTP_FOR_SIGNING = env_bool("RADTRUST_REQUIRE_OTP_FOR_SIGNING", False)
# The documents' PAdES signatures (compliance.pdf_signing): each institution's key and certificate in this
# folder as <code>.key.pem, <code>.cert.pem and an optional <code>.chain.pem. A missing pair is issued by a
# local CA kept in the same folder unless RADTRUST_SIGNING_LOCAL_CA is off (bring a real certificate then).
# Keys written here are encrypted with the passphrase when one is set (a secret: use the _FILE variant).
RADTRUST_SIGNING_DIR = Path(env_str("RADTRUST_SIGNING_DIR", str(VAR_DIR / "signing")))
RADTRUST_SIGNING_KEY_PASSPHRASE = env_str("RADTRUST_SIGNING_KEY_PASSPHRASE", "") or ""
RADTRUST_SIGNING_LOCAL_CA = env_bool("RADTRUST_SIGNING_LOCAL_CA", True)
RADTRUST_SIGNING_TSA_URL = env_str("RADTRUST_SIGNING_TSA_URL", "") or ""  # an RFC 3161 time-stamp authority, when the site has one
OTP_TOTP_ISSUER = "RadTrust"
# The schema and Swagger UI name every endpoint and field: public in development, behind a login in production.
RADTRUST_PUBLIC_API_DOCS = env_bool("RADTRUST_PUBLIC_API_DOCS", not PRODUCTION)

# --- REST API -----------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "core.authentication.ApiTokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["core.access.RolePermission"],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
        "rest_framework.filters.SearchFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": env_int("RADTRUST_API_PAGE_SIZE", 50, minimum=1),
    # JSON bodies are refused before parsing when nested past core.parsers.JSON_MAX_DEPTH; forms and uploads as DRF reads them.
    "DEFAULT_PARSER_CLASSES": ["core.parsers.BoundedJSONParser", "rest_framework.parsers.FormParser", "rest_framework.parsers.MultiPartParser"],
    # drf-spectacular's schema plus every error answer an operation can give (core.api.ErrorsAutoSchema).
    "DEFAULT_SCHEMA_CLASS": "core.api.ErrorsAutoSchema",
    "EXCEPTION_HANDLER": "core.api.exception_handler",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "RadTrust API",
    "DESCRIPTION": "Registry, validation evidence and compliance records for radiology foundation models.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["core.access.ApiDocsPermission"],
    # Swagger UI from this server's static files, so the docs work on a hospital network without internet.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "VersionStatusEnum": "registry.choices.VersionStatus",
        "DeploymentStatusEnum": "registry.choices.DeploymentStatus",
        "ValidationRunStatusEnum": "validation.choices.RunStatus",
        "AlertStatusEnum": "compliance.choices.AlertStatus",
        "AlertSeverityEnum": "compliance.choices.AlertSeverity",
        "IncidentStatusEnum": "compliance.choices.IncidentStatus",
        "FeedbackSeverityEnum": "compliance.choices.Severity",
        "FederatedJobStatusEnum": "validation.choices.FederatedJobStatus",
        "StudyStatusEnum": "validation.choices.StudyStatus",
    },
}

# --- Celery -------------------------------------------------------------------
CELERY_BROKER_DIR = Path(env_str("CELERY_BROKER_DIR", str(VAR_DIR / "celery")))
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS = (
    {
        "data_folder_in": str(CELERY_BROKER_DIR / "queue"),
        "data_folder_out": str(CELERY_BROKER_DIR / "queue"),
        "control_folder": str(CELERY_BROKER_DIR / "control"),
        "processed_folder": str(CELERY_BROKER_DIR / "processed"),
        "store_processed": False,
        # The default 1 s poll makes every round trip take a second (STACK.md).
        "polling_interval": env_float("CELERY_FILESYSTEM_POLLING_INTERVAL", 0.05),
    }
    if CELERY_BROKER_URL.startswith("filesystem")
    else {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600, minimum=60)}
)
if CELERY_BROKER_URL.startswith("filesystem"):
    for _folder in ("queue", "control", "processed"):
        (CELERY_BROKER_DIR / _folder).mkdir(parents=True, exist_ok=True)
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", "django-db")
CELERY_RESULT_EXTENDED = True
CELERY_CACHE_BACKEND = "django-cache"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
# Validation runs go to accelerator workers unless a run names its site queue.
CELERY_TASK_ROUTES = {"validation.tasks.run_execute": {"queue": "gpu"}}
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_TRACK_STARTED = True
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TIMEZONE = TIME_ZONE
# Synced into django-celery-beat's tables, where the admin can change them.
# A sweep that waited in the queue longer than its period expires (busy workers), so sweeps do not pile up.
RADTRUST_RUN_SWEEP_SECONDS = env_int("RADTRUST_RUN_SWEEP_SECONDS", 60, minimum=5)
RADTRUST_TRUST_SWEEP_SECONDS = env_int("RADTRUST_TRUST_SWEEP_SECONDS", 600, minimum=60)
CELERY_BEAT_SCHEDULE = {
    "registry-mirror-sweep": {"task": "registry.tasks.mirror_sweep", "schedule": env_int("RADTRUST_MIRROR_SWEEP_SECONDS", 600, minimum=10)},
    "validation-run-sweep": {
        "task": "validation.tasks.run_sweep",
        "schedule": RADTRUST_RUN_SWEEP_SECONDS,
        "options": {"expire_seconds": RADTRUST_RUN_SWEEP_SECONDS},
    },
    "validation-revalidation-dispatch": {
        "task": "validation.tasks.revalidation_dispatch",
        "schedule": env_int("RADTRUST_REVALIDATION_DISPATCH_SECONDS", 3600, minimum=60),
    },
    "compliance-trust-overdue-sweep": {"task": "compliance.tasks.trust_overdue_sweep", "schedule": 24 * 3600},
    "compliance-trust-missed-sweep": {
        "task": "compliance.tasks.trust_missed_sweep",
        "schedule": RADTRUST_TRUST_SWEEP_SECONDS,
        "options": {"expire_seconds": RADTRUST_TRUST_SWEEP_SECONDS},
    },
    "core-audit-checkpoint": {"task": "core.tasks.audit_checkpoint", "schedule": RADTRUST_AUDIT_CHECKPOINT_SECONDS},
    "compliance-incident-deadline-reminders": {"task": "compliance.tasks.incident_deadline_reminders", "schedule": 3600},
    "core-audit-pseudonymise": {"task": "core.tasks.audit_pseudonymise_sweep", "schedule": 24 * 3600},
    "compliance-usage-retention-purge": {"task": "compliance.tasks.usage_retention_purge_sweep", "schedule": 24 * 3600},
}

# --- E-mail (notifications: core.notifications) ------------------------------------
# With EMAIL_HOST set, mail goes out by SMTP; without it, it is printed on the console (development).
EMAIL_HOST = env_str("EMAIL_HOST", "") or ""
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST else "django.core.mail.backends.console.EmailBackend"
)
EMAIL_PORT = env_int("EMAIL_PORT", 587, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "") or ""
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "") or ""  # or EMAIL_HOST_PASSWORD_FILE
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured("EMAIL_USE_TLS and EMAIL_USE_SSL exclude each other: set one of them to false.")
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10, minimum=1)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "RadTrust <radtrust@localhost>")
# The address of this site, for links in e-mails.
RADTRUST_SITE_URL = env_str("RADTRUST_SITE_URL", "http://localhost:8000")
# Days before an incident's reporting deadline at which its officers are reminded (beat, once per threshold).
RADTRUST_INCIDENT_REMINDER_DAYS = sorted({int(d) for d in env_list("RADTRUST_INCIDENT_REMINDER_DAYS", ["7", "3", "1", "0"])}, reverse=True)

# --- MLflow -------------------------------------------------------------------
MLFLOW_TRACKING_URI = env_str("MLFLOW_TRACKING_URI", f"sqlite:///{VAR_DIR / 'mlflow' / 'mlflow.db'}")
MLFLOW_REGISTRY_URI = env_str("MLFLOW_REGISTRY_URI", MLFLOW_TRACKING_URI)
# With a local store the files go under var/; with an MLflow server, by default, where the server keeps them.
_LOCAL_MLFLOW = MLFLOW_TRACKING_URI.startswith(("sqlite:", "file:")) or "://" not in MLFLOW_TRACKING_URI
MLFLOW_ARTIFACT_ROOT = env_str("MLFLOW_ARTIFACT_ROOT", str(VAR_DIR / "mlflow" / "artifacts") if _LOCAL_MLFLOW else "")
MLFLOW_EXPERIMENT_NAME = env_str("MLFLOW_EXPERIMENT_NAME", "radtrust-registry")
# The MLflow UI's address of one run, "{run_id}" filled in (e.g. http://mlflow:5000/#/runs/{run_id}); empty: run pages show the id only.
RADTRUST_MLFLOW_RUN_URL = env_str("RADTRUST_MLFLOW_RUN_URL", "")

# --- Logging ------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("RADTRUST_LOG_LEVEL", "INFO")},
    "loggers": {
        name: {"level": "WARNING"} for name in ("alembic", "mlflow", "onnxscript", "onnx_ir", "kombu.connection", "weasyprint", "fontTools", "axes")
    }
    | {"torch.onnx": {"level": "ERROR"}},
}
