"""The navigation bar: an area appears once its app is installed and has a working page.

Apps register an entry here rather than in the base template, so the navigation never links to a
page that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.apps import apps
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse


@dataclass(frozen=True)
class NavItem:
    label: str
    url_name: str
    app_label: str


# In the order of the loop: policy → traffic → review → judge → calibrate → distill → compare → gate.
AREAS: tuple[NavItem, ...] = (
    NavItem("Policies", "policy:list", "policy"),
    NavItem("Precedents", "precedent:list", "precedent"),
    NavItem("Traffic", "traffic:index", "traffic"),
    NavItem("Review", "review:index", "review"),
    NavItem("Judges", "judges:index", "judges"),
    NavItem("Calibration", "calibration:index", "calibration"),
    NavItem("Distill", "distill:index", "distill"),
    NavItem("Comparisons", "comparisons:index", "comparisons"),
    NavItem("Gates", "gates:index", "gates"),
)


def nav_items(request: HttpRequest) -> list[dict]:
    items = []
    for area in AREAS:
        if not apps.is_installed(area.app_label):
            continue
        try:
            url = reverse(area.url_name)
        except NoReverseMatch:
            continue
        items.append({"label": area.label, "url": url, "active": request.path.startswith(url)})
    return items
