"""The Celery application: configured from Django settings (CELERY_* names).

Its beat schedule (CELERY_BEAT_SCHEDULE) runs the judge-run stall sweep; a worker started with
`--beat`, as `./run demo` starts it, or a separate `celery -A sage beat` sends it.

Every task's log lines carry its task id and name (`sage.logging.log_context`, bound at task_prerun);
the tasks bind the ids of what they work on (run_id, chunk) themselves.
"""

from __future__ import annotations

import gc
import json
import os
from collections.abc import Collection, Iterable
from pathlib import Path

from celery import Celery
from celery.signals import task_postrun, task_prerun, worker_process_init, worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sage.settings")

app = Celery("sage")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

_bound: dict[str, object] = {}  # task id -> the log context token to reset at task_postrun


@worker_process_init.connect
@worker_ready.connect
def freeze_startup_objects(**_: object) -> None:
    """Move everything alive once the worker is set up (Django, the apps, the SDKs: ~170,000
    objects) out of the cyclic garbage collector's reach. A full collection walked them all, 80 ms
    holding the GIL in the middle of a chunk, while the engine's thread had answers waiting: about
    2% of a 1,280-item chunk at c=64 (BENCHMARKS.md "Full path"); frozen, it takes 3-8 ms. They are
    never garbage, and a forked pool process shares their pages instead of copying them when the
    collector would have written to them. Prefork pool processes (worker_process_init) and a solo
    or threads worker's own process (worker_ready)."""
    gc.freeze()


@task_prerun.connect
def _bind_task_ids(task_id=None, task=None, **_: object) -> None:
    from sage.logging import bind

    _bound[task_id] = bind(task_id=task_id, task=getattr(task, "name", None))


@task_postrun.connect
def _unbind_task_ids(task_id=None, **_: object) -> None:
    from sage.logging import unbind

    token = _bound.pop(task_id, None)
    if token is not None:
        unbind(token)


def _task_name(raw: bytes | str) -> str:
    try:
        return str(json.loads(raw).get("headers", {}).get("task", ""))
    except (ValueError, AttributeError):
        return ""


def waiting_tasks(queues: Iterable[str], names: Collection[str] | None = None) -> int | None:
    """How many task messages wait in `queues`, counting only tasks named in `names` when given;
    None when the broker cannot say.

    A sweep that asks whether its own kind of work is queued must not count the other tasks beat
    sent with it: four sweeps go out together, and with two busy workers the others still wait
    when one runs, so counting every message deferred the judge sweep for ever.
    """
    from kombu.exceptions import ChannelError

    try:
        with app.connection_for_write() as connection:
            channel = connection.default_channel
            count = 0
            for queue in dict.fromkeys(queues):
                if names is None:
                    try:
                        count += channel.queue_declare(queue=queue, passive=True).message_count
                    except ChannelError:
                        pass  # Redis has no key for an empty queue
                    continue
                count += sum(1 for raw in _queued_messages(channel, queue) if _task_name(raw) in names)
            return count
    except Exception:  # noqa: BLE001 - a sweep goes on when the broker is down
        import logging

        logging.getLogger(__name__).warning("could not read the broker's queues", exc_info=True)
        return None


def _queued_messages(channel, queue: str) -> Iterable[bytes | str]:
    """The raw messages waiting in `queue`, read without taking them (Redis lists, or the
    filesystem broker's files)."""
    if hasattr(channel, "_q_for_pri"):  # Redis: one list per priority step
        client = channel.client
        for priority in channel.priority_steps:
            key, start, page = channel._q_for_pri(queue, priority), 0, 500
            while True:
                batch = client.lrange(key, start, start + page - 1)
                yield from batch
                if len(batch) < page:
                    break
                start += page
        return
    folder = getattr(channel, "data_folder_in", None)
    if folder:
        for path in Path(folder).glob(f"*.{queue}.msg"):
            try:
                yield path.read_bytes()
            except OSError:
                continue  # taken by a worker meanwhile
        return
    # Settings accept only Redis and the filesystem broker; another transport is "cannot say" (None)
    # through waiting_tasks' except, and the sweep goes on without the backlog check.
    raise NotImplementedError(f"cannot read the messages of a {type(channel).__module__} broker")
