from __future__ import annotations

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from sage.roles import ensure_role_groups

PASSWORD = "correct-horse-battery"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")

    @factory.post_generation
    def password(obj, create, extracted, **kwargs):
        obj.set_password(extracted or PASSWORD)
        if create:
            obj.save()

    @factory.post_generation
    def roles(obj, create, extracted, **kwargs):
        if not create or not extracted:
            return
        ensure_role_groups()
        obj.groups.add(*Group.objects.filter(name__in=extracted))
        if "admin" in extracted:
            obj.is_staff = True
            obj.save(update_fields=["is_staff"])


# --- traffic and review (issue 4) ---------------------------------------------------------------

def traffic_row(**overrides) -> dict:
    """One valid import row; tests override the field they are about."""
    row = {"variant": "control", "query": "how long do you blanch spinach", "rank": 1, "doc_id": "d1",
           "title": "Blanching", "body": "Blanch spinach for two minutes.", "url": "https://example.com/1",
           "segment": "question"}
    row.update(overrides)
    return row


def jsonl_bytes(rows) -> bytes:
    import json

    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def traffic_surface(slug: str = "web-test", variants=(("control", "control"), ("treatment", "treatment"))):
    """A surface with variants, made through the services."""
    from policy.services import surface_get_or_create
    from traffic.services import variant_get_or_create

    surface = surface_get_or_create(slug=slug, name=f"Surface {slug}")
    for name, role in variants:
        variant_get_or_create(surface=surface, name=name, role=role)
    return surface


def import_traffic_rows(surface, rows, *, filename: str = "traffic.jsonl"):
    import io

    from traffic.services import traffic_import

    return traffic_import(surface=surface, source=io.BytesIO(jsonl_bytes(rows)), filename=filename)


def ranked_traffic(surface, *, queries: int = 4, depth: int = 5, segments=("head", "tail"), shared: int = 2):
    """Control and treatment lists for `queries` queries; the first `shared` documents of each query are
    served by both variants (same item), the rest differ."""
    rows = []
    for q in range(queries):
        for variant in ("control", "treatment"):
            for rank in range(1, depth + 1):
                doc = f"q{q}-d{rank}" if rank <= shared else f"q{q}-{variant}-d{rank}"
                rows.append(traffic_row(variant=variant, query=f"query number {q}", rank=rank, doc_id=doc,
                                        body=f"passage {doc}", title="", url="", segment=segments[q % len(segments)]))
    return import_traffic_rows(surface, rows, filename=f"ranked-{queries}-{depth}.jsonl")


def published_version(surface, *, extra_dimensions=(), text: str = "# Relevance\n", slug: str | None = None,
                      rubric: dict | None = None):
    """A published policy version on the surface, made by an admin through the services: TREC
    relevance 0-3 plus any extra dimensions (or the given rubric)."""
    from policy.rubric import trec_relevance_dimension
    from policy.services import policy_create, policy_version_publish

    admin = UserFactory(username="policy-admin", roles=["admin"])
    slug = slug or f"rel-{surface.slug}"
    draft = policy_create(surface=surface, slug=slug, name=f"{slug.title()} policy", text=text,
                          rubric=rubric or {"dimensions": [trec_relevance_dimension(), *extra_dimensions]}, user=admin)
    return policy_version_publish(draft=draft, user=admin, change_note="first", expected_lock_version=draft.lock_version)


def review_queue(*, reviewers, overlap: int = 2, queries: int = 3, depth: int = 2, extra_dimensions=(),
                 slug: str = "web-review"):
    """A queue over a top-k sample of fresh traffic, created by an analyst through the services."""
    from review.services import review_queue_create
    from traffic.services import sample_draw

    surface = traffic_surface(slug)
    ranked_traffic(surface, queries=queries, depth=depth, shared=depth)
    version = published_version(surface, extra_dimensions=extra_dimensions)
    analyst = UserFactory(username="queue-analyst", roles=["analyst"])
    sample = sample_draw(surface=surface, name="s", strategy="top_k", params={"k": depth, "variants": ["control"]},
                         seed=1, user=analyst)
    return review_queue_create(name="Queue", sample=sample, policy_version=version, reviewers=reviewers,
                               overlap=overlap, user=analyst)
