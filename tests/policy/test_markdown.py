from policy.markdown import extract_clauses, render_policy


def test_headings_become_clauses_with_stable_anchors():
    clauses = extract_clauses("# Title\n\n## Scope\n\ntext\n\n## Scope\n\n### Edge cases: ‘quotes’\n")
    assert [(c.anchor, c.level) for c in clauses] == [("title", 1), ("scope", 2), ("scope-2", 2), ("edge-cases-quotes", 3)]


def test_an_anchor_survives_edits_to_the_text_around_it():
    before = {c.anchor for c in extract_clauses("## Scope\n\nOld text.\n\n## Freshness\n")}
    after = {c.anchor for c in extract_clauses("Intro.\n\n## Scope\n\nNew text.\n\n## Freshness\n\n## Safety\n")}
    assert before <= after


def test_rendering_gives_each_heading_its_clause_id():
    html = render_policy("## Perfectly relevant (3)\n\nDedicated.")
    assert '<h2 id="clause-perfectly-relevant-3">' in html


def test_raw_html_and_scripts_do_not_pass_through():
    html = render_policy('<script>alert(1)</script>\n\n<img src=x onerror=alert(1)>\n\n[x](javascript:alert(1))')
    assert "<script" not in html
    assert "<img" not in html
    assert 'href="javascript' not in html
