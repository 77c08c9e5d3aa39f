"""Who may do what, on every view: the role matrix, walked from the resolver with the demo's ids.

The table below is the role model (sage/roles.py and each view's checks) written out per URL name: a
new view without an entry fails `test_every_view_has_an_entry` by name, and every entry is tried for
anonymous, a reviewer outside every queue, a queue member, an analyst and an admin, by GET and by
POST with an empty body. Allowed means the role check let the request through (a 400 for the empty
form is fine); denied means 403 (or 401 from an API), anonymous means a redirect to the login page
(or a 401 JSON answer from an API). Nothing is ever a 5xx.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import get_resolver, reverse

from tests.factories import UserFactory
from tests.test_hostile_params import _patterns, demo  # noqa: F401  (demo: the module-scoped fixture)

pytestmark = [pytest.mark.django_db]

ROLES = ("anonymous", "reviewer", "member", "analyst", "admin")

# Who passes the check, per method. A method missing from a view's entry must answer 405.
PUBLIC = frozenset(ROLES)
ANY = frozenset({"reviewer", "member", "analyst", "admin"})  # any logged-in user
REVIEWER = frozenset({"reviewer", "member", "admin"})
ANALYST = frozenset({"analyst", "admin"})
ADMIN = frozenset({"admin"})
QUEUE = frozenset({"member", "analyst", "admin"})  # a queue's reviewers, and those who manage queues
MEMBER = frozenset({"member"})  # labelling: a reviewer of the queue, on their own assignment
TOKEN = frozenset()  # CI API: a scoped token only (test_gate_api_*), no browser session

# URL name -> {"GET": roles, "POST": roles}. "member" is demo-reviewer, a reviewer of the demo queue
# whose assignment the label URLs name; "reviewer" is a reviewer of no queue; "admin" holds every
# role but is in no queue, so it may not label (labelling needs membership; sage/roles.py).
MATRIX: dict[str, dict[str, frozenset[str]]] = {
    "home": {"GET": ANY},
    "system": {"GET": ANY},
    "ping-create": {"POST": ANY},  # asks the workers to answer: no data, harmless to any user
    "ping-detail": {"GET": ANY},
    "healthz": {"GET": PUBLIC},
    "readyz": {"GET": PUBLIC},
    "login": {"GET": PUBLIC, "POST": PUBLIC},
    "logout": {"POST": ANY},  # logging out sends one to the login page, with no ?next=
    "password_change": {"GET": ANY, "POST": ANY},  # one's own password
    "password_change_done": {"GET": ANY},
    # traffic
    "traffic:index": {"GET": ANY},
    "traffic:variant-create": {"POST": ANALYST},
    "traffic:import-upload": {"POST": ANALYST},
    "traffic:api-import": {"POST": ANALYST},
    "traffic:sample-draw": {"POST": ANALYST},
    "traffic:sample-detail": {"GET": ANY},
    # review: a reviewer outside a queue reads nothing of it
    "review:index": {"GET": ANY},  # lists only the queues the user may see
    "review:queue-create": {"POST": ANALYST},
    "review:label-import": {"POST": ANALYST},
    "review:queue-detail": {"GET": QUEUE},
    "review:queue-labels-export": {"GET": QUEUE},
    "review:label": {"GET": MEMBER},
    "review:label-item": {"GET": MEMBER},
    "review:label-submit": {"POST": MEMBER},
    "review:label-skip": {"POST": MEMBER},
    "review:label-back": {"GET": MEMBER},
    # policy: reviewers edit drafts, admins publish
    "policy:list": {"GET": ANY},
    "policy:new": {"GET": REVIEWER, "POST": REVIEWER},
    "policy:detail": {"GET": ANY},
    "policy:diff": {"GET": ANY},
    "policy:version": {"GET": ANY},
    "policy:rubric-json": {"GET": ANY},
    "policy:draft": {"GET": ANY, "POST": REVIEWER},  # others read the draft, with no form to lose
    "policy:draft-start": {"POST": REVIEWER},
    "policy:draft-preview": {"POST": ANY},  # renders the posted text only: reads and writes nothing
    "policy:draft-rubric": {"POST": ANY},  # reshapes the posted rubric form only
    "policy:draft-publish": {"POST": ADMIN},
    "policy:draft-discard": {"POST": REVIEWER},
    # precedents
    "precedent:list": {"GET": ANY},
    "precedent:new": {"GET": REVIEWER, "POST": REVIEWER},
    "precedent:bulk": {"POST": REVIEWER},
    "precedent:import": {"GET": REVIEWER, "POST": REVIEWER},
    "precedent:export": {"GET": ANY},  # what the list shows everyone
    "precedent:detail": {"GET": ANY, "POST": REVIEWER},
    # judges: analysts run them
    "judges:index": {"GET": ANY},
    "judges:new": {"GET": ANALYST, "POST": ANALYST},
    "judges:detail": {"GET": ANY, "POST": ANALYST},
    "judges:run-new": {"GET": ANALYST, "POST": ANALYST},
    "judges:run": {"GET": ANY},
    "judges:run-cancel": {"POST": ANALYST},
    "judges:run-resume": {"POST": ANALYST},
    "judges:judgment": {"GET": ANY},
    "judges:api-runs": {"GET": ANALYST, "POST": ANALYST},
    "judges:api-run": {"GET": ANALYST},
    "judges:import": {"GET": ANALYST, "POST": ANALYST},
    "judges:run-export": {"GET": ANY},  # the run page's data, shown to everyone
    "judges:api-judgments-import": {"POST": ANALYST},
    "judges:injection-check-new": {"POST": ANALYST},
    "judges:injection-check": {"GET": ANY},
    # calibration: reviewers triage, analysts rejudge
    "calibration:index": {"GET": ANY},
    "calibration:run": {"GET": ANY},
    "calibration:cell": {"GET": ANY},
    "calibration:find-disagreements": {"POST": REVIEWER},
    "calibration:rejudge": {"POST": ANALYST},
    "calibration:compare": {"GET": ANY},
    "calibration:triage": {"GET": ANY},
    "calibration:triage-detail": {"GET": ANY, "POST": REVIEWER},
    # comparisons
    "comparisons:index": {"GET": ANY},
    "comparisons:new": {"POST": ANALYST},
    "comparisons:history": {"GET": ANY},
    "comparisons:detail": {"GET": ANY},
    "comparisons:query": {"GET": ANY},
    "comparisons:review-slice": {"POST": ANALYST},
    "comparisons:recompute": {"POST": ANALYST},
    # distillation
    "distill:index": {"GET": ANY},
    "distill:training-set-new": {"GET": ANALYST, "POST": ANALYST},
    "distill:training-set": {"GET": ANY},
    "distill:student-new": {"POST": ANALYST},
    "distill:student": {"GET": ANY},
    "distill:student-cancel": {"POST": ANALYST},
    "distill:student-resume": {"POST": ANALYST},
    "distill:student-evaluate": {"POST": ANALYST},
    "distill:student-promote": {"POST": ANALYST},
    # gates and their tokens
    "gates:index": {"GET": ANY},
    "gates:new": {"GET": ANY, "POST": ANALYST},  # GET shows others why they cannot
    "gates:detail": {"GET": ANY},
    "gates:edit": {"GET": ANY, "POST": ANALYST},
    "gates:run-create": {"POST": ANALYST},
    "gates:run": {"GET": ANY},
    "gates:tokens": {"GET": ANY},  # lists tokens only to analysts (their own) and admins (all)
    "gates:token-new": {"POST": ANALYST},
    "gates:token-revoke": {"POST": ADMIN},  # the walk's token is demo-admin's: see HIDDEN
    "gates:api-runs": {"POST": TOKEN},
    "gates:api-run": {"GET": TOKEN},
    "gates:api-traffic-imports": {"POST": TOKEN},
}

# Views whose refusal is a JSON answer (sage.api.api_view, gates.tokens.token_api), not a page.
API = {"traffic:api-import", "review:queue-labels-export", "judges:api-runs", "judges:api-run", "judges:run-export",
       "judges:api-judgments-import", "gates:api-runs", "gates:api-run", "gates:api-traffic-imports"}
# Views that let anonymous users in on purpose (login_not_required).
OPEN = {"healthz", "readyz", "login"}
# Refused as a 404, not a 403: the object is not theirs even to see. An analyst sees only their own tokens.
HIDDEN = {("gates:token-revoke", "analyst")}


def _walked() -> list[tuple[str, str]]:
    """(URL name, pattern) of every view but the admin site's (test_admin_site_is_for_admins_only)."""
    return [(name or pattern, pattern) for pattern, name, _ in _patterns(get_resolver())
            if not pattern.startswith("admin/")]


