import pytest

from precedent.models import PrecedentEmbedding
from precedent.selection import precedents_select, similarity_scores, SelectionQuery
from precedent.services import PrecedentData, precedent_update, precedents_retire
from sage import embeddings
from tests.policy_factories import publish_policy
from tests.precedent_factories import make_precedent

pytestmark = pytest.mark.django_db

TEXTS = [
    ("how long do fleas live", "Adult fleas live two to three months on a host."),
    ("what is famvir prescribed for", "Famciclovir treats shingles and herpes outbreaks."),
    ("blanching spinach time", "Blanch spinach leaves in boiling water for two minutes."),
]


def seed(policy):
    return [make_precedent(policy, query=q, body=b) for q, b in TEXTS]


@pytest.fixture
def encoder_or_skip():
    if not embeddings.encoder_available():
        pytest.skip("the ml extra (MiniLM encoder) is not installed")


def test_it_returns_the_most_similar_accepted_precedents_first(encoder_or_skip):
    v1 = publish_policy()
    fleas, famvir, spinach = seed(v1.policy)
    picked = precedents_select(policy=v1.policy, query="spinach blanching", text="How many minutes to blanch spinach?", k=2)
    assert picked[0] == spinach
    assert len(picked) == 2


def test_selection_is_deterministic_and_skips_retired(encoder_or_skip, reviewer):
    v1 = publish_policy()
    fleas, famvir, spinach = seed(v1.policy)
    args = dict(policy=v1.policy, query="flea lifespan", text="Fleas live for months.", k=3)
    assert precedents_select(**args) == precedents_select(**args)
    precedents_retire(precedents=[fleas], user=reviewer)
    assert fleas not in precedents_select(**args)


def test_embeddings_are_cached_and_recomputed_only_when_text_changes(encoder_or_skip, reviewer, monkeypatch):
    v1 = publish_policy()
    fleas, famvir, spinach = seed(v1.policy)
    precedents_select(policy=v1.policy, query="x", text="y", k=1)
    assert PrecedentEmbedding.objects.count() == 3
    encoded = []
    real = embeddings.encode
    monkeypatch.setattr(embeddings, "encode", lambda texts, **kw: encoded.append(list(texts)) or real(texts))
    precedents_select(policy=v1.policy, query="x", text="y", k=1)
    assert encoded == [["x\ny"]]  # only the item, no precedent re-encoded
    precedent_update(precedent=fleas, user=reviewer, expected_revision=fleas.revision,
                     data=PrecedentData(query=fleas.query, body="Fleas: 30-90 days.", labels={"relevance": 3}, rationale="r"))
    encoded.clear()
    precedents_select(policy=v1.policy, query="x", text="y", k=1)
    assert encoded[0] == [f"{fleas.query}\n\nFleas: 30-90 days."]


def test_without_the_ml_extra_it_falls_back_to_lexical_similarity(monkeypatch, caplog):
    v1 = publish_policy()
    fleas, famvir, spinach = seed(v1.policy)

    def unavailable(*args, **kwargs):
        raise embeddings.EncoderUnavailable("the ml extra is not installed (torch missing)")

    monkeypatch.setattr(embeddings, "encode", unavailable)
    picked = precedents_select(policy=v1.policy, query="famvir", text="famciclovir prescribed for shingles", k=1)
    assert picked == [famvir]
    assert "falls back to TF-IDF" in caplog.text
    _, method = similarity_scores([fleas], [SelectionQuery("a", "b")])
    assert method == "lexical"


def test_k_zero_or_no_precedents_selects_nothing():
    v1 = publish_policy()
    assert precedents_select(policy=v1.policy, query="q", text="t", k=3) == []
    seed(v1.policy)
    assert precedents_select(policy=v1.policy, query="q", text="t", k=0) == []
