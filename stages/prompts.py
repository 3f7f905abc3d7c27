"""Text prompts for SR backbones: user text + an optional caption + the degradation description.

DaLPSR-style: telling a text-conditioned SR model what degraded the input (``degradation_text``
of the lq table) next to what the image shows helps it restore rather than reproduce the defects.
"""

from __future__ import annotations

import string

FIELDS = ("positive", "caption", "degradation")


def check_template(template: str) -> None:
    """Reject templates with fields other than {positive}, {caption}, {degradation}."""
    names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    unknown = sorted(names - set(FIELDS))
    if unknown:
        raise ValueError(f"sample.prompt.template uses unknown field(s) {unknown}; allowed: {list(FIELDS)}")


def build_prompt(template: str, positive: str = "", caption: str | None = None, degradation: str | None = None) -> str:
    """Fill ``template`` and drop the comma-separated parts left empty (no caption, no text)."""
    filled = template.format(positive=positive or "", caption=caption or "", degradation=degradation or "")
    return ", ".join(part.strip() for part in filled.split(",") if part.strip())