@pytest.fixture(scope="module")
def people(demo, django_db_blocker):  # noqa: F811
    """A client factory per role; the member owns an assignment in the demo queue, drawn here."""
    from review.models import ReviewQueue
    from review.services import assignment_next

    with django_db_blocker.unblock():
        User = get_user_model()
        member = User.objects.get(username="demo-reviewer")
        users = {
            "reviewer": UserFactory(username="matrix-outsider", roles=["reviewer"]),
            "member": member,
            "analyst": UserFactory(username="matrix-analyst", roles=["analyst"]),
            "admin": UserFactory(username="matrix-admin", roles=["admin"]),
        }
        queue = ReviewQueue.objects.get(pk=demo["review:label"]["pk"])
        assert queue.reviewers.filter(pk=member.pk).exists()
        assert not queue.reviewers.filter(pk__in=[users[r].pk for r in ("reviewer", "analyst", "admin")]).exists()
        assignment = assignment_next(queue=queue, reviewer=member)
        kwargs = dict(demo)
        for name in ("label-item", "label-submit", "label-skip", "label-back"):
            kwargs[f"review:{name}"] = {"pk": queue.pk, "assignment_id": assignment.pk}
        yield users, kwargs


def _client(users: dict, role: str) -> Client:
    # enforce_csrf_checks=False: the matrix is about roles; CSRF has its own tests (test_auth.py).
    client = Client(enforce_csrf_checks=False, raise_request_exception=False)
    if role != "anonymous":
        client.force_login(users[role])
    return client


