"""A synthetic calibration set at scale, for benchmarks: one surface, a published TREC 0-3 policy,
queries, documents, items, a frozen sample, an imported judge with one finished run over every item,
and latest human labels on a fraction of the items that the judge agrees with imperfectly.

    manage.py calibration_synthetic --judgments 1000000 --queries 5000 --humans-per-item 1 \
        --human-fraction 0.2 --seed 0

PostgreSQL only: the big tables are written with COPY (psycopg 3), about a minute for 1M judgments on
a small machine. Everything it creates is named after --name (default `synthetic`); running it twice
with the same name refuses (exit 1) and says so, unless --reuse (print the existing run and exit 0).
"""

from __future__ import annotations

import hashlib
import json
import time
from decimal import Decimal

import numpy as np
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.utils import timezone

CHUNK = 50_000


def _sha(prefix: str, n: int) -> str:
    return hashlib.sha256(f"{prefix}|{n}".encode()).hexdigest()


def _copy(cursor, table: str, columns: list[str], lines, total: int, desc: str, bar_cls) -> None:
    """COPY text-format `lines` (an iterator of str chunks, each ending in a newline) into `table`."""
    with bar_cls(total=total, desc=desc, unit="row", unit_scale=True, leave=False) as bar:
        with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for chunk, n in lines:
                copy.write(chunk)
                bar.update(n)


