"""SAGE settings: one file, every deployment-specific value read from the environment.

With nothing set, SAGE runs on the embedded default — SQLite (WAL, IMMEDIATE transactions) and
Celery's filesystem transport under SAGE_DATA_DIR — so a first run needs no servers. A production
deployment sets DATABASE_URL (PostgreSQL) and CELERY_BROKER_URL (Redis); see README.md.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from kombu import Exchange, Queue

from .env import Env

env = Env()

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env.str("SAGE_DATA_DIR", str(BASE_DIR / "var"))).resolve()


def _owner_only(path: Path, mode: int) -> None:
    """Tighten an existing path of ours to `mode`: the data directory holds the embedded database
    (password hashes, live sessions), the secret key and queued tasks. A sticky directory is shared
    (such as /tmp), and one owned by someone else is theirs to set: both are left alone."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return
    if st.st_uid == os.getuid() and not st.st_mode & stat.S_ISVTX and stat.S_IMODE(st.st_mode) != mode:
        path.chmod(mode)


DATA_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
_owner_only(DATA_DIR, 0o700)


def _secret_key() -> str:
    """SECRET_KEY from the environment, else a random key persisted beside the embedded database."""
    if env.is_set("SECRET_KEY"):
        key = env.str("SECRET_KEY")
        if len(key) < 50:
            from django.core.exceptions import ImproperlyConfigured

            raise ImproperlyConfigured("SECRET_KEY must be at least 50 characters long.")
        return key
    path = DATA_DIR / "secret_key"
    if not path.exists():
        # Created owner-only, never readable by others for a moment in between.
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as fh:
            fh.write(secrets.token_urlsafe(64))
    _owner_only(path, 0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env.bool("DEBUG", False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", [])

# --- Security: HTTPS, headers, sessions ------------------------------------------------------
# Behind a TLS-terminating proxy: turn on every HTTPS protection `check --deploy` asks for. Off (the
# embedded demo over plain http://localhost), cookies are not marked Secure, or no browser would send them.
HTTPS = env.bool("SAGE_HTTPS", False)
# The header the proxy sets to the scheme the client used ("X-Forwarded-Proto: https"), trusted only
# under SAGE_HTTPS; empty when gunicorn terminates TLS itself. A proxy must overwrite it, never pass it on.
_proxy_ssl_header = env.str("SAGE_PROXY_SSL_HEADER", "X-Forwarded-Proto").strip()
# The header holding the client's address as the proxy saw it (e.g. X-Forwarded-For, X-Real-IP), which
# login throttling counts failures by; empty: the connection's address. Trusted only under SAGE_HTTPS.
_client_ip_header = env.str("SAGE_CLIENT_IP_HEADER", "").strip()
SAGE_CLIENT_IP_META = ""
if HTTPS:
    if _proxy_ssl_header:
        SECURE_PROXY_SSL_HEADER = ("HTTP_" + _proxy_ssl_header.upper().replace("-", "_"), "https")
    if _client_ip_header:
        SAGE_CLIENT_IP_META = "HTTP_" + _client_ip_header.upper().replace("-", "_")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", 31_536_000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
# How long a login lasts without use (Django renews the cookie on each change of the session), and
# whether closing the browser ends it.
SESSION_COOKIE_AGE = env.int("SAGE_SESSION_AGE_HOURS", 336, minimum=1) * 3600
SESSION_EXPIRE_AT_BROWSER_CLOSE = env.bool("SAGE_SESSION_EXPIRE_AT_BROWSER_CLOSE", False)

def _inline_style_hashes() -> list[str]:
    """CSP hashes of the <style> blocks in templates/_standalone_error.html: the 500 and CSRF pages
    must render with no static files (the failure may be theirs), so their style is inline and static."""
    import base64
    import hashlib
    import re

    text = (BASE_DIR / "templates" / "_standalone_error.html").read_text()
    return [f"'sha256-{base64.b64encode(hashlib.sha256(block.encode()).digest()).decode()}'"
            for block in re.findall(r"<style>(.*?)</style>", text, re.S)]


# Content-Security-Policy (django-csp): scripts and styles from our own static files only, no inline
# code or eval. htmx is told not to inject its indicator <style> (base.html's htmx-config), vega-embed
# and vega-tooltip not to inject theirs (calibration/charts.js links the CSS instead), and Vega's
# expressions run in vega-interpreter rather than through `new Function`.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", *_inline_style_hashes()],
        # Pico draws its select arrows and checkbox marks with data: SVGs; chart PNG export uses data:.
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "template_partials",
    "csp",
    "axes",
    "sage",
    "policy",
    "traffic",
    "review",
    "precedent",
    "judges",
    "calibration",
    "distill",
    "comparisons",
    "gates",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Everything is behind login; the few public views opt out with @login_not_required.
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "csp.middleware.CSPMiddleware",
    # Turns a login refused for too many failures into the lockout page (sage.login_throttle).
    "axes.middleware.AxesMiddleware",
    # Last, so it sees the view's exception first: a busy SQLite answers 503 + Retry-After, not 500.
    "sage.busy.DatabaseBusyMiddleware",
]

ROOT_URLCONF = "sage.urls"
WSGI_APPLICATION = "sage.wsgi.application"

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
                "sage.context_processors.navigation",
            ],
            "builtins": ["template_partials.templatetags.partials"],
        },
    }
]

