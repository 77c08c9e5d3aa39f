"""manage.py sage_export / sage_import: a rich instance made through the real services goes out as JSONL
and comes back into an empty database record for record; refusals leave nothing behind."""

from __future__ import annotations

import gzip
import io
import shutil
from pathlib import Path

import orjson
import pytest
from django.apps import apps
from django.conf import settings
from django.contrib.admin.models import ADDITION, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.core.management import CommandError, call_command
from django.db import connection
from django.urls import reverse

from sage.backup import EXCLUDED, GOVERNED, backup_lines, exported_models, unclassified_models
from tests.factories import PASSWORD, UserFactory, published_version, review_queue, traffic_surface

pytestmark = pytest.mark.embedded


def test_every_model_is_exported_or_excluded_by_name():
    """A new model needs a decision: add it to sage.backup.GOVERNED, or to EXCLUDED with the reason."""
    assert unclassified_models() == [], (
        f"models in neither sage.backup.GOVERNED nor EXCLUDED: {', '.join(unclassified_models())}")
    known = {m._meta.label_lower for m in apps.get_models(include_auto_created=True)}
    stale = [label for label in (*GOVERNED, *EXCLUDED) if "." in label and label not in known]
    assert stale == [], f"sage.backup names models that no longer exist: {stale}"
    assert not set(GOVERNED) & set(EXCLUDED)
    exported = {m._meta.label_lower for m in exported_models()}
    assert exported == set(GOVERNED)
    assert {"sessions.session", "sage.workerping"} & exported == set()


# --- a rich instance, through the services ---------------------------------------------------------

