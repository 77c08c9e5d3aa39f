from __future__ import annotations

import json

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.text import slugify
from django.views.decorators.http import require_GET, require_POST

from sage.params import int_param
from sage.roles import Role, has_role

from .forms import PolicyCreateForm, rubric_apply_op, rubric_from_post, rubric_rows
from .markdown import render_policy
from .models import Policy, PolicyVersion
from .rubric import RubricError, trec_relevance_dimension
from .selectors import policies_for_list, version_diff
from .services import (
    MAX_POLICY_CHARS,
    PolicyError,
    StaleDraftError,
    policy_create,
    policy_draft_start,
    policy_draft_update,
    policy_version_delete_draft,
    policy_version_publish,
    surface_get_or_create,
)


@require_GET
def policy_list(request: HttpRequest) -> HttpResponse:
    return render(request, "policy/list.html", {"policies": policies_for_list(),
                                                "can_edit": has_role(request.user, Role.REVIEWER)})


def policy_new(request: HttpRequest) -> HttpResponse:
    if not has_role(request.user, Role.REVIEWER):
        raise PermissionDenied("Only reviewers and admins can create policies.")  # the styled 403 page
    form = PolicyCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        surface = form.cleaned_data["surface"] or surface_get_or_create(
            slug=slugify(form.cleaned_data["new_surface"])[:60], name=form.cleaned_data["new_surface"])
        try:
            draft = policy_create(surface=surface, slug=form.cleaned_data["slug"], name=form.cleaned_data["name"],
                                  text=f"# {form.cleaned_data['name']}\n\nDescribe what makes a result relevant.\n",
                                  rubric={"dimensions": [trec_relevance_dimension()]}, user=request.user)
        except PolicyError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, "Policy created with a first draft. Write it, then ask an admin to publish.")
            return redirect("policy:draft", pk=draft.policy_id)
    return render(request, "policy/new.html", {"form": form})


@require_GET
def policy_detail(request: HttpRequest, pk: int) -> HttpResponse:
    policy = get_object_or_404(Policy.objects.select_related("surface"), pk=pk)
    versions = list(policy.versions.select_related("published_by", "created_by").order_by("-number"))
    latest = policy.latest_published()
    return render(request, "policy/detail.html", {
        "policy": policy, "versions": versions, "latest": latest, "draft": policy.current_draft(),
        "published": [v for v in versions if v.is_published],
        "rendered": render_policy(latest.text) if latest else None,
        "rubric": latest.parsed_rubric() if latest else None,
        "can_edit": has_role(request.user, Role.REVIEWER),
    })


@require_GET
def version_detail(request: HttpRequest, pk: int, version_pk: int) -> HttpResponse:
    version = get_object_or_404(PolicyVersion.objects.select_related("policy__surface"), pk=version_pk, policy_id=pk)
    return render(request, "policy/version.html", {
        "version": version, "policy": version.policy, "rendered": render_policy(version.text),
        "rubric": version.parsed_rubric(), "clauses": version.clauses.all(),
    })


@require_GET
def diff(request: HttpRequest, pk: int) -> HttpResponse:
    policy = get_object_or_404(Policy, pk=pk)
    versions = list(policy.versions.order_by("-number"))
    published = [v for v in versions if v.is_published]
    by_id = {str(v.pk): v for v in versions}
    default_new = policy.current_draft() or (published[0] if published else None)
    new = by_id.get(request.GET.get("b", ""), default_new)
    old = by_id.get(request.GET.get("a", ""), new.based_on if new and new.based_on else (published[1] if len(published) > 1 else None))
    context = {"policy": policy, "versions": versions, "old": old, "new": new,
               "diff": version_diff(old, new) if old and new else None}
    return render(request, "policy/diff.html", context)


def _draft_context(request: HttpRequest, draft: PolicyVersion, *, rubric: dict | None = None,
                   errors: dict | None = None, text: str | None = None, conflict: str | None = None) -> dict:
    rubric = rubric if rubric is not None else draft.rubric
    text = draft.text if text is None else text
    return {
        "policy": draft.policy, "draft": draft, "text": text, "preview": render_policy(text),
        "rubric_rows": rubric_rows(rubric, errors), "dim_count": len(rubric.get("dimensions", [])),
        "rubric_errors": (errors or {}).get("", []) + (errors or {}).get("overall", []) + (errors or {}).get("dimensions", []),
        "can_publish": has_role(request.user, Role.ADMIN), "conflict": conflict,
    }


@require_POST
def draft_start(request: HttpRequest, pk: int) -> HttpResponse:
    if not has_role(request.user, Role.REVIEWER):
        raise PermissionDenied("Only reviewers and admins can edit policies.")
    policy = get_object_or_404(Policy, pk=pk)
    try:
        policy_draft_start(policy=policy, user=request.user)
    except PolicyError as exc:
        messages.error(request, str(exc))
        return redirect("policy:detail", pk=pk)
    return redirect("policy:draft", pk=pk)