_database = env.database("DATABASE_URL", f"sqlite:///{DATA_DIR / 'sage.sqlite3'}")
if _database["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web server read while the worker writes; IMMEDIATE takes the write lock at
    # BEGIN so two writers queue on busy_timeout instead of failing with "database is locked".
    _database["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
    }
    # Tests run on a file like the real thing (WAL, one writer across connections), not in memory.
    _database["TEST"] = {"NAME": str(DATA_DIR / "test-sage.sqlite3")}
    _sqlite_path = Path(_database["NAME"])
    if _database["NAME"] != ":memory:" and _sqlite_path.parent.is_dir():
        # SQLite creates the database with the process's umask (0644 as a rule) and gives its WAL and
        # shared-memory files the database's mode: an empty file made owner-only first makes all
        # three owner-only (an empty file is a valid empty database). Older files are tightened.
        if not _sqlite_path.exists():
            os.close(os.open(_sqlite_path, os.O_WRONLY | os.O_CREAT, 0o600))
        for _suffix in ("", "-wal", "-shm"):
            _owner_only(Path(f"{_sqlite_path}{_suffix}"), 0o600)
# A kept connection (CONN_MAX_AGE, 60 s on PostgreSQL) that a database restart broke is tested and
# replaced before the next request's or task's first query, instead of failing that request or task
# (tests/judges/test_db_restart.py; bench/faults.py restarts PostgreSQL under a judge run).
_database["CONN_HEALTH_CHECKS"] = True
DATABASES = {"default": _database}
# On SQLite, how long a traffic import waits for its turn to write before answering 503 (traffic.staging).
TRAFFIC_IMPORT_WAIT_SECONDS = env.int("SAGE_IMPORT_WAIT_S", 300, minimum=1)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Login throttling (django-axes), on the app's login and the admin's: after SAGE_LOGIN_FAILURE_LIMIT
# failures for one username from one address, that pair is refused for SAGE_LOGIN_COOLOFF_MINUTES
# (counted from the last failure), even with the right password; a success resets the count.
# `manage.py axes_reset_username NAME` (or axes_reset) lifts a lockout by hand.
AUTHENTICATION_BACKENDS = [
    "sage.login_throttle.LoginThrottleBackend",
    "django.contrib.auth.backends.ModelBackend",
    "sage.roles.AdminRolePermissionBackend",  # the admin role's rights on Django's admin site
]
AXES_FAILURE_LIMIT = env.int("SAGE_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = env.int("SAGE_LOGIN_COOLOFF_MINUTES", 15, minimum=1) / 60  # hours, as axes reads a float
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# A refused attempt during the lockout does not restart it, so the time the lockout page names holds.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_CALLABLE = "sage.login_throttle.lockout_response"
AXES_CLIENT_IP_CALLABLE = "sage.login_throttle.client_ip"
# Successful logins are not logged to the database (the access log would grow with every login).
AXES_DISABLE_ACCESS_LOG = True
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", str(DATA_DIR / "static")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if env.bool("SAGE_MANIFEST_STATIC", not DEBUG)
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
# Tests and `runserver` serve straight from the finders; production serves the collected files.
WHITENOISE_USE_FINDERS = env.bool("WHITENOISE_USE_FINDERS", True)
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", str(DATA_DIR / "media")))

# Request size. A form post's fields (its files not counted) over this limit are refused with the 400
# page (templates/400.html) before a view reads them; the largest real one, a policy draft, is at most
# policy.services.MAX_POLICY_CHARS (50,000 characters). Files are not held in memory above
# FILE_UPLOAD_MAX_MEMORY_SIZE (Django's default, kept on purpose): they go to a temporary file that the
# importers read line by line, so a large import file is imported, not refused.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("SAGE_MAX_FORM_MB", 5, minimum=1) * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440

# --- Celery ---------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    # The embedded broker: kombu's filesystem transport. Web and worker share one folder, so a
    # real worker process consumes tasks with no broker server to install.
    _broker_dir = DATA_DIR / "broker"
    (_broker_dir / "queue").mkdir(parents=True, exist_ok=True)
    (_broker_dir / "processed").mkdir(parents=True, exist_ok=True)
    (_broker_dir / "control").mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # An unacknowledged task (its worker died) is redelivered after this many seconds.
        "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", 900, minimum=30),
        # Workers look for such tasks every 10 s; kombu's default scans only every 10th look (~100 s),
        # which delayed a killed worker's chunk well past the timeout (BENCHMARKS.md, "Faults").
        "unacked_restore_throttle": 1,
    }
