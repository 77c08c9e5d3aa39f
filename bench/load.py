"""Benchmark: concurrent reviewers labelling against a real server (gunicorn), issue 15 "Load".

    ./run bench .venv/bin/python bench/load.py                      # PostgreSQL, 20 reviewers, 120 s
    .venv/bin/python bench/load.py --sqlite --reviewers 5           # the embedded default (SQLite)

Builds its own data through the services (a surface, --queries × --depth items of traffic, a published
policy, --reviewers reviewer accounts with passwords, one review queue with --overlap over a top-k
sample), starts gunicorn (`sage.wsgi`, --workers × --threads, as `./run demo` does) on a free loopback
port, then runs one thread per reviewer for --seconds, think time --think (default 0). Each reviewer does what the
browser does:

  login-get    GET /accounts/login/                         (CSRF cookie + form token)
  login-post   POST /accounts/login/                        (username, password, csrfmiddlewaretoken)
  label-page-first, label-page
               GET /review/queues/<id>/label/               (the full page with the next item: once after
                                                             login, then every --reload-every labels)
  label-post   POST /review/queues/<id>/label/<a>/submit/   (htmx: HX-Request + X-CSRFToken headers,
                                                             one level per rubric dimension; the answer
                                                             is the #labeller fragment with the next item)

Times are client-side wall times per request (loopback, so page time as the browser would see it
less rendering). At the end the database is checked: labels in the DB == successful label POSTs, no
label revised (every label is revision 1), every item holds at most `overlap` live assignments, no
(item, reviewer) pair twice. Prints a markdown table and the load average before and after.
Everything the script makes lives in a temporary data directory (SQLite) or the database it is
given (PostgreSQL); bounded in time and in requests, loopback only.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PASSWORD = "load-bench-password-1"
ASSIGNMENT_RE = re.compile(r'id="labeller" data-assignment="(\d*)"')
CSRF_INPUT_RE = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


@dataclass
class Stats:
    times: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    error_samples: list[str] = field(default_factory=list)
    labels_ok: int = 0
    queue_done: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, kind: str, seconds: float, ok: bool, detail: str = "") -> None:
        with self.lock:
            self.times[kind].append(seconds)
            if not ok:
                self.errors[kind] += 1
                if len(self.error_samples) < 10:
                    self.error_samples.append(f"{kind}: {detail}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    idx = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[idx]


# --- data ------------------------------------------------------------------------------------------

def build_data(args: argparse.Namespace) -> tuple[int, list[str], int]:
    """(queue id, reviewer usernames, sample size), made through the services like a user would."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from policy.rubric import trec_relevance_dimension
    from policy.services import policy_create, policy_version_publish, surface_get_or_create
    from review.services import review_queue_create
    from sage.roles import ensure_role_groups
    from traffic.services import sample_draw, traffic_import, variant_get_or_create

    User = get_user_model()
    ensure_role_groups()
    admin, _ = User.objects.get_or_create(username="load-admin", defaults={"is_superuser": True, "is_staff": True})
    surface = surface_get_or_create(slug="load-bench", name="Load bench")
    variant_get_or_create(surface=surface, name="control", role="control")
    rows = (json.dumps({"variant": "control", "query": f"load query {q}", "rank": r, "doc_id": f"q{q}-d{r}",
                        "title": f"Document {r} for query {q}",
                        "body": f"Passage {r} answering load query {q}. " * 8, "url": f"https://example.com/{q}/{r}"})
            .encode() + b"\n" for q in range(args.queries) for r in range(1, args.depth + 1))
    traffic_import(surface=surface, source=io.BytesIO(b"".join(rows)), filename="load.jsonl", user=admin)
    draft = policy_create(surface=surface, slug="load-relevance", name="Load relevance", text="# Relevance\n",
                          rubric={"dimensions": [trec_relevance_dimension()]}, user=admin)
    version = policy_version_publish(draft=draft, user=admin, change_note="load bench",
                                     expected_lock_version=draft.lock_version)
    sample = sample_draw(surface=surface, name="load sample", strategy="top_k",
                         params={"k": args.depth, "variants": ["control"]}, seed=1, user=admin)
    reviewer_group = Group.objects.get(name="reviewer")
    names = []
    for i in range(args.reviewers):
        user = User(username=f"load-rev-{i:02d}")
        user.set_password(PASSWORD)
        user.save()
        user.groups.add(reviewer_group)
        names.append(user.username)
    queue = review_queue_create(name="Load queue", sample=sample, policy_version=version,
                                reviewers=User.objects.filter(username__in=names), overlap=args.overlap, user=admin)
    return queue.pk, names, sample.item_count