class Command(BaseCommand):
    help = ("Create a synthetic calibration set (policy, items, sample, a finished imported judge run and "
            "latest human labels) for benchmarks. PostgreSQL only (uses COPY); SQLite is refused.")

    def add_arguments(self, parser):
        parser.add_argument("--judgments", type=int, default=1_000_000, help="items in the sample = judgments in the run")
        parser.add_argument("--queries", type=int, default=5_000)
        parser.add_argument("--humans-per-item", type=int, default=1, help="latest human labels per labelled item")
        parser.add_argument("--human-fraction", type=float, default=0.2, help="share of items with human labels")
        parser.add_argument("--judge-error", type=float, default=0.3,
                            help="probability that the judge's label is off by one from the true label")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--name", default="synthetic", help="names the surface, policy, sample, judge and users")
        parser.add_argument("--reuse", action="store_true", help="if the set exists already, print its run id and exit 0")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, **opt):
        if connection.vendor != "postgresql":
            raise CommandError("calibration_synthetic needs PostgreSQL (it loads with COPY); "
                               f"this database is {connection.vendor}. Set DATABASE_URL=postgres://…")
        from judges.models import Judge, JudgeRun

        n_items, n_queries, name = opt["judgments"], opt["queries"], opt["name"]
        humans = opt["humans_per_item"]
        if n_items < 1 or not (1 <= n_queries <= n_items) or humans < 1 or not (0 < opt["human_fraction"] <= 1):
            raise CommandError("Need judgments ≥ queries ≥ 1, humans-per-item ≥ 1 and 0 < human-fraction ≤ 1.")
        judge_name = f"{name}-judge"
        existing = Judge.objects.filter(name=judge_name).first()
        if existing is not None:
            run = JudgeRun.objects.filter(judge_version__judge=existing).order_by("pk").first()
            if opt["reuse"] and run is not None:
                self.stdout.write(f"run {run.pk} exists already ({run.total_items} judgments); reusing it")
                return
            raise CommandError(f"A synthetic set named {name!r} exists already (judge {judge_name!r}, run "
                               f"{run.pk if run else '?'}); pass --reuse, or another --name.")
        if opt["no_progress"]:
            from contextlib import nullcontext

            class bar_cls(nullcontext):  # noqa: N801
                def __init__(self, **kw):
                    super().__init__(self)

                def update(self, n):
                    pass
        else:
            from tqdm import tqdm as bar_cls

        started = time.monotonic()
        with transaction.atomic():
            run = self._create(opt, bar_cls)
        self.stdout.write(self.style.SUCCESS(
            f"run {run.pk}: {run.total_items} judgments over {n_queries} queries, "
            f"{self._human_count} human labels, in {time.monotonic() - started:.1f} s"))


    def _create(self, opt, bar_cls):
        from django.contrib.auth import get_user_model
        from django.contrib.auth.models import Group

        from judges.models import JudgeRun, JudgeVersion
        from judges.services import _cache_key, judge_create
        from policy.rubric import trec_relevance_dimension
        from policy.services import policy_create, policy_version_publish, surface_get_or_create
        from sage.roles import ensure_role_groups
        from traffic.models import Sample

        name, seed = opt["name"], opt["seed"]
        n_items, n_queries, humans = opt["judgments"], opt["queries"], opt["humans_per_item"]
        rng = np.random.default_rng(seed)
        User = get_user_model()
        ensure_role_groups()

        def user(username, role):
            u, _ = User.objects.get_or_create(username=username, defaults={"email": f"{username}@example.invalid"})
            u.groups.add(Group.objects.get(name=role))
            return u

        admin = user(f"{name}-admin", "admin")
        reviewers = [user(f"{name}-reviewer-{r}", "reviewer") for r in range(humans)]
        surface = surface_get_or_create(slug=name[:50], name=f"Synthetic {name}")
        draft = policy_create(surface=surface, slug=f"rel-{name}"[:50], name="Synthetic relevance",
                              text="# Relevance\n\nJudge how well the passage answers the query.\n",
                              rubric={"dimensions": [trec_relevance_dimension()]}, user=admin)
        version = policy_version_publish(draft=draft, user=admin, change_note="synthetic",
                                         expected_lock_version=draft.lock_version)
        judge_version = judge_create(name=f"{name}-judge", surface=surface, user=admin, backend="imported",
                                     model_name="synthetic", policy_version=version, precedent_k=0,
                                     provenance={"synthetic": {"seed": seed, "judge_error": opt["judge_error"]}})

        with connection.cursor() as cur:
            # Django's foreign keys are DEFERRABLE INITIALLY DEFERRED, so every copied row would queue
            # a referential-integrity check for COMMIT (minutes at this size). The rows reference
            # each other correctly by construction, so a superuser skips the triggers for this
            # transaction; another role keeps them and waits.
            cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            superuser = cur.fetchone()[0]
            if superuser:
                cur.execute("SET LOCAL session_replication_role = replica")
            else:
                self.stderr.write("not a superuser: foreign keys are checked at commit, which takes minutes")
            # Query, document and item ids are taken from the sequences up front so the rows can be
            # written with COPY and still be referenced by the later tables.
            def ids(table: str, n: int) -> np.ndarray:
                cur.execute("SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)", [table, n])
                return np.array([r[0] for r in cur.fetchall()], dtype=np.int64)

            per_query = -(-n_items // n_queries)
            n_docs = max(per_query, min(n_items, 20_000))  # a shared pool: documents recur across queries
            query_ids, doc_ids, item_ids = ids("traffic_query", n_queries), ids("traffic_document", n_docs), ids("traffic_item", n_items)
            segments = np.array(["head", "torso", "tail"])
            q_of_item = np.arange(n_items) // per_query  # item k belongs to query k // per_query
            q_of_item = np.minimum(q_of_item, n_queries - 1)
            pos_in_q = np.arange(n_items) - q_of_item * per_query
            doc_of_item = (q_of_item * 7919 + pos_in_q) % n_docs  # distinct within a query since per_query ≤ n_docs
            # Guard the (query, document) uniqueness the model requires.
            assert len(np.unique(q_of_item * n_docs + doc_of_item)) == n_items

            def chunks(n, render):
                for start in range(0, n, CHUNK):
                    stop = min(n, start + CHUNK)
                    yield "".join(render(k) for k in range(start, stop)), stop - start

            _copy(cur, "traffic_query", ["id", "text", "text_hash", "segment", "locale", "external_id"],
                  chunks(n_queries, lambda k: f"{query_ids[k]}\tsynthetic query {name} {k}\t{_sha(name + 'q', k)}\t"
                                              f"{segments[k % 3]}\ten\t{name}-q{k}\n"),
                  n_queries, "queries", bar_cls)
            _copy(cur, "traffic_document", ["id", "content_hash", "external_id", "title", "body", "url", "fields"],
                  chunks(n_docs, lambda k: f"{doc_ids[k]}\t{_sha(name + 'd', k)}\t{name}-d{k}\tDocument {k}\t"
                                           f"Synthetic passage number {k}.\thttps://example.invalid/{name}/{k}\t{{}}\n"),
                  n_docs, "documents", bar_cls)
            item_hashes = [_sha(name + "i", k) for k in range(n_items)]
            qi, di = query_ids[q_of_item], doc_ids[doc_of_item]
            _copy(cur, "traffic_item", ["id", "hash", "query_id", "document_id"],
                  chunks(n_items, lambda k: f"{item_ids[k]}\t{item_hashes[k]}\t{qi[k]}\t{di[k]}\n"),
                  n_items, "items", bar_cls)

            sample = Sample.objects.create(name=f"{name} sample", surface=surface, strategy="synthetic",
                                           params={"judgments": n_items, "queries": n_queries}, seed=seed,
                                           snapshot={}, item_count=n_items, created_by=admin)
            _copy(cur, "traffic_sampleitem", ["sample_id", "item_id", "position"],
                  chunks(n_items, lambda k: f"{sample.pk}\t{item_ids[k]}\t{k}\n"), n_items, "sample items", bar_cls)

            # Labels: a per-query difficulty shifts the true label; the judge is off by one with
            # probability judge_error (more on hard queries), each human off by one 10% of the time.
            difficulty = rng.normal(0, 0.8, n_queries)
            truth = np.clip(np.round(rng.normal(1.3, 1.0, n_items) + difficulty[q_of_item] * 0.5), 0, 3).astype(int)
            p_err = np.clip(opt["judge_error"] * (1 + 0.5 * difficulty[q_of_item]), 0, 0.9)
            judge = np.clip(truth + np.where(rng.random(n_items) < p_err, rng.choice([-1, 1], n_items), 0), 0, 3)
            now = timezone.now()
            run = JudgeRun.objects.create(judge_version=judge_version, sample=sample, status=JudgeRun.Status.SUCCEEDED,
                                          total_items=n_items, done_items=n_items, created_by=admin, started_at=now,
                                          finished_at=now, message="synthetic", cost=Decimal("0"))
            jv = judge_version
            pv_id, rubric_hash = jv.policy_version_id, jv.policy_version.rubric_hash
            keys = [_cache_key(jv, None, h) for h in item_hashes]
            stamp = now.isoformat()
            columns = ["run_id", "item_id", "status", "labels", "rationale", "error_kind", "error_message", "prompt",
                       "raw_response", "tokens_in", "tokens_out", "cost", "attempts", "repaired", "judge_version_id",
                       "policy_version_id", "rubric_hash", "precedent_ids", "item_hash", "cache_key", "model_hash", "created_at"]
            labels_json = [json.dumps({"relevance": v}) for v in range(4)]
            _copy(cur, "judges_judgment", columns,
                  chunks(n_items, lambda k: f"{run.pk}\t{item_ids[k]}\tok\t{labels_json[judge[k]]}\t\t\t\t\t"
                                            f"{labels_json[judge[k]]}\t0\t0\t0\t1\tf\t{jv.pk}\t{pv_id}\t{rubric_hash}\t[]\t"
                                            f"{item_hashes[k]}\t{keys[k]}\t\t{stamp}\n"),
                  n_items, "judgments", bar_cls)

            n_labelled = max(1, int(round(opt["human_fraction"] * n_items)))
            labelled = np.sort(rng.choice(n_items, n_labelled, replace=False))
            human = np.clip(truth[labelled][:, None] + np.where(rng.random((n_labelled, humans)) < 0.1,
                                                                rng.choice([-1, 1], (n_labelled, humans)), 0), 0, 3)
            reviewer_ids = [r.pk for r in reviewers]
            columns = ["item_id", "reviewer_id", "policy_version_id", "rubric_hash", "labels", "rationale", "revision",
                       "is_latest", "source", "reason", "created_by_id", "created_at"]

            def human_rows(k):
                item, row = item_ids[labelled[k]], human[k]
                return "".join(f"{item}\t{reviewer_ids[r]}\t{pv_id}\t{rubric_hash}\t{labels_json[row[r]]}\t\t1\tt\t"
                               f"import\t\t{admin.pk}\t{stamp}\n" for r in range(humans))

            _copy(cur, "review_humanlabel", columns, ((c, n * humans) for c, n in chunks(n_labelled, human_rows)),
                  n_labelled * humans, "human labels", bar_cls)
            self._human_count = n_labelled * humans
            if superuser:
                cur.execute("SET LOCAL session_replication_role = DEFAULT")
            for table in ("traffic_query", "traffic_document", "traffic_item", "traffic_sampleitem", "judges_judgment",
                          "review_humanlabel"):
                cur.execute(f"ANALYZE {table}")
        JudgeVersion.objects.filter(pk=jv.pk).update(provenance={**jv.provenance, "run": run.pk})
        return run
