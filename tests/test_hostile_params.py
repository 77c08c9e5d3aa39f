"""Hostile query-string, form and path values never become a 500, on any view.

The URL patterns come from the resolver, so a new view cannot be forgotten: every pattern must have
real ids to fill it with (`_path_kwargs`), or this test fails and names it. The data is the demo's,
loaded once per module, so every page has something to show.
"""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]  # SQLite overflows where PostgreSQL does not

# The values the trust review found to end in 500s, and their neighbours.
HOSTILE = ["²", "٣", "9" * 25, "-9" + "9" * 24, "--1", "-1", "0", "abc", "relevance__gt", "1e3", " 1 ", "",
           "<script>alert(1)</script>", "null", "[]", "%00"]
# Every parameter name any view reads (grep request.GET / request.POST), plus rubric fields.
PARAMS = ["policy", "run", "dimension", "metric", "page", "a", "b", "status", "error_kind", "min_distance",
          "clause", "segment", "label", "tag", "q", "format", "surface", "filename", "revision", "sample",
          "version", "judge", "lock_version", "ids", "text", "op", "dim-count", "dim-relevance", "dim-0-key",
          "dim-0-level-count", "corrected_value", "resolution", "time_spent_ms", "confirm", "bypass_cache",
          "change_note", "note", "amendment", "accept", "action", "querystring", "min", "k", "seed", "size",
          "strategy", "name", "variant", "control", "treatment", "queue", "overlap", "reviewers", "passages",
          "include_flagged"]
SKIP_PREFIXES = ("admin/", "accounts/")


def _patterns(resolver: URLResolver, prefix: str = "", namespace: str = "") -> list[tuple[str, str, URLPattern]]:
    found = []
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            ns = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            found += _patterns(entry, prefix + str(entry.pattern), ns)
        else:
            found.append((prefix + str(entry.pattern), f"{namespace}{entry.name}" if entry.name else "", entry))
    return found


def _path_kwargs() -> dict[str, dict[str, int]]:
    """Real ids for every URL pattern with path parameters, by URL name."""
    from calibration.models import Disagreement
    from judges.models import Judge, JudgeRun, Judgment
    from policy.models import Policy
    from precedent.models import Precedent
    from review.models import Assignment, ReviewQueue
    from sage.models import WorkerPing
    from traffic.models import Sample

    policy = Policy.objects.order_by("pk").first()
    version = policy.versions.order_by("pk").first()
    runs = list(JudgeRun.objects.order_by("pk").values_list("pk", flat=True))
    assignment = Assignment.objects.order_by("pk").first()
    if assignment is None:  # the demo labels by import; draw one assignment the way a reviewer does
        from django.contrib.auth import get_user_model

        from review.services import assignment_next

        assignment = assignment_next(queue=ReviewQueue.objects.order_by("pk").first(),
                                     reviewer=get_user_model().objects.get(username="demo-admin"))
    ping = WorkerPing.objects.order_by("pk").first()
    from comparisons.models import Comparison

    comparison = Comparison.objects.order_by("pk").first()
    return {
        "policy:detail": {"pk": policy.pk}, "policy:diff": {"pk": policy.pk},
        "policy:version": {"pk": policy.pk, "version_pk": version.pk},
        "policy:rubric-json": {"pk": policy.pk, "version_pk": version.pk},
        **{f"policy:{n}": {"pk": policy.pk} for n in ("draft", "draft-start", "draft-preview", "draft-rubric",
                                                       "draft-publish", "draft-discard")},
        "precedent:detail": {"pk": Precedent.objects.order_by("pk").first().pk},
        **{f"judges:{n}": {"pk": Judge.objects.order_by("pk").first().pk}
           for n in ("detail", "import", "api-judgments-import")},
        **{f"judges:{n}": {"pk": runs[0]} for n in ("run", "run-cancel", "run-resume", "api-run", "run-export")},
        "judges:judgment": {"pk": Judgment.objects.order_by("pk").first().pk},
        **{f"calibration:{n}": {"pk": runs[0]} for n in ("run", "cell", "find-disagreements", "rejudge")},
        "calibration:compare": {"old": runs[0], "new": runs[-1]},
        "calibration:triage-detail": {"pk": Disagreement.objects.order_by("pk").first().pk},
        "traffic:sample-detail": {"pk": Sample.objects.order_by("pk").first().pk},
        **{f"review:{n}": {"pk": assignment.queue_id} for n in ("queue-detail", "label", "queue-labels-export")},
        **{f"review:{n}": {"pk": assignment.queue_id, "assignment_id": assignment.pk}
           for n in ("label-item", "label-submit", "label-skip", "label-back")},
        "ping-detail": {"pk": ping.pk if ping else 1},
        **{f"comparisons:{n}": {"pk": comparison.pk} for n in ("detail", "review-slice", "recompute")},
        "comparisons:query": {"pk": comparison.pk, "query_id": comparison.results["per_query"][0]["query_id"]},
        **_distill_kwargs(),
        **_gates_kwargs(),
        **_injection_kwargs(),
    }


