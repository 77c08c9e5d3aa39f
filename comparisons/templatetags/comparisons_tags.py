from django import template

register = template.Library()


@register.filter
def get(mapping, key):
    """`mapping[key]`, or None: metric names hold '@' and ':' and cannot be template attribute lookups."""
    try:
        return mapping.get(key)
    except AttributeError:
        return None


@register.filter
def signed(value, digits: int = 4):
    if value is None:
        return "—"
    return f"{value:+.{int(digits)}f}"


@register.filter
def num(value, digits: int = 4):
    if value is None:
        return "—"
    return f"{value:.{int(digits)}f}"