# --- the reviewers ---------------------------------------------------------------------------------

def reviewer(base: str, username: str, queue_id: int, phase: dict[str, float], barrier: threading.Barrier,
             max_requests: int, stats: Stats, seed: int, reload_every: int, think: float = 0.0) -> None:
    """Log in and open the label page, wait for every reviewer to get there (the barrier), then label
    until phase["deadline"]."""
    try:
        match = _sign_in(base, username, queue_id, stats)
    finally:
        barrier.wait()
    if match is not None:
        _label(match, phase["deadline"], max_requests, stats, seed, reload_every, think)


def _sign_in(base: str, username: str, queue_id: int, stats: Stats):
    import requests

    session = requests.Session()
    session.headers["User-Agent"] = "sage-load-bench"

    def call(kind: str, method: str, path: str, expect: tuple[int, ...] = (200,), **kw) -> requests.Response | None:
        start = time.perf_counter()
        try:
            response = session.request(method, base + path, timeout=60, allow_redirects=False, **kw)
        except requests.RequestException as exc:
            stats.record(kind, time.perf_counter() - start, False, repr(exc)[:200])
            return None
        elapsed = time.perf_counter() - start
        ok = response.status_code in expect
        stats.record(kind, elapsed, ok, f"HTTP {response.status_code} {response.text[:160]!r}")
        return response if ok else None

    page = call("login-get", "GET", "/accounts/login/")
    if page is None:
        return None
    token = CSRF_INPUT_RE.search(page.text)
    if token is None:
        stats.record("login-get", 0.0, False, "no csrfmiddlewaretoken in the login form")
        return None
    done = call("login-post", "POST", "/accounts/login/", expect=(302,),
                data={"username": username, "password": PASSWORD, "csrfmiddlewaretoken": token.group(1)},
                headers={"Referer": base + "/accounts/login/"})
    if done is None:
        return None
    label_url = f"/review/queues/{queue_id}/label/"
    page = call("label-page-first", "GET", label_url)
    if page is None:
        return None
    csrf = session.cookies.get("csrftoken")
    match = ASSIGNMENT_RE.search(page.text)
    htmx_headers = {"HX-Request": "true", "HX-Target": "labeller", "HX-Current-URL": base + label_url,
                    "X-CSRFToken": csrf or "", "Referer": base + label_url}
    return session, call, label_url, htmx_headers, match


def _label(state, deadline: float, max_requests: int, stats: Stats, seed: int, reload_every: int,
           think: float = 0.0) -> None:
    import random

    session, call, label_url, htmx_headers, match = state
    requests_left = max_requests
    # A person reads the result before choosing a level: `think` seconds on average (0.5x-1.5x).
    pause = random.Random(seed)
    value = seed % 4
    while match and match.group(1) and time.monotonic() < deadline and requests_left > 0:
        requests_left -= 1
        if think:
            time.sleep(think * pause.uniform(0.5, 1.5))
        assignment = match.group(1)
        value = (value + 1) % 4
        response = call("label-post", "POST", f"{label_url}{assignment}/submit/",
                        data={"dim-relevance": str(value), "rationale": "", "time_spent_ms": "0"},
                        headers=htmx_headers)
        if response is None:
            # A refused label: fetch the labeller again (what a reload does) and carry on.
            page = call("label-page", "GET", label_url)
            match = ASSIGNMENT_RE.search(page.text) if page is not None else None
            continue
        with stats.lock:
            stats.labels_ok += 1
        match = ASSIGNMENT_RE.search(response.text)
        if reload_every and (max_requests - requests_left) % reload_every == 0:
            # Now and then a reviewer reloads the page (the full page, not the htmx fragment).
            page = call("label-page", "GET", label_url)
            match = ASSIGNMENT_RE.search(page.text) if page is not None else None
    if match and not match.group(1):
        with stats.lock:
            stats.queue_done += 1


# --- the server ------------------------------------------------------------------------------------