if not CELERY_BROKER_URL.startswith(("redis://", "rediss://", "filesystem://")):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        f"CELERY_BROKER_URL={CELERY_BROKER_URL!r}: use redis://host:port/db or filesystem://."
    )
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", "") or None
# Work survives a killed worker: a task is acknowledged only after it finishes, and a worker
# reserves one task at a time so a crash strands as little as possible.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A worker whose broker went away (Redis restarting) keeps trying to reconnect for as long as it takes,
# rather than exiting after 100 tries; its running task goes on meanwhile (not cancelled: a chunk
# delivered again only finds the items nobody judged). bench/faults.py restarts Redis under a run.
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", "sage")
# Student training and student judge runs have queues of their own, so a GPU host can take them
# (`celery -A sage worker -Q student,distill`) while CPU hosts keep the default queue. A worker
# started without -Q consumes every queue listed here: the embedded demo's one worker does it all.
SAGE_DISTILL_QUEUE = env.str("SAGE_DISTILL_QUEUE", "distill")
SAGE_STUDENT_QUEUE = env.str("SAGE_STUDENT_QUEUE", "student")
CELERY_TASK_QUEUES = tuple(
    Queue(name, Exchange(name), routing_key=name) for name in dict.fromkeys((CELERY_TASK_DEFAULT_QUEUE, SAGE_DISTILL_QUEUE, SAGE_STUDENT_QUEUE))
)
# Training, evaluating and promoting students run on the distill queue (distill/tasks.py).
CELERY_TASK_ROUTES = {"distill.tasks.*": {"queue": SAGE_DISTILL_QUEUE}}

