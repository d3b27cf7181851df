"""The one check of a user's text (a phrase, a question) before it reaches a text tower."""

from __future__ import annotations


def check_text(text) -> str:
    """The text stripped; ValueError for an empty or overlong one, saying what is accepted."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"the text is empty ({text!r}); type a phrase such as 'metastatic carcinoma'")
    if len(text) > 2000:
        raise ValueError(f"the text is {len(text)} characters; keep a phrase under 2,000 characters")
    return text.strip()
