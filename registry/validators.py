"""Validators shared by registry fields."""

from __future__ import annotations

import math

from django.core.exceptions import ValidationError


def validate_json_safe(value) -> None:
    """Refuse what valid JSON columns cannot store: NaN/Infinity and NUL characters (PostgreSQL jsonb refuses both)."""

    def walk(node, where: str) -> None:
        if isinstance(node, float) and not math.isfinite(node):
            raise ValidationError(f"{where or 'The value'} is {node}; use a finite number.")
        if isinstance(node, str) and "\x00" in node:
            raise ValidationError(f"{where or 'The value'} contains a NUL character.")
        if isinstance(node, dict):
            for key, item in node.items():
                walk(key, f"Key {key!r}")
                walk(item, f"{where}/{key}" if where else str(key))
        elif isinstance(node, list):
            for index, item in enumerate(node):
                walk(item, f"{where}[{index}]")

    walk(value, "")