# plain: one line a record, the task's ids appended as key=value; json: one JSON object a line for a
# log shipper. Either way a task's lines carry run_id, chunk, task_id (sage/logging.py).
SAGE_LOG_FORMAT = env.choice("SAGE_LOG_FORMAT", "plain", ("plain", "json"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"()": "sage.logging.PlainFormatter"}, "json": {"()": "sage.logging.JsonFormatter"}},
    "filters": {"ids": {"()": "sage.logging.ContextFilter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": SAGE_LOG_FORMAT, "filters": ["ids"]}},
    "root": {"handlers": ["console"], "level": env.choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR"))},
    # The HTTP clients log every request at INFO: thousands of lines per judge run.
    "loggers": {
        **{name: {"level": "WARNING"} for name in ("httpx", "httpx2", "httpcore", "openai", "aiohttp")},
        # filesystem:// has no host by design; kombu warns about it on every connection.
        "kombu.connection": {"level": "ERROR"},
    },
}

# --- SAGE -----------------------------------------------------------------------------------
SAGE_DEMO_DIR = BASE_DIR / "demo"


def _judge_endpoints() -> dict[str, dict[str, str]]:
    """OpenAI-compatible endpoints by name. A judge version stores only the name, never a URL or key.

    SAGE_ENDPOINTS=local,openai plus, per name, SAGE_ENDPOINT_<NAME>_BASE_URL, _API_KEY, _JSON_MODE
    (json_schema for OpenAI-style structured outputs; json_object_schema for llama.cpp's server) and
    _CONTEXT_TOKENS (the model's context window, for servers that do not report it; 0: unknown) and
    _CLIENT (direct: SAGE's own lean HTTP client, the default; sdk: the official openai client).
    """
    endpoints = {}
    for name in env.list("SAGE_ENDPOINTS", ["local"]):
        prefix = f"SAGE_ENDPOINT_{name.upper().replace('-', '_')}_"
        local = name == "local"
        endpoints[name] = {
            "base_url": env.str(prefix + "BASE_URL", "http://127.0.0.1:8080/v1" if local else None),
            "api_key": env.str(prefix + "API_KEY", "not-needed" if local else None),
            "json_mode": env.choice(prefix + "JSON_MODE", "json_object_schema" if local else "json_schema",
                                    ("json_schema", "json_object_schema")),
            "context_tokens": env.int(prefix + "CONTEXT_TOKENS", 0, minimum=0) or None,
            "client": env.choice(prefix + "CLIENT", "direct", ("direct", "sdk")),
        }
    return endpoints


