from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from judges.injection_check import (
    MAX_PASSAGES,
    TEMPLATES,
    _budget_room,
    injection_check_execute,
    injection_check_start,
    passages_from_file,
)
from judges.models import InjectionCheck, JudgeVersion
from judges.services import JudgeError


class Command(BaseCommand):
    help = ("Measure how often a judge version's label rises when injection text is appended to real passages "
            "(judges/injection_check.py). VERSION: a judge version id. Passages come from the items served on "
            "the judge's surface, or from --file (JSONL with query and doc, e.g. TREC DL). Runs here unless "
            "--queue sends it to a worker.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("version", type=int, help="judge version id")
        parser.add_argument("--passages", type=int, default=50)
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--file", type=Path, help="JSONL of pairs (query, doc or body, optional title, doc_id)")
        parser.add_argument("--queue", action="store_true", help="queue it for a worker (items only) and return")

    def handle(self, *args, **options) -> None:
        version = JudgeVersion.objects.select_related("judge", "policy_version").filter(pk=options["version"]).first()
        if version is None:
            raise CommandError(f"no judge version {options['version']}")
        n = options["passages"]
        if not 1 <= n <= MAX_PASSAGES:
            raise CommandError(f"--passages must be between 1 and {MAX_PASSAGES}")
        passages = None
        if options["file"] is not None:
            if options["queue"]:
                raise CommandError("--file runs here; leave out --queue")
            rubric = version.policy_version.parsed_rubric()
            passages = passages_from_file(options["file"], n, options["seed"],
                                          room=_budget_room(version, rubric.overall.key, rubric.overall.max_value))
        try:
            if options["queue"]:
                check = injection_check_start(version=version, passages=n, user=None, seed=options["seed"])
                self.stdout.write(f"queued injection check #{check.pk}")
                return
            check = InjectionCheck.objects.create(
                judge_version=version, passages=n, seed=options["seed"],
                source=(f"file {options['file'].name}" if options["file"] else f"items served on {version.judge.surface}")[:200])
        except JudgeError as exc:
            raise CommandError(str(exc)) from None
        check = injection_check_execute(check_id=check.pk, passages=passages)
        if check.status != InjectionCheck.Status.SUCCEEDED:
            raise CommandError(f"injection check #{check.pk} failed: {check.message}")
        self.stdout.write(f"injection check #{check.pk} of {version}: {check.summary}; mean delta "
                          f"{check.mean_delta if check.mean_delta is not None else '-'}; fell on {check.fell}; "
                          f"{check.errors} pair(s) without both labels")
        self.stdout.write(f"detector flagged {check.flagged_clean} of {len(check.results)} clean passages and "
                          f"{check.flagged_injected} injected")
        for name, _text in TEMPLATES:
            s = check.by_template.get(name, {})
            self.stdout.write(f"  {name}: rose on {s.get('rose', 0)} of {s.get('n', 0)}, mean delta {s.get('mean_delta')}")
