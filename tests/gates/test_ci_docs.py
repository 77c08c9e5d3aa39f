"""The CI examples in docs/ci stay valid YAML and call the API and command that exist."""

from pathlib import Path

import pytest
from django.core.management import get_commands
from django.urls import reverse

DOCS = Path(__file__).resolve().parents[2] / "docs" / "ci"


@pytest.mark.parametrize("name", ["github-actions.yml", "gitlab-ci.yml"])
def test_the_ci_example_parses_and_calls_the_real_endpoint(name):
    yaml = pytest.importorskip("yaml")  # PyYAML comes with the ml extra (transformers)
    text = (DOCS / name).read_text()
    assert yaml.safe_load(text)
    assert reverse("gates:api-runs", args=["GATE"]).replace("GATE", "$GATE") in text
    assert "Authorization: Bearer $SAGE_TOKEN" in text and "exit_code" in text
    assert "sage_gate" in text and "sage_gate" in get_commands() and "--junit" in text
