from django import template

register = template.Library()


@register.filter
def get(mapping, key):
    """`mapping|get:key` for dict lookups with a variable key (None when absent)."""
    if not mapping:
        return None
    return mapping.get(key)