def _injection_kwargs() -> dict[str, dict[str, int]]:
    """A judge version with a model and an injection check of it, made directly: only their ids matter here."""
    from judges.models import InjectionCheck, JudgeVersion

    version = JudgeVersion.objects.filter(backend="openai").order_by("pk").first()
    check = InjectionCheck.objects.order_by("pk").first() or InjectionCheck.objects.create(
        judge_version=version, passages=2, status="succeeded", n=2, rose=1, mean_delta=0.5)
    return {"judges:injection-check-new": {"pk": version.pk}, "judges:injection-check": {"pk": check.pk}}


def _distill_kwargs() -> dict[str, dict[str, int]]:
    from distill.models import StudentModel, TrainingSet

    training_set = TrainingSet.objects.order_by("pk").first()
    student = StudentModel.objects.order_by("pk").first()
    return {
        **{f"distill:{n}": {"pk": training_set.pk} for n in ("training-set", "student-new")},
        **{f"distill:{n}": {"pk": student.pk if student else 1}
           for n in ("student", "student-cancel", "student-resume", "student-evaluate", "student-promote")},
    }


def _gates_kwargs() -> dict[str, dict]:
    """A gate on the demo's surface, a run of it and a token, made directly: only their ids matter here."""
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from gates.models import Gate, GateRun
    from gates.services import gate_create, token_create
    from judges.models import JudgeVersion
    from traffic.models import Variant

    admin = get_user_model().objects.get(username="demo-admin")
    gate = Gate.objects.order_by("pk").first()
    if gate is None:
        version = JudgeVersion.objects.order_by("pk").first()
        variants = Variant.objects.filter(surface=version.judge.surface).order_by("role", "pk")
        gate = gate_create(user=admin, name="demo-gate", surface=version.judge.surface, baseline=variants[0],
                           judge_version=version, metrics={"ndcg@10": -0.02})
        GateRun.objects.create(gate=gate, candidate=variants.last(), source="ui", status="error", message="test",
                               deadline_at=timezone.now() + timedelta(minutes=1))
        token_create(owner=admin, name="hostile", scopes=["gate:run"], user=admin)
    run = GateRun.objects.order_by("pk").first()
    token = admin.scoped_tokens.order_by("pk").first()
    return {
        **{f"gates:{n}": {"pk": gate.pk} for n in ("detail", "edit", "run-create")},
        "gates:run": {"pk": run.pk}, "gates:token-revoke": {"pk": token.pk},
        "gates:api-runs": {"name": gate.name}, "gates:api-run": {"name": gate.name, "run_id": run.pk},
    }