def _url(name: str, pattern: str, kwargs: dict) -> str:
    if name not in kwargs and "<" not in pattern:
        return reverse(name)
    return reverse(name, kwargs=kwargs[name])


def _verdict(name: str, method: str, role: str, response) -> str | None:
    """What is wrong with this answer under the table, or None."""
    status = response.status_code
    if status >= 500:
        return f"{status} (a server error)"
    allowed = MATRIX[name].get(method)
    # The middleware's refusal carries ?next=; logging out lands on the bare login page.
    to_login = status == 302 and response["Location"].startswith(reverse("login") + "?next=")
    if allowed is None:  # the view does not take this method
        if role == "anonymous" and name not in OPEN and name not in API:
            return None if to_login else f"{status}, not a redirect to the login page"
        return None if status == 405 else f"{status}, not 405 for a method the view does not take"
    if role in allowed:
        if to_login or status in (401, 403):
            return f"{status} {response.get('Location', '')}: refused, but the table allows {role}"
        return None
    if role == "anonymous":
        if name in API:
            return None if status == 401 else f"{status}, not a 401 JSON answer"
        return None if to_login else f"{status}, not a redirect to the login page"
    if name in API:
        return None if status in (401, 403) else f"{status}: let in, but the table refuses {role}"
    if (name, role) in HIDDEN:
        return None if status == 404 else f"{status}, not the 404 of an object {role} may not see"
    return None if status == 403 else f"{status}: let in, but the table refuses {role}"


def test_every_view_has_an_entry():
    names = {name for name, _ in _walked()}
    missing = sorted(names - MATRIX.keys())
    assert not missing, f"Views with no entry in MATRIX (say who may GET and POST them): {missing}"
    stale = sorted(MATRIX.keys() - names)
    assert not stale, f"MATRIX entries for views that no longer exist: {stale}"