def draft_edit(request: HttpRequest, pk: int) -> HttpResponse:
    if request.method == "POST" and not has_role(request.user, Role.REVIEWER):
        # Before looking for the draft: with none open, a refused save must still read as refused.
        raise PermissionDenied("Only reviewers and admins can edit policies.")
    policy = get_object_or_404(Policy, pk=pk)
    draft = policy.current_draft()
    if draft is None:
        messages.info(request, "There is no open draft; start one from the latest published version.")
        return redirect("policy:detail", pk=pk)
    if request.method != "POST":
        return render(request, "policy/draft.html", _draft_context(request, draft))
    text = request.POST.get("text", "")
    rubric = rubric_from_post(request.POST)
    try:
        lock = int_param(request.POST, "lock_version", -1)
        draft = policy_draft_update(draft=draft, user=request.user, expected_lock_version=lock, text=text,
                                    rubric=rubric, change_note=request.POST.get("change_note", ""))
    except RubricError as exc:
        context = _draft_context(request, draft, rubric=rubric, errors=exc.errors, text=text)
        context["save_error"] = "Not saved: fix the rubric errors shown in place."
        return render(request, "policy/draft.html#editor" if request.htmx else "policy/draft.html", context, status=422)
    except StaleDraftError as exc:
        # `draft` was read in this request, so it carries the other save's lock version: a second
        # Save overwrites theirs on purpose, which is why their text is shown before it can happen.
        context = _draft_context(request, draft, rubric=rubric, text=text, conflict=str(exc))
        context["their_text"] = draft.text
        return render(request, "policy/draft.html#editor" if request.htmx else "policy/draft.html", context, status=409)
    except (PolicyError, ValueError) as exc:
        context = _draft_context(request, draft, rubric=rubric, text=text)
        context["save_error"] = str(exc)
        return render(request, "policy/draft.html#editor" if request.htmx else "policy/draft.html", context, status=400)
    context = _draft_context(request, draft)
    context["saved"] = True
    if request.htmx:
        return render(request, "policy/draft.html#editor", context)
    messages.success(request, "Draft saved.")
    return redirect("policy:draft", pk=pk)


@require_POST
def draft_preview(request: HttpRequest, pk: int) -> HttpResponse:
    text = request.POST.get("text", "")
    if len(text) > MAX_POLICY_CHARS:
        # Rendering is CPU-bound in the text's size: refuse before parsing rather than after.
        return render(request, "policy/draft.html#preview", {"preview_error": (
            f"No preview: the text is {len(text):,} characters; the limit is {MAX_POLICY_CHARS:,}.")})
    return render(request, "policy/draft.html#preview", {"preview": render_policy(text)})


@require_POST
def draft_rubric(request: HttpRequest, pk: int) -> HttpResponse:
    """Add or remove a dimension or level in the form only; nothing is saved until Save."""
    rubric = rubric_apply_op(rubric_from_post(request.POST), request.POST.get("op", ""))
    return render(request, "policy/draft.html#rubric", {
        "policy": get_object_or_404(Policy, pk=pk),
        "rubric_rows": rubric_rows(rubric), "dim_count": len(rubric["dimensions"]),
    })


@require_POST
def draft_publish(request: HttpRequest, pk: int) -> HttpResponse:
    if not has_role(request.user, Role.ADMIN):  # the service refuses too; this makes it a 403, not a message
        raise PermissionDenied("Only admins can publish a policy version.")
    policy = get_object_or_404(Policy, pk=pk)
    draft = policy.current_draft()
    if draft is None:
        messages.error(request, "There is no draft to publish.")
        return redirect("policy:detail", pk=pk)
    try:
        version = policy_version_publish(draft=draft, user=request.user,
                                         change_note=request.POST.get("change_note", ""),
                                         expected_lock_version=int_param(request.POST, "lock_version", -1))
    except (PolicyError, ValueError) as exc:
        messages.error(request, f"Not published: {exc}")
        return redirect("policy:draft", pk=pk)
    messages.success(request, f"Published {version.label}. Labels and judgments made from now on can cite it.")
    return redirect("policy:detail", pk=pk)


@require_POST
def draft_discard(request: HttpRequest, pk: int) -> HttpResponse:
    if not has_role(request.user, Role.REVIEWER):
        raise PermissionDenied("Only reviewers and admins can discard drafts.")
    policy = get_object_or_404(Policy, pk=pk)
    draft = policy.current_draft()
    if draft is not None:
        try:
            policy_version_delete_draft(draft=draft, user=request.user)
        except PolicyError as exc:
            messages.error(request, str(exc))
            return redirect("policy:draft", pk=pk)
        messages.success(request, "Draft discarded.")
    return redirect("policy:detail", pk=pk)


@require_GET
def version_rubric_json(request: HttpRequest, pk: int, version_pk: int) -> HttpResponse:
    version = get_object_or_404(PolicyVersion, pk=version_pk, policy_id=pk)
    return HttpResponse(json.dumps(version.rubric, indent=2), content_type="application/json")