@pytest.fixture(scope="module")
def demo(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        call_command("load_demo", verbosity=0)
        yield _path_kwargs()
        call_command("flush", interactive=False, verbosity=0)


def _admin_client() -> Client:
    from django.contrib.auth import get_user_model

    client = Client(raise_request_exception=False)
    client.force_login(get_user_model().objects.get(username="demo-admin"))
    return client


def _urls(kwargs_by_name: dict[str, dict[str, int]]) -> list[tuple[str, str]]:
    urls, missing = [], []
    for pattern, name, entry in _patterns(get_resolver()):
        if pattern.startswith(SKIP_PREFIXES):
            continue
        if entry.pattern.converters:
            if name not in kwargs_by_name:
                missing.append(name or pattern)
                continue
            urls.append((name, reverse(name, kwargs=kwargs_by_name[name])))
        else:
            urls.append((name, reverse(name)))
    assert not missing, f"URL patterns with no ids in _path_kwargs (add them): {missing}"
    return urls


def _summary(failures: list[str]) -> str:
    """One line per method and URL with the values that broke it; the list can be long."""
    by_url: dict[str, list[str]] = {}
    for line in failures:
        head, _, value = line.partition(" with every parameter = ")
        by_url.setdefault(head, []).append(value.rsplit(":", 1)[0])
    return f"{len(failures)} answers were 5xx:\n" + "\n".join(f"{url}: {', '.join(v)}" for url, v in by_url.items())


def test_no_view_answers_500_to_hostile_parameters(demo):
    client = _admin_client()
    failures = []
    for name, url in _urls(demo):
        for value in HOSTILE:
            data = {p: value for p in PARAMS}
            for method in (client.get, client.post):
                response = method(url, data)
                if response.status_code >= 500:
                    failures.append(f"{method.__name__.upper()} {url} with every parameter = {value!r}: "
                                    f"{response.status_code}")
    assert not failures, _summary(failures)


CULPRITS = [("policy", "²"), ("run", "9" * 25), ("dimension", "relevance__gt"), ("dim-relevance", "--1"),
            ("revision", "abc"), ("lock_version", "abc"), ("label", "relevance__gt=1"), ("page", "9" * 25)]


def test_each_known_culprit_alone_is_harmless(demo):
    """Alone, so that no other malformed parameter makes a view give up before reading this one."""
    client = _admin_client()
    failures = []
    for name, url in _urls(demo):
        for param, value in CULPRITS:
            for method in (client.get, client.post):
                response = method(url, {param: value})
                if response.status_code >= 500:
                    failures.append(f"{method.__name__.upper()} {url}?{param}={value!r}: {response.status_code}")
    assert not failures, "\n".join(failures)


def test_ids_beyond_64_bits_in_the_path_are_404s_not_500s(demo):
    client = _admin_client()
    huge = int("9" * 25)
    failures = []
    for pattern, name, entry in _patterns(get_resolver()):
        if pattern.startswith(SKIP_PREFIXES) or not entry.pattern.converters:
            continue
        url = reverse(name, kwargs={k: huge for k in demo[name]})
        for method in (client.get, client.post):
            response = method(url)
            if response.status_code >= 500:
                failures.append(f"{method.__name__.upper()} {url}: {response.status_code}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("body", [
    '{"judge_version": 10000000000000000000000000, "sample": 1}', '{"judge_version": "²", "sample": "1"}',
    '{"judge_version": -1, "sample": 1}', '{"judge_version": true, "sample": 1}', '[]', '"x"', '{', '\udcff',
])
def test_the_run_api_answers_a_hostile_body_with_a_json_400(demo, body):
    response = _admin_client().post("/judges/api/runs/", data=body.encode("utf-8", "surrogateescape"),
                                    content_type="application/json")
    assert response.status_code == 400, response.content
    assert response.json()["error"] == "bad_request"


def _writes(queries) -> list[str]:
    # The session row is the framework's own bookkeeping, not the page's.
    return [q["sql"][:160] for q in queries
            if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")) and "django_session" not in q["sql"]]


def test_no_page_writes_on_get(demo):
    """A page view never writes (STYLE.md): every GET, and the run estimate that takes a precedent set."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from judges.models import JudgeVersion
    from traffic.models import Sample

    client = _admin_client()
    client.get("/")  # settle the session
    version = JudgeVersion.objects.exclude(backend="imported").filter(precedent_k__gt=0).order_by("pk").first()
    urls = [url for _, url in _urls(demo)]
    if version is not None:
        from precedent.models import Precedent

        # Change the accepted set, so that no snapshot of it exists yet: the estimate must not take one.
        Precedent.objects.filter(pk=Precedent.objects.filter(
            policy=version.policy_version.policy, status=Precedent.Status.ACCEPTED).order_by("pk").values("pk")[:1],
        ).update(status=Precedent.Status.RETIRED)
        urls.append(f"/judges/runs/new/?version={version.pk}&sample={Sample.objects.order_by('pk').first().pk}")
    failures = []
    for url in urls:
        with CaptureQueriesContext(connection) as captured:
            response = client.get(url)
        if response.status_code < 500 and (writes := _writes(captured.captured_queries)):
            failures.append(f"GET {url}: {writes}")
    assert not failures, "\n".join(failures)
