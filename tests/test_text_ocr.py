"""OCR: rendered English and Chinese text is read and makes the image findable; a plain image is
skipped by the cheap gate. (Few tests: OCR is slow.)"""
from __future__ import annotations

import subprocess

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

pytest.importorskip("rapidocr_onnxruntime")


def _cjk_font() -> str | None:
    try:
        out = subprocess.run(["fc-list", ":lang=zh", "file"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    files = [line.split(":")[0].strip() for line in out.splitlines() if line.strip()]
    return files[0] if files else None


def test_rendered_text_is_read_and_searchable(tmp_path):
    from lookalike.text.ocr import likely_has_text, read_text
    from lookalike.text.sources import TextEntry
    from lookalike.text.store import TextIndex

    font_file = _cjk_font()
    if font_file is None:
        pytest.skip("no CJK font on this machine (install fonts-wqy-zenhei)")
    font = ImageFont.truetype(font_file, 40)
    im = Image.new("RGB", (520, 260), (245, 245, 235))
    d = ImageDraw.Draw(im)
    d.text((20, 20), "SUNFLOWER MARKET", fill=(20, 20, 20), font=font)
    d.text((20, 100), "我的小猫咪", fill=(20, 20, 20), font=font)
    d.text((20, 180), "OPEN DAILY", fill=(20, 20, 20), font=font)
    rgb = np.asarray(im)
    assert likely_has_text(rgb)
    assert not likely_has_text(np.full((200, 300, 3), 128, np.uint8))
    text = read_text(rgb)
    assert "SUNFLOWER" in text and "小猫" in text
    ti = TextIndex(tmp_path / "t.sqlite")
    ti.add(5, [TextEntry("ocr", text, 0.8)])
    ti.add(6, [TextEntry("caption", "a quiet road")])
    assert ti.search("sunflower", 1, methods=("keyword",))[1][0] == 5
    assert ti.search("猫", 1, methods=("keyword",))[1][0] == 5
