from __future__ import annotations

from channels.text import clean_text


def test_removes_nul_and_c0_controls_but_keeps_tab_and_newline() -> None:
    assert clean_text("a\x00b\x07c\td\ne\x1bf\r\x1f") == "abc\td\nef"


def test_keeps_unicode_and_del_as_sent() -> None:
    text = "Grüße 👋 \u200b\x7f"
    assert clean_text(text) == text