def test_the_role_matrix(people):
    users, kwargs = people
    failures = []
    for name, pattern in _walked():
        if name not in MATRIX:
            continue  # test_every_view_has_an_entry names it
        url = _url(name, pattern, kwargs)
        for role in ROLES:
            for method in ("GET", "POST"):
                client = _client(users, role)  # afresh: logout, for one, ends the session
                response = client.get(url) if method == "GET" else client.post(url, {})
                if (problem := _verdict(name, method, role, response)) is not None:
                    failures.append(f"{method} {url} ({name}) as {role}: {problem}")
    assert not failures, f"{len(failures)} answers break the role matrix:\n" + "\n".join(failures)


def test_a_reviewer_outside_a_queue_cannot_read_it(people):
    """Queue page, labelling pages, assignments and the export: 403 to a reviewer of another queue."""
    from review.models import ReviewQueue

    users, kwargs = people
    queue = ReviewQueue.objects.get(pk=kwargs["review:queue-detail"]["pk"])
    client = _client(users, "reviewer")
    for name in ("review:queue-detail", "review:label", "review:label-item", "review:label-back",
                 "review:queue-labels-export"):
        url = reverse(name, kwargs=kwargs[name])
        response = client.get(url)
        assert response.status_code == 403, (url, response.status_code)
        assert queue.name.encode() not in response.content, url
    for fmt in ("jsonl", "csv"):
        response = client.get(reverse("review:queue-labels-export", kwargs=kwargs["review:queue-detail"]),
                              {"format": fmt, "history": "1"})
        assert response.status_code == 403 and response.json()["error"] == "forbidden"
    for name in ("review:label-submit", "review:label-skip"):
        assert client.post(reverse(name, kwargs=kwargs[name]), {}).status_code == 403
    # And the review index does not list it to them.
    assert queue.name not in client.get(reverse("review:index")).content.decode()