SAGE_JUDGE_ENDPOINTS = _judge_endpoints()
# Items per Celery chunk task of a judge run: small enough that a killed worker loses little, large
# enough to keep the judge's concurrency busy. 0 (the default): 100, or 4 waves of the judge version's
# concurrency where that is more (judges.services.judge_chunk_size).
SAGE_JUDGE_CHUNK_SIZE = env.int("SAGE_JUDGE_CHUNK_SIZE", 0, minimum=0)
SAGE_JUDGE_TIMEOUT_S = env.int("SAGE_JUDGE_TIMEOUT_S", 60, minimum=1)
# A run whose items ended in errors more often than this ends "finished with errors" (all: failed).
SAGE_JUDGE_ERROR_PERCENT = env.int("SAGE_JUDGE_ERROR_PERCENT", 50, minimum=0)
if SAGE_JUDGE_ERROR_PERCENT > 100:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(f"SAGE_JUDGE_ERROR_PERCENT={SAGE_JUDGE_ERROR_PERCENT} must be at most 100.")
# The stall sweep: an active run with no heartbeat for SAGE_JUDGE_STALL_S is resumed, and failed once
# SAGE_JUDGE_STALL_RESUMES resumes in a row judged nothing. Celery beat runs it every SAGE_JUDGE_SWEEP_S
# (`celery -A sage worker --beat`, or a separate `celery -A sage beat`); `manage.py judge_runs_sweep` by hand.
SAGE_JUDGE_STALL_S = env.int("SAGE_JUDGE_STALL_S", 600, minimum=1)
SAGE_JUDGE_STALL_RESUMES = env.int("SAGE_JUDGE_STALL_RESUMES", 2, minimum=0)
SAGE_JUDGE_SWEEP_S = env.int("SAGE_JUDGE_SWEEP_S", 60, minimum=1)
# Beat's own bookkeeping lives with the other state, not in the working directory.
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "judge-runs-sweep": {"task": "judges.tasks.judge_runs_sweep_task", "schedule": float(SAGE_JUDGE_SWEEP_S)},
    "distill-students-sweep": {"task": "distill.tasks.students_sweep_task", "schedule": float(SAGE_JUDGE_SWEEP_S)},
}
# Variant comparisons (comparisons/): a comparison's refresh task re-checks its judge run every
# SAGE_COMPARISON_POLL_S; beat refreshes unfinished ones too. Below SAGE_COMPARISON_MIN_COVERAGE (the
# judged share of the compared results) a comparison gives no verdict.
SAGE_COMPARISON_POLL_S = env.int("SAGE_COMPARISON_POLL_S", 2, minimum=1)
SAGE_COMPARISON_MIN_COVERAGE = env.float("SAGE_COMPARISON_MIN_COVERAGE", 0.9, minimum=0)
CELERY_BEAT_SCHEDULE["comparisons-sweep"] = {"task": "comparisons.tasks.comparisons_sweep_task",
                                             "schedule": float(SAGE_JUDGE_SWEEP_S)}
# Regression gates (gates/): a gate run's follow task re-checks its comparison every SAGE_GATE_POLL_S;
# beat refreshes every running gate run too, so one whose follow task was lost still ends.
SAGE_GATE_POLL_S = env.int("SAGE_GATE_POLL_S", 2, minimum=1)
CELERY_BEAT_SCHEDULE["gate-runs-sweep"] = {"task": "gates.tasks.gate_runs_sweep_task", "schedule": float(SAGE_JUDGE_SWEEP_S)}
# The address reports (sage_gate's JSON and JUnit) use for links, e.g. https://sage.example.com; empty: paths.
SAGE_BASE_URL = env.str("SAGE_BASE_URL", "")
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")

# --- Distillation (distill/) ------------------------------------------------------------------
# Hardware cost of a student judge, USD per hour of the host that runs it (a 2-core CPU VM by default):
# a student's cost per 1k judgments = measured seconds per 1k x this / 3600 (judges.costs).
SAGE_STUDENT_USD_PER_HOUR = env.float("SAGE_STUDENT_USD_PER_HOUR", 0.10, minimum=0)
# A training run whose task shows no sign of life for SAGE_DISTILL_STALL_S (it beats every couple of
# seconds while training) is resumed from its checkpoint by the sweep, and failed once
# SAGE_DISTILL_STALL_RESUMES resumes in a row made no progress.
SAGE_DISTILL_STALL_S = env.int("SAGE_DISTILL_STALL_S", 300, minimum=1)
SAGE_DISTILL_STALL_RESUMES = env.int("SAGE_DISTILL_STALL_RESUMES", 2, minimum=0)
# The default promotion bar of a surface with none of its own: student-human alpha >= ratio x teacher-human.
SAGE_DISTILL_PROMOTION_RATIO = env.float("SAGE_DISTILL_PROMOTION_RATIO", 0.9, minimum=0.01)
# Torch threads of a training or evaluation task; 0 = the cores this worker may use.
SAGE_DISTILL_TORCH_THREADS = env.int("SAGE_DISTILL_TORCH_THREADS", 0, minimum=0)
# The demo's student: trained on the demo's imported teacher runs (and NIST labels) when it loads.
SAGE_DISTILL_DEMO_TRAIN = env.bool("SAGE_DISTILL_DEMO_TRAIN", True)
