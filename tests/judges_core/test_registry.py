"""The backend registry is the one place a backend is named: the model, the forms, the services, the
queues and the calibration page all read it, so a new entry shows up everywhere at once."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from judges.core.backends import BACKENDS, BackendSpec, backend_choices, backend_spec, backends_where, get_backend

ROOT = Path(__file__).resolve().parents[2]
FAKE = BackendSpec("fake", "A fake local model", "judges.core.openai_backend.OpenAIBackend", prompt_based=False,
                   pricing="hardware", max_batch_size=7, queue_setting="SAGE_STUDENT_QUEUE")


@pytest.fixture
def fake_backend(monkeypatch):
    monkeypatch.setitem(BACKENDS, "fake", FAKE)
    return FAKE


def test_openai_imported_and_student_are_registered_with_their_capabilities():
    assert list(BACKENDS)[:3] == ["openai", "imported", "student"]
    assert backend_spec("openai").needs_endpoint and backend_spec("openai").prompt_based
    assert not backend_spec("imported").has_model and backend_spec("imported").pricing == "per_1k"
    student = backend_spec("student")
    assert student.uses_student and not student.prompt_based and student.max_batch_size > 1
    assert student.queue_setting == "SAGE_STUDENT_QUEUE" and student.pricing == "hardware"
    assert backends_where(has_model=False) == ["imported"]
    with pytest.raises(ValueError, match="unknown judge backend 'nope'"):
        backend_spec("nope")
    with pytest.raises(ValueError, match="has no model"):
        get_backend("imported")


def test_a_registered_backend_gets_its_batch_size_from_the_registry(fake_backend):
    assert get_backend("fake", base_url="http://127.0.0.1:1/v1").max_batch_size == 7
    assert get_backend("openai", base_url="http://127.0.0.1:1/v1").max_batch_size == 1


@pytest.mark.django_db
def test_a_new_registry_entry_shows_up_in_the_model_forms_services_and_queues(fake_backend, settings):
    from judges.forms import JudgeCreateForm, JudgeVersionForm, RunStartForm
    from judges.models import JudgeVersion
    from judges.services import backend_queue, run_queues

    assert ("fake", "A fake local model") in backend_choices()
    assert ("fake", "A fake local model") in JudgeVersion._meta.get_field("backend").choices
    JudgeVersion._meta.get_field("backend").validate("fake", None)  # the model accepts it
    for form in (JudgeVersionForm(), JudgeCreateForm()):
        assert ("fake", "A fake local model") in form.fields["backend"].choices
        # Field visibility follows the capabilities: no endpoint, no prompt, priced by hardware time.
        assert "fake" in form.fields["model_name"].backends.split()
        assert "fake" not in form.fields["concurrency"].backends.split()
        assert "fake" not in form.fields["endpoint_name"].backends.split()
        assert "fake" not in form.fields["precedent_k"].backends.split()
        assert "fake" not in form.fields["price_in_per_m"].backends.split()
    assert "fake" in str(RunStartForm().fields["version"].queryset.query)
    settings.SAGE_STUDENT_QUEUE = "gpu-hosts"
    assert backend_queue(fake_backend) == "gpu-hosts" and "gpu-hosts" in run_queues()
    assert backend_queue(backend_spec("openai")) == settings.CELERY_TASK_DEFAULT_QUEUE


def test_the_judges_app_and_calibration_views_name_no_backend_outside_the_registry():
    names = "|".join(BACKENDS)
    literal = re.compile(rf"""(["'])({names})\1""")
    files = [*(ROOT / "judges").glob("*.py"), ROOT / "calibration" / "views.py", *(ROOT / "templates" / "judges").glob("*.html")]
    # The demo and tests create judges *by* name, which is using the registry, not defining it.
    offenders = [f"{path.relative_to(ROOT)}: {line.strip()}" for path in files if path.name != "demo.py"
                 for line in path.read_text().splitlines() if literal.search(line) and not line.strip().startswith("#")]
    assert offenders == []


def test_importing_the_judges_app_does_not_import_torch():
    code = ("import django, os, sys; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'sage.settings'); django.setup(); "
            "import judges.models, judges.forms, judges.services, judges.tasks, judges.views, judges.costs; "
            "import judges.core.student_backend; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(ROOT), timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"