def start_server(env: dict[str, str], port: int, workers: int, threads: int, log_path: Path) -> subprocess.Popen:
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("gunicorn")), "sage.wsgi", "--bind", f"127.0.0.1:{port}",
         "--workers", str(workers), "--threads", str(threads), "--error-logfile", "-", "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    import requests

    for _ in range(300):
        if proc.poll() is not None:
            sys.exit(f"gunicorn exited: see {log_path}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except requests.RequestException:
            pass
        time.sleep(0.2)
    proc.terminate()
    sys.exit(f"gunicorn did not answer /healthz: see {log_path}")


def workers_cpu_s(master_pid: int) -> float | None:
    """User + system CPU seconds of gunicorn's workers so far (Linux /proc; None elsewhere). The load
    average of a shared machine inflates wall times; CPU per request does not depend on it as much."""
    try:
        children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
        ticks = 0
        for pid in children:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _proc_cpu_ticks(pid: int, *, children: bool) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime: children that exited and were waited for
    return ticks


def postgres_cpu_s(postmaster_pid: int | None) -> float | None:
    """CPU seconds of a local PostgreSQL cluster so far: its postmaster's exited children plus the live
    ones (backends, autovacuum, writers). None when the cluster is not on this machine."""
    if postmaster_pid is None:
        return None
    try:
        ticks = _proc_cpu_ticks(postmaster_pid, children=True)
        for pid in Path(f"/proc/{postmaster_pid}/task/{postmaster_pid}/children").read_text().split():
            try:
                ticks += _proc_cpu_ticks(int(pid), children=False)
            except OSError:
                pass  # exited meanwhile: in cutime at the next reading
        return ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def postmaster_pid() -> int | None:
    from django.db import connection

    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend = cur.fetchone()[0]
    try:
        return int(Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()[1])  # its parent
    except (OSError, ValueError, IndexError):
        return None


def check_database(queue_id: int, overlap: int) -> dict[str, int]:
    from django.db.models import Count, Q
    from django.utils import timezone

    from review.models import Assignment, HumanLabel

    live = Q(status=Assignment.Status.DONE) | Q(status=Assignment.Status.ASSIGNED, expires_at__gt=timezone.now())
    assignments = Assignment.objects.filter(queue_id=queue_id)
    return {
        "labels": HumanLabel.objects.filter(queue_id=queue_id).count(),
        "labels_revised": HumanLabel.objects.filter(queue_id=queue_id, revision__gt=1).count(),
        "assignments_done": assignments.filter(status=Assignment.Status.DONE).count(),
        "items_over_overlap": (assignments.filter(live).values("item_id").annotate(n=Count("id"))
                               .filter(n__gt=overlap).count()),
        "pairs_twice": (assignments.values("item_id", "reviewer_id").annotate(n=Count("id"))
                        .filter(n__gt=1).count()),
        "items_done_by_overlap": (assignments.filter(status=Assignment.Status.DONE).values("item_id")
                                  .annotate(n=Count("id")).filter(n=overlap).count()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sqlite", action="store_true", help="the embedded default in a temporary data dir")
    parser.add_argument("--reviewers", type=int, default=20)
    parser.add_argument("--think", type=float, default=0.0,
                        help="mean seconds a reviewer reads an item before labelling it (0: none)")
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--max-labels", type=int, default=100_000, help="per reviewer; a bound on the loop")
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--depth", type=int, default=10)
    parser.add_argument("--overlap", type=int, default=2)
    parser.add_argument("--workers", type=int, default=None, help="gunicorn workers (PostgreSQL 4, SQLite 2)")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker")
    parser.add_argument("--reload-every", type=int, default=20,
                        help="each reviewer reloads the full label page after this many labels (0: never)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dir (SQLite)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="sage-load-"))
    os.environ["SAGE_DATA_DIR"] = str(tmp)
    if args.sqlite:
        os.environ.pop("DATABASE_URL", None)
        os.environ.pop("CELERY_BROKER_URL", None)
    elif not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        sys.exit("PostgreSQL: run under ./run bench (or set DATABASE_URL=postgres://…); --sqlite for the embedded default")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sage.settings")
    os.environ.setdefault("SAGE_MANIFEST_STATIC", "false")  # no collectstatic: the bench fetches no static files
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("SECRET_KEY", "load-bench-secret-key-load-bench-secret-key-0123456789")
    workers = args.workers or (2 if args.sqlite else 4)

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    proc = None
    try:
        call_command("migrate", verbosity=0)
        started = time.perf_counter()
        queue_id, names, items = build_data(args)
        build_s = time.perf_counter() - started
        vendor = connection.vendor
        pg_pid = postmaster_pid()
        connection.close()  # the server's processes are the writers from here on

        port = free_port()
        proc = start_server(dict(os.environ), port, workers, args.threads, tmp / "gunicorn.log")
        base = f"http://127.0.0.1:{port}"
        # Warm every worker (imports, template loading) before the clock starts: a served site is warm.
        import requests

        warm = [threading.Thread(target=lambda: requests.get(base + "/accounts/login/", timeout=120))
                for _ in range(workers * args.threads)]
        for t in warm:
            t.start()
        for t in warm:
            t.join()
        stats = Stats()
        load_before = os.getloadavg()
        phase: dict[str, float] = {}

        def labelling_starts() -> None:
            # Every reviewer is signed in with the label page open: the clock and the CPU count start.
            phase["t0"] = time.perf_counter()
            phase["cpu"] = workers_cpu_s(proc.pid) or 0.0
            phase["pg_cpu"] = postgres_cpu_s(pg_pid) or 0.0
            phase["deadline"] = time.monotonic() + args.seconds
            phase["requests"] = sum(len(v) for v in stats.times.values())

        barrier = threading.Barrier(len(names), action=labelling_starts, timeout=600)
        threads = [threading.Thread(target=reviewer, args=(base, name, queue_id, phase, barrier, args.max_labels,
                                                           stats, i, args.reload_every, args.think), daemon=True) for i, name in enumerate(names)]
        t_login = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=args.seconds + 700)
        login_wall = phase["t0"] - t_login
        wall = time.perf_counter() - phase["t0"]
        cpu_before = phase["cpu"]
        load_after = os.getloadavg()
        alive = sum(t.is_alive() for t in threads)
        cpu_after = workers_cpu_s(proc.pid)
        pg_cpu = postgres_cpu_s(pg_pid)
        pg_cpu = None if pg_cpu is None else pg_cpu - phase["pg_cpu"]
        proc.terminate()
        proc.wait(timeout=30)
        proc = None
        check = check_database(queue_id, args.overlap)
    finally:
        if proc is not None:
            proc.terminate()
    n_requests = sum(len(v) for v in stats.times.values()) - int(phase["requests"])
    n_errors = sum(stats.errors.values())
    print(f"\n## Load — {args.reviewers} reviewers, {vendor}, gunicorn {workers} workers × {args.threads} threads, "
          f"{args.seconds:.0f} s, think time {args.think:g} s\n")
    print(f"queue {queue_id}: {items:,} items, overlap {args.overlap}; data built in {build_s:.1f} s; "
          f"sign-in phase (login + label page, all reviewers at once) {login_wall:.1f} s; labelling phase "
          f"{wall:.1f} s; reviewers who ran out of items: {stats.queue_done}; threads still running: {alive}\n")
    print("| request | n | p50 | p95 | p99 | max | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for kind in ("login-get", "login-post", "label-page-first", "label-page", "label-post"):
        t = stats.times.get(kind, [])
        if not t:
            continue
        ms = [x * 1000 for x in t]
        print(f"| {kind} | {len(t):,} | {statistics.median(ms):.0f} ms | {percentile(ms, 95):.0f} ms | "
              f"{percentile(ms, 99):.0f} ms | {max(ms):.0f} ms | {stats.errors.get(kind, 0)} |")
    print(f"\nlabelling phase: requests/s {n_requests / wall:.1f} ({n_requests:,} requests; {n_errors} errors "
          f"in both phases); "
          f"labels/s {stats.labels_ok / wall:.1f}")
    if cpu_before is not None and cpu_after is not None and n_requests:
        print(f"server CPU (gunicorn workers, user+sys) {cpu_after - cpu_before:.1f} s = "
              f"{(cpu_after - cpu_before) / n_requests * 1000:.1f} ms per request")
    if pg_cpu is not None and n_requests:
        print(f"PostgreSQL CPU (the whole cluster) {pg_cpu:.1f} s = {pg_cpu / n_requests * 1000:.1f} ms per request")
    print(f"successful label POSTs {stats.labels_ok:,}; database: {check}")
    lost = check["labels"] - stats.labels_ok
    ok = (lost == 0 and check["assignments_done"] == stats.labels_ok and check["items_over_overlap"] == 0
          and check["pairs_twice"] == 0 and check["labels_revised"] == 0)
    print(f"consistency: {'OK' if ok else 'FAILED'} (labels in DB − successful POSTs = {lost})")
    if stats.error_samples:
        print("first errors:\n  " + "\n  ".join(stats.error_samples))
        log = (tmp / "gunicorn.log").read_text(errors="replace").splitlines()
        print("server log, last lines:\n  " + "\n  ".join(log[-40:]))
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}; load average before {tuple(round(x, 2) for x in load_before)}, "
          f"after {tuple(round(x, 2) for x in load_after)}")
    if args.keep:
        print(f"data kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    if not ok or n_errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