def test_a_reviewer_outside_a_queue_cannot_export_it_with_an_api_token(people):
    from sage.services import api_token_create

    users, kwargs = people
    _token, key = api_token_create(user=users["reviewer"], name="matrix")
    response = Client().get(reverse("review:queue-labels-export", kwargs=kwargs["review:queue-detail"]),
                            HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 403
    _token, key = api_token_create(user=users["member"], name="matrix")
    response = Client().get(reverse("review:queue-labels-export", kwargs=kwargs["review:queue-detail"]),
                            HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 200


def test_the_admin_site_is_for_admins_only(people):
    """Every admin page without an id (index, each model's list and add page, user management)."""
    users, _kwargs = people
    urls = [reverse(name) for pattern, name, entry in _patterns(get_resolver())
            if pattern.startswith("admin/") and name and not entry.pattern.converters and "<" not in pattern
            and name not in ("admin:login", "admin:logout")]
    assert reverse("admin:auth_user_changelist") in urls and reverse("admin:index") in urls
    failures = []
    for url in urls:
        for role in ROLES:
            response = _client(users, role).get(url)
            if response.status_code >= 500:
                failures.append(f"GET {url} as {role}: {response.status_code}")
            elif role != "admin" and not (response.status_code == 302 and response["Location"].startswith(
                    (reverse("admin:login") + "?next=", reverse("login") + "?next="))):
                failures.append(f"GET {url} as {role}: {response.status_code}, not sent to a login page")
    assert not failures, "\n".join(failures)
    # The admin role (not a superuser) manages the site: every model's list, users included.
    admin = _client(users, "admin")
    index = admin.get(reverse("admin:index"))
    assert index.status_code == 200 and "permission to view or edit anything" not in index.content.decode()
    refused = [f"GET {url}: {status}" for url in urls if url.endswith("/") and "/add/" not in url and "autocomplete" not in url
               for status in [admin.get(url).status_code] if status != 200]
    assert not refused, "\n".join(refused)
    assert admin.get(reverse("admin:auth_user_add")).status_code == 200


# --- the CI API: scoped tokens, not sessions --------------------------------------------------------

def _gate_api_urls(kwargs: dict) -> dict[str, tuple[str, str]]:
    return {
        "gates:api-runs": ("POST", reverse("gates:api-runs", kwargs=kwargs["gates:api-runs"])),
        "gates:api-run": ("GET", reverse("gates:api-run", kwargs=kwargs["gates:api-run"])),
        "gates:api-traffic-imports": ("POST", reverse("gates:api-traffic-imports")),
    }


# The scopes each endpoint takes (any one of them), and one it does not.
RIGHT_SCOPE = {"gates:api-runs": ["gate:run"], "gates:api-run": ["gate:run", "gate:read"],
               "gates:api-traffic-imports": ["traffic:import"]}
WRONG_SCOPE = {"gates:api-runs": "gate:read", "gates:api-run": "traffic:import",
               "gates:api-traffic-imports": "gate:run"}


def _call(method: str, url: str, secret: str | None):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {secret}"} if secret is not None else {}
    client = Client(enforce_csrf_checks=True)
    return client.get(url, **headers) if method == "GET" else client.post(url, {}, **headers)


def test_gate_api_without_a_token_is_401_even_with_a_session(people):
    users, kwargs = people
    for name, (method, url) in _gate_api_urls(kwargs).items():
        for secret in (None, "", "sgt_nope_nope", "not-a-token"):
            response = _call(method, url, secret)
            assert response.status_code == 401, (name, secret, response.status_code)
            assert response.json()["error"] == "unauthorized"
        client = _client(users, "admin")  # a browser session is no credential here
        response = client.get(url) if method == "GET" else client.post(url, {})
        assert response.status_code == 401, (name, response.status_code)


def test_gate_api_with_the_wrong_scope_is_403(people):
    from gates.services import token_create

    users, kwargs = people
    for name, (method, url) in _gate_api_urls(kwargs).items():
        _token, secret = token_create(owner=users["analyst"], name=f"wrong {name}", scopes=[WRONG_SCOPE[name]],
                                      user=users["analyst"])
        response = _call(method, url, secret)
        assert response.status_code == 403, (name, response.status_code)
        assert response.json()["error"] == "insufficient_scope"


def test_gate_api_with_the_right_scope_passes_the_check(people):
    from gates.services import token_create

    users, kwargs = people
    for name, (method, url) in _gate_api_urls(kwargs).items():
        for scope in RIGHT_SCOPE[name]:
            _token, secret = token_create(owner=users["analyst"], name=f"right {name}", scopes=[scope],
                                          user=users["analyst"])
            response = _call(method, url, secret)
            # An empty body is a 4xx of its own (no candidate, no file), never 401/403/5xx.
            assert response.status_code not in (401, 403) and response.status_code < 500, (
                name, scope, response.status_code, response.content[:300])
    _token, secret = token_create(owner=users["analyst"], name="read", scopes=["gate:read"], user=users["analyst"])
    method, url = _gate_api_urls(kwargs)["gates:api-run"]
    assert _call(method, url, secret).status_code == 200


def test_gate_api_token_of_an_owner_who_lost_the_analyst_role_is_403(people):
    from django.contrib.auth.models import Group

    from gates.services import token_create

    users, kwargs = people
    owner = UserFactory(username="matrix-former-analyst", roles=["analyst"])
    _token, secret = token_create(owner=owner, name="former", scopes=["gate:run"], user=owner)
    owner.groups.remove(Group.objects.get(name="analyst"))
    method, url = _gate_api_urls(kwargs)["gates:api-run"]
    response = _call(method, url, secret)
    assert response.status_code == 403 and response.json()["error"] == "forbidden"


def test_a_reviewer_cannot_mint_a_gate_token(people):
    users, _kwargs = people
    from gates.models import ScopedToken

    before = ScopedToken.objects.count()
    response = _client(users, "reviewer").post(reverse("gates:token-new"),
                                               {"name": "mine", "scopes": ["gate:run"]})
    assert response.status_code == 403
    assert ScopedToken.objects.count() == before
