"""Demo precedents: eight TREC DL 2019 passages, imported through the real importer as accepted."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model

from policy.demo import POLICY_SLUG, SURFACE_SLUG
from policy.models import Policy

from .io import precedents_import
from .models import Precedent


def demo_precedents_load() -> list[str]:
    policy = Policy.objects.get(surface__slug=SURFACE_SLUG, slug=POLICY_SLUG)
    if Precedent.objects.filter(policy=policy, provenance=Precedent.Provenance.IMPORT).exists():
        return ["precedents (already loaded)"]
    path = settings.SAGE_DEMO_DIR / "trec-dl-2019" / "precedents.jsonl"
    with path.open("rb") as stream:
        report = precedents_import(policy=policy, stream=stream, fmt="jsonl", dry_run=False,
                                   user=get_user_model().objects.get(username="demo-reviewer"))
    if not report.ok:
        raise RuntimeError(f"demo precedents failed to import: {report.errors}")
    return [f"{report.created} accepted precedents (TREC DL 2019)"]
