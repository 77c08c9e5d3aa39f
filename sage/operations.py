"""Operational reads: readiness for /readyz and the picture `manage.py sage_status` prints.

The broker is reached through a kombu connection built from Django settings on each call (not the
Celery app's cached configuration), so a check always reflects the settings in force, and a short
timeout keeps a load balancer's probe from hanging on a dead broker.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field

from django.conf import settings
from django.db import connection as db_connection
from kombu import Connection

logger = logging.getLogger(__name__)

# Long enough for a broker on another host, short enough for a readiness probe (typically 5-10 s).
BROKER_TIMEOUT_S = 2.0
# The kombu filesystem transport's folders: the embedded broker is usable when all exist and are writable.
FILESYSTEM_FOLDERS = ("data_folder_in", "data_folder_out", "processed_folder", "control_folder")


def _is_filesystem_broker() -> bool:
    return settings.CELERY_BROKER_URL.startswith("filesystem://")


def _broker_connection(timeout_s: float) -> Connection:
    return Connection(settings.CELERY_BROKER_URL, connect_timeout=timeout_s,
                      transport_options=dict(getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {}) or {}))


def database_check() -> bool:
    try:
        with db_connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return True
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"; the log keeps the reason
        # One line, no traceback: a probe polls every few seconds while the database is away.
        logger.warning("readiness: the database did not answer: %s", exc)
        return False


def broker_check(timeout_s: float = BROKER_TIMEOUT_S) -> bool:
    if _is_filesystem_broker():
        # kombu's filesystem transport "connects" to anything; what matters is that its folders
        # exist and this process may write there (the web process queues tasks as files).
        options = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {}) or {}
        for key in FILESYSTEM_FOLDERS:
            folder = options.get(key)
            if folder and not (os.path.isdir(folder) and os.access(folder, os.W_OK | os.X_OK)):
                logger.warning("readiness: broker folder %s (%s) is missing or not writable", key, folder)
                return False
        return True
    broker = _broker_connection(timeout_s)
    try:
        broker.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout_s)
        return True
    except Exception as exc:  # noqa: BLE001 - as above; the message may name hosts, so it goes to the log only
        logger.warning("readiness: the broker is unreachable: %s", exc)
        return False
    finally:
        broker.release()


@dataclass(frozen=True)
class Readiness:
    checks: dict[str, bool]

    @property
    def ready(self) -> bool:
        return all(self.checks.values())

    def as_dict(self) -> dict:
        """The /readyz body: what was checked and what failed; never hosts, URLs or error text."""
        body: dict = {"status": "ok" if self.ready else "unavailable",
                      "checks": {name: "ok" if ok else "failed" for name, ok in self.checks.items()}}
        if not self.ready:
            body["failed"] = [name for name, ok in self.checks.items() if not ok]
        return body


def readiness() -> Readiness:
    return Readiness(checks={"database": database_check(), "broker": broker_check()})


# --- sage_status ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StalledRun:
    kind: str  # "judge run" or "student training"
    pk: int
    name: str
    quiet_s: int
    stall_s: int  # the threshold it is past


@dataclass
class SageStatus:
    broker_transport: str
    broker_reachable: bool
    # Messages waiting per queue name; None where the broker could not be asked.
    queue_depths: dict[str, int | None] = field(default_factory=dict)
    # Hostnames of workers that answered the control ping; None where the ping could not be sent.
    workers: list[str] | None = None
    stalled: list[StalledRun] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def queue_names() -> list[str]:
    return [queue.name for queue in settings.CELERY_TASK_QUEUES]


def _queue_depths(broker: Connection) -> dict[str, int | None]:
    """Waiting messages per queue: Redis counts the list (LLEN, over its priority lists), the
    filesystem transport counts the message files of the queue in its folder."""
    from kombu.exceptions import ChannelError

    depths: dict[str, int | None] = {}
    channel = broker.default_channel
    for name in queue_names():
        try:
            depths[name] = channel.queue_declare(queue=name, passive=True).message_count
        except ChannelError:
            depths[name] = 0  # Redis has no key for an empty queue
        except Exception:  # noqa: BLE001 - one unreadable queue should not hide the others
            logger.warning("sage_status: could not read the length of queue %s", name, exc_info=True)
            depths[name] = None
    return depths


def _workers(broker: Connection, timeout_s: float) -> list[str]:
    from sage.celery import app

    replies = app.control.ping(timeout=timeout_s, connection=broker) or []
    return sorted(hostname for reply in replies for hostname in reply)


def stalled_runs() -> list[StalledRun]:
    """Judge runs and student trainings RUNNING whose heartbeat is older than their stall sweep
    tolerates; the models' own is_stalled decides, so this list and the sweeps agree."""
    from distill.models import StudentModel
    from judges.models import JudgeRun

    stalled: list[StalledRun] = []
    for run in JudgeRun.objects.filter(status=JudgeRun.Status.RUNNING).select_related("judge_version__judge", "sample"):
        if run.is_stalled:
            name = f"{run.judge_version} on {run.sample}"
            stalled.append(StalledRun("judge run", run.pk, name, int(run.quiet_s or 0),
                                      settings.SAGE_JUDGE_STALL_S))
    # only(): is_stalled needs these; a training's history and manifest can be large.
    for student in StudentModel.objects.filter(status=StudentModel.Status.RUNNING).only("name", "status", "heartbeat_at"):
        if student.is_stalled:
            stalled.append(StalledRun("student training", student.pk, student.name, int(student.quiet_s or 0),
                                      settings.SAGE_DISTILL_STALL_S))
    return stalled


def sage_status(*, ping_timeout_s: float = 2.0) -> SageStatus:
    transport = settings.CELERY_BROKER_URL.split("://", 1)[0]
    reachable = broker_check()
    status = SageStatus(broker_transport=transport, broker_reachable=reachable,
                        queue_depths={name: None for name in queue_names()})
    if reachable:
        broker = _broker_connection(BROKER_TIMEOUT_S)
        try:
            status.queue_depths = _queue_depths(broker)
            try:
                status.workers = _workers(broker, ping_timeout_s)
            except Exception:  # noqa: BLE001 - report the rest even when the ping cannot be sent
                logger.warning("sage_status: the worker ping could not be sent", exc_info=True)
        finally:
            broker.release()
    status.stalled = stalled_runs()
    return status
