"""A surface with control and treatment traffic, a published TREC-style policy and an imported judge
whose labels the test chooses: the shape every comparison test starts from."""

from __future__ import annotations

from collections.abc import Callable

from judges.models import JudgeVersion
from judges.services import judge_create, judge_run_import
from tests.factories import UserFactory, import_traffic_rows, published_version, traffic_row, traffic_surface
from traffic.services import sample_draw

SAFETY = {"key": "safety", "name": "Safety", "description": "Is the passage safe to show?",
          "levels": [{"value": 0, "label": "Unsafe", "definition": "Harmful."},
                     {"value": 1, "label": "Safe", "definition": "Fine."}]}

Grade = Callable[[str, int, int], int]  # (variant, query number, rank) -> relevance grade


def doc_id(variant: str, q: int, rank: int, shared: int) -> str:
    return f"q{q}-d{rank}" if rank <= shared else f"q{q}-{variant}-d{rank}"


def comparison_traffic(*, slug: str = "cmp", queries: int = 6, depth: int = 4, shared: int = 1):
    surface = traffic_surface(slug)
    rows = [traffic_row(variant=variant, query=f"query number {q}", query_id=f"Q{q}", rank=rank,
                        doc_id=doc_id(variant, q, rank, shared), body=f"passage {doc_id(variant, q, rank, shared)}",
                        title=f"Title {doc_id(variant, q, rank, shared)}", url="", segment="head")
            for q in range(queries) for variant in ("control", "treatment") for rank in range(1, depth + 1)]
    import_traffic_rows(surface, rows, filename=f"{slug}.jsonl")
    return surface


def imported_judge(surface, *, grade: Grade, queries: int, depth: int, shared: int = 1, safety: Grade | None = None,
                   skip: set[str] = frozenset(), name: str = "imported gpt-4o") -> tuple[JudgeVersion, object]:
    """An imported judge whose label of each served result is grade(variant, q, rank) (the shared
    documents graded as control's); `skip` doc ids stay unjudged (imported into a sample without them)."""
    version = published_version(surface, extra_dimensions=[SAFETY] if safety else [])
    analyst = UserFactory(username=f"{surface.slug}-analyst", roles=["analyst"])
    judge = judge_create(name=name, surface=surface, user=analyst, backend="imported", model_name="gpt-4o",
                         policy_version=version, precedent_k=0)
    sample = sample_draw(surface=surface, name="all served", strategy="top_k", params={"k": depth}, seed=1, user=analyst)
    labels: dict[str, dict] = {}
    for q in range(queries):
        for variant in ("treatment", "control"):
            for rank in range(1, depth + 1):
                doc = doc_id(variant, q, rank, shared)
                row = {"relevance": grade(variant, q, rank)}
                if safety:
                    row["safety"] = safety(variant, q, rank)
                labels[doc] = {"query_id": f"Q{q}", "doc_id": doc, "labels": row}
    if skip:
        from traffic.models import SampleItem

        SampleItem.objects.filter(sample=sample, item__document__external_id__in=skip).delete()
        sample.item_count = sample.sample_items.count()
        sample.save()
    rows = [(n, row) for n, row in enumerate(labels.values(), 1) if row["doc_id"] not in skip]
    report = judge_run_import(version=judge, sample=sample, stream=None, user=analyst, rows=rows)
    assert not report.errors, report.errors
    return judge, analyst