def _rich_world(tmp_path: Path, monkeypatch, capture) -> dict:
    """Every governed kind of record: users with roles and a direct permission, a policy with two
    published versions and clauses, precedents with revisions and a precedent set, traffic, a review
    queue with labels and a corrected revision, an imported judge and runs, a gate run with its
    comparison and result, a scoped token, a judge run with errors, a training set and a student with
    its model files, and an admin log entry (a content-type reference)."""
    from calibration.models import Disagreement
    from calibration.services import agreement_snapshots, disagreements_refresh, triage_resolve
    from distill.services import TeacherSource, student_train_start, training_set_build
    from distill.models import StudentModel
    from gates.services import token_create
    from judges.models import JudgeRun
    from judges.services import judge_create, judge_run_execute, judge_run_chunk, judge_run_start
    from judges.testing.fault_server import running_fault_server
    from policy.services import policy_draft_start, policy_draft_update, policy_version_publish
    from precedent.services import PrecedentData, precedent_create, precedent_set_snapshot, precedent_update, \
        precedents_accept
    from review.services import assignment_next, human_label_correct, human_label_import, human_label_submit
    from tests.gates.helpers import gate_world
    from traffic.services import sample_draw

    gate, analyst = gate_world()
    with pytest.raises(CommandError):  # the worse candidate regresses: exit 1, a finished gate run
        call_command("sage_gate", gate.name, "--candidate", "worse", "--json", str(tmp_path / "gate.json"),
                     "--poll", "0.05")
    version = gate.judge_version.policy_version
    admin = get_user_model().objects.get(username="policy-admin")
    draft = policy_draft_start(policy=version.policy, user=admin)
    draft = policy_draft_update(draft=draft, user=admin, expected_lock_version=draft.lock_version,
                                text="# Relevance\n\n## Freshness\nNewer is better.\n")
    policy_version_publish(draft=draft, user=admin, change_note="freshness", expected_lock_version=draft.lock_version)

    reviewer = UserFactory(username="backup-reviewer", roles=["reviewer"])
    precedent = precedent_create(policy=version.policy, user=reviewer, data=PrecedentData(
        query="gate query 1", body="passage d0 for query 1", labels={"relevance": 3}, rationale="on topic"))
    precedent = precedent_update(precedent=precedent, user=reviewer, expected_revision=precedent.revision,
                                 data=PrecedentData(query="gate query 1", body="passage d0 for query 1",
                                                    labels={"relevance": 2}, rationale="mostly on topic"),
                                 note="softer")
    precedents_accept(precedents=[precedent], user=reviewer)
    precedent_set_snapshot(policy=version.policy)

    queue = review_queue(reviewers=[reviewer], overlap=1, queries=2, depth=2)
    assignment = assignment_next(queue=queue, reviewer=reviewer)
    label = human_label_submit(assignment=assignment, labels={"relevance": 1}, rationale="meh", time_spent_ms=900,
                               user=reviewer)
    human_label_correct(label=label, labels={"relevance": 2}, rationale="better", user=admin, reason="triage")

    token_create(owner=analyst, name="ci", scopes=["gate:run"], user=analyst)
    perm = Permission.objects.get(codename="view_policy")
    analyst.user_permissions.add(perm)
    LogEntry.objects.create(user=admin, content_type=ContentType.objects.get_for_model(type(version)),
                            object_id=str(version.pk), object_repr=str(version), action_flag=ADDITION)

    # A judge run over the fault server, some answers broken: judgments with errors.
    monkeypatch.setattr("judges.tasks.judge_run_chunk_task.delay",
                        lambda run_id, item_ids: judge_run_chunk(run_id=run_id, item_ids=item_ids))
    with running_fault_server(rate_malformed=0.3, rate_out_of_scale=0.2, seed=5) as server:
        settings.SAGE_JUDGE_ENDPOINTS = {**settings.SAGE_JUDGE_ENDPOINTS, "fault": {
            "base_url": server.base_url, "api_key": "t", "json_mode": "json_schema"}}
        llm = judge_create(name="llm judge", surface=gate.surface, user=analyst, backend="openai",
                           model_name="test-model", endpoint_name="fault", policy_version=version, precedent_k=1)
        sample = sample_draw(surface=gate.surface, name="few", strategy="top_k",
                             params={"k": 2, "variants": ["control"]}, seed=2, user=analyst)
        with capture(execute=False):
            run = judge_run_start(version=llm, sample=sample, user=analyst)
        judge_run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert run.error_items > 0 and run.done_items > run.error_items

    teacher = JudgeRun.objects.filter(judge_version=gate.judge_version).order_by("pk").first()
    # An external assessor's labels that disagree with the judge, a disagreement triaged into a precedent.
    lines = [orjson.dumps({"assessor": "nist", "query": f"gate query {q}", "doc_id": "d0", "labels": {"relevance": 0}})
             + b"\n" for q in range(3)]
    human_label_import(source=io.BytesIO(b"".join(lines)), policy_version=version, user=analyst)
    agreement_snapshots(run=teacher, n_resamples=50)  # a cache the backup leaves out
    assert disagreements_refresh(run=teacher) == 3
    triage_resolve(disagreement=Disagreement.objects.order_by("pk").first(), resolution="judge_wrong",
                   note="the assessor is right", user=reviewer)

    training_set = training_set_build(name="backup set", policy_version=version, teachers=[TeacherSource(run=teacher)],
                                      user=analyst, seed=1)
    with capture(execute=False):
        student = student_train_start(training_set=training_set, user=analyst)
    folder = Path(settings.DATA_DIR) / student.model_dir
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "weights.bin").write_bytes(bytes(range(256)) * 64)
    (folder / "model" / "manifest.json").write_text('{"model_hash": "abc"}')
    StudentModel.objects.filter(pk=student.pk).update(status="succeeded", model_hash="abc",
                                                      manifest={"model_hash": "abc", "files": ["weights.bin"]})
    return {"policy": version.policy, "admin": admin, "analyst": analyst, "run": run, "gate": gate,
            "student_dir": folder}


def _records(path: Path) -> list[bytes]:
    return list(backup_lines(path))[1:]


def _header(path: Path) -> dict:
    return orjson.loads(next(iter(backup_lines(path))))


def _flush() -> None:
    # Deferred foreign-key checks still pending in the test's transaction would stop TRUNCATE on PostgreSQL.
    connection.check_constraints()
    call_command("flush", interactive=False, verbosity=0)


