"""The Celery application: configured from Django settings (CELERY_* names).

Its beat schedule (CELERY_BEAT_SCHEDULE) runs the judge-run stall sweep; a worker started with
`--beat`, as `./run demo` starts it, or a separate `celery -A sage beat` sends it.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sage.settings")

app = Celery("sage")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
