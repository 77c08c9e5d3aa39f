from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from judges.models import JudgeRun, JudgeVersion
from judges.services import JudgeError, judge_run_cancel, judge_run_estimate, judge_run_resume, judge_run_start
from traffic.models import Sample


class Command(BaseCommand):
    help = ("Start a judge run (judge version × sample) on the Celery workers and follow it with a progress bar; "
            "or follow/resume/cancel an existing run. Exits 1 unless the run succeeds (failed, finished with errors, "
            "cancelled).")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--judge-version", type=int, help="JudgeVersion id")
        parser.add_argument("--sample", type=int, help="Sample id")
        parser.add_argument("--bypass-cache", action="store_true", help="judge again even when cached")
        parser.add_argument("--run", type=int, help="follow an existing run instead of starting one")
        parser.add_argument("--resume", action="store_true", help="with --run: queue its unjudged items again")
        parser.add_argument("--cancel", action="store_true", help="with --run: cancel it")
        parser.add_argument("--no-wait", action="store_true", help="start and return at once")
        parser.add_argument("--timeout", type=float, default=0, help="give up waiting after this many seconds")

    def handle(self, *args, **opts) -> None:
        if opts["run"]:
            run = JudgeRun.objects.filter(pk=opts["run"]).first()
            if run is None:
                raise CommandError(f"No judge run {opts['run']}.")
            if opts["cancel"]:
                judge_run_cancel(run=run, user=None)
                self.stdout.write(f"Run {run.pk} cancelled.")
                return
            if opts["resume"]:
                judge_run_resume(run=run, user=None)
        else:
            if not (opts["judge_version"] and opts["sample"]):
                raise CommandError("Give --judge-version and --sample to start a run, or --run to follow one.")
            version = JudgeVersion.objects.filter(pk=opts["judge_version"]).first()
            sample = Sample.objects.filter(pk=opts["sample"]).first()
            if version is None or sample is None:
                raise CommandError("Unknown judge version or sample id.")
            estimate = judge_run_estimate(version=version, sample=sample)
            self.stdout.write(f"{estimate.items} items ({estimate.cached} cached), ~{estimate.tokens_in} input tokens, "
                              f"~${estimate.cost}")
            try:
                run = judge_run_start(version=version, sample=sample, user=None, bypass_cache=opts["bypass_cache"])
            except JudgeError as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(f"Started run {run.pk}.")
        if opts["no_wait"]:
            return
        self._follow(run, opts["timeout"])

    def _follow(self, run: JudgeRun, timeout: float) -> None:
        deadline = time.monotonic() + timeout if timeout else None
        with tqdm(total=run.total_items, unit="item", desc=f"run {run.pk}") as bar:
            while True:
                run.refresh_from_db()
                bar.n = run.done_items
                bar.set_postfix(errors=run.error_items, cached=run.cached_items, cost=f"${run.cost:.4f}")
                bar.refresh()
                if not run.is_active:
                    break
                if deadline and time.monotonic() > deadline:
                    raise CommandError(f"Run {run.pk} still {run.status} after {timeout:g} s (it goes on).")
                time.sleep(0.5)
        self.stdout.write(f"Run {run.pk} {run.status}: {run.done_items}/{run.total_items} judged, "
                          f"{run.error_items} errors, {run.cached_items} cached, ${run.cost:.4f}. {run.message}")
        if run.status != JudgeRun.Status.SUCCEEDED:
            raise CommandError(f"Run {run.pk} ended {run.get_status_display().lower()}.")