@pytest.mark.django_db
def test_a_rich_instance_round_trips_record_for_record(tmp_path, monkeypatch, client,
                                                      django_capture_on_commit_callbacks):
    from distill.models import StudentModel
    from judges.models import Judgment
    from policy.models import PolicyVersion
    from policy.services import policy_draft_start, policy_draft_update, policy_version_publish

    world = _rich_world(tmp_path, monkeypatch, django_capture_on_commit_callbacks)
    first = tmp_path / "first.jsonl.gz"
    call_command("sage_export", str(first), "--with-files", verbosity=0)
    header = _header(first)
    counts = header["models"]
    for label in ("auth.user", "policy.policyversion", "precedent.precedentrevision", "review.humanlabel",
                  "judges.judgeversion", "judges.judgment", "distill.studentmodel", "comparisons.comparison",
                  "gates.gaterun", "gates.scopedtoken", "admin.logentry", "auth.user_user_permissions",
                  "calibration.disagreement"):
        assert counts[label] > 0, label
    assert counts["policy.policyversion"] >= 2 and counts["review.humanlabel"] == 5
    assert counts["calibration.triagedecision"] == 1 and counts["review.externalassessor"] == 1
    assert "calibration.agreementsnapshot" not in counts
    assert {f["path"] for f in header["files"]} == {
        f"{StudentModel.objects.get().model_dir}/model/weights.bin", f"{StudentModel.objects.get().model_dir}/model/manifest.json"}
    errors_before = Judgment.objects.filter(status="error").count()

    # A new host: an empty database and a data directory without the student's files.
    moved = shutil.move(world["student_dir"], tmp_path / "old-students")
    _flush()
    assert not PolicyVersion.objects.exists() and not get_user_model().objects.exists()
    call_command("sage_import", str(first), "--with-files", verbosity=0)

    second = tmp_path / "second.jsonl"
    call_command("sage_export", str(second), verbosity=0)
    assert _records(first) == _records(second)
    one, two = _header(first), _header(second)
    for header_ in (one, two):
        header_.pop("created_at")
    assert one == two
    assert Judgment.objects.filter(status="error").count() == errors_before > 0
    assert (world["student_dir"] / "model" / "weights.bin").read_bytes() == (Path(moved) / "model" / "weights.bin").read_bytes()

    # The app works on what came back: password hashes kept, pages render, new rows get fresh ids.
    analyst = get_user_model().objects.get(username="gate-analyst")
    assert analyst.check_password(PASSWORD) and analyst.has_perm("policy.view_policy")
    client.force_login(analyst)
    assert client.get(reverse("judges:run", args=[world["run"].pk])).status_code == 200
    assert client.get(reverse("gates:detail", args=[world["gate"].pk])).status_code == 200
    admin = world["admin"]
    draft = policy_draft_start(policy=world["policy"], user=admin)
    draft = policy_draft_update(draft=draft, user=admin, expected_lock_version=draft.lock_version, text="# R\n\nv3\n")
    published = policy_version_publish(draft=draft, user=admin, change_note="after the move",
                                       expected_lock_version=draft.lock_version)
    assert published.number == 3 and published.pk > max(PolicyVersion.objects.exclude(pk=published.pk)
                                                          .values_list("pk", flat=True))
    assert UserFactory(username="new-after-move").pk > analyst.pk


# --- refusals ------------------------------------------------------------------------------------------

def _small_world() -> None:
    surface = traffic_surface("backup-small")
    published_version(surface)


@pytest.mark.django_db
def test_a_non_empty_instance_is_refused_naming_a_table(tmp_path):
    _small_world()
    path = tmp_path / "b.jsonl"
    call_command("sage_export", str(path), verbosity=0)
    with pytest.raises(CommandError, match=r"not empty: table auth_user \(auth.user\) has rows"):
        call_command("sage_import", str(path), verbosity=0)


def _rewrite(path: Path, edit) -> Path:
    lines = list(backup_lines(path))
    out = path.with_name(f"edited-{path.name}")
    out.write_bytes(b"".join(edit(lines)))
    return out


