"""The page `GET /` returns: one self-contained HTML file (no CDN, fonts or external scripts)."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

__all__ = ["render_page"]

PLACEHOLDER = "/*IFA_MODEL*/"


@cache
def _template() -> str:
    return resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8")


def render_page(model: str, classes: list[str], palette: list[list[int]], token: bool) -> str:
    """The page with the model's name, classes and label colours built in."""
    facts: dict[str, Any] = {
        "model": model,
        "classes": classes,
        "palette": palette,
        "token_required": token,
    }
    # "</" could close the script element early; JSON allows the escaped form.
    return _template().replace(PLACEHOLDER, json.dumps(facts).replace("</", "<\\/"))