@pytest.mark.django_db
@pytest.mark.parametrize("damage, message", [
    (lambda lines: [*lines[:6], lines[6][:25] + b"\n", *lines[7:]], r"line 7: not valid JSON"),
    (lambda lines: [*lines[:6], b'{"model": "policy.surface", "pk": 1, "fields": {"slug": "x"}}\n', *lines[7:]],
     r"line 7: .*missing fields"),
    (lambda lines: lines[:-3], r"the file ends early \(truncated\?\)"),
])
def test_a_damaged_file_is_refused_with_its_line_and_nothing_is_written(tmp_path, damage, message):
    from policy.models import Surface

    _small_world()
    path = tmp_path / "b.jsonl"
    call_command("sage_export", str(path), verbosity=0)
    _flush()
    with pytest.raises(CommandError, match=message):
        call_command("sage_import", str(_rewrite(path, damage)), verbosity=0)
    assert not get_user_model().objects.exists() and not Surface.objects.exists()


@pytest.mark.django_db
def test_a_broken_reference_is_refused_and_nothing_is_written(tmp_path):
    _small_world()
    path = tmp_path / "b.jsonl"
    call_command("sage_export", str(path), verbosity=0)
    _flush()

    def dangling(lines):
        for line in lines:
            if line.startswith(b'{"model":"policy.policy"'):
                record = orjson.loads(line)
                record["fields"]["surface"] = 999_999
                line = orjson.dumps(record) + b"\n"
            yield line

    with pytest.raises(CommandError, match="Nothing imported"):
        call_command("sage_import", str(_rewrite(path, dangling)), verbosity=0)
    assert not get_user_model().objects.exists()


@pytest.mark.django_db
def test_another_migration_state_is_refused_naming_the_app(tmp_path):
    _small_world()
    path = tmp_path / "b.jsonl.gz"
    call_command("sage_export", str(path), verbosity=0)
    _flush()

    def newer(lines):
        header = orjson.loads(lines[0])
        header["migrations"]["judges"].append("0099_from_the_future")
        return [orjson.dumps(header) + b"\n", *lines[1:]]

    with pytest.raises(CommandError, match=r"judges: the backup has 0099_from_the_future, not applied here"):
        call_command("sage_import", str(_rewrite(path, newer)), verbosity=0)
    assert not get_user_model().objects.exists()


def test_a_file_that_is_not_a_backup_is_refused(tmp_path, db):
    path = tmp_path / "x.jsonl.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(b'{"hello": 1}\n')
    with pytest.raises(CommandError, match="line 1: not a SAGE backup"):
        call_command("sage_import", str(path), verbosity=0)


# --- the real snapshot and commit path, outside a test transaction -------------------------------------

# Not serialized_rollback: restoring the serialized database collides with the content types that an
# earlier transactional test's flush re-created; this test needs no data from the migrations.
@pytest.mark.django_db(transaction=True)
def test_export_and_import_commit_for_real(tmp_path):
    from policy.models import PolicyVersion

    _small_world()
    first = tmp_path / "first.jsonl"
    call_command("sage_export", str(first), verbosity=0)
    call_command("flush", interactive=False, verbosity=0)
    call_command("sage_import", str(first), verbosity=0)
    second = tmp_path / "second.jsonl"
    call_command("sage_export", str(second), verbosity=0)
    assert _records(first) == _records(second) and PolicyVersion.objects.count() == 1



def test_student_files_that_cannot_be_placed_after_the_commit_are_not_called_nothing_imported(tmp_path):
    from sage.backup import FilesNotPlaced
    from sage.management.commands._progress import with_progress

    def committed_then_failed(**_kwargs):
        raise FilesNotPlaced("the records are imported, but placing the student files failed (disk full)")

    with pytest.raises(CommandError) as refused:
        with_progress(committed_then_failed, path=tmp_path / "b.jsonl", verbosity=0, failure="Nothing imported: ")
    assert str(refused.value).startswith("the records are imported") and "Nothing imported" not in str(refused.value)
