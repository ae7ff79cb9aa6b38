"""Text sources: file names, EXIF/XMP metadata, sidecar captions, captions files, Chinese words."""
from __future__ import annotations

import numpy as np
from PIL import Image

from lookalike.text.words import candidates, query_words, segment
from lookalike.text.sources import gather_texts, load_captions, metadata_texts, name_words


def _jpeg(path, **save):
    Image.fromarray(np.full((24, 24, 3), 128, np.uint8)).save(path, **save)
    return path


def test_name_words_drop_camera_numbers():
    assert name_words("Trips/beach_day/IMG_0042-sunsetView.jpg") == "trips beach day sunset view"
    assert name_words("/x/我的猫/DSC01234.JPG") == "我的猫"


def test_exif_description_and_xp_keywords(tmp_path):
    exif = Image.Exif()
    exif[0x010E] = "A red fox in the snow"
    exif[0x9C9E] = "wildlife;winter".encode("utf-16-le") + b"\x00\x00"
    p = _jpeg(tmp_path / "a.jpg", exif=exif)
    assert metadata_texts(p) == ["A red fox in the snow", "wildlife;winter"]


def test_xmp_dc_fields(tmp_path):
    xmp = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description>'
           '<dc:title><rdf:Alt><rdf:li xml:lang="x-default">Harbour at dawn</rdf:li></rdf:Alt></dc:title>'
           '<dc:subject><rdf:Bag><rdf:li>boats</rdf:li><rdf:li>fog</rdf:li></rdf:Bag></dc:subject>'
           '</rdf:Description></rdf:RDF></x:xmpmeta>')
    p = _jpeg(tmp_path / "b.jpg", xmp=xmp.encode())
    assert set(metadata_texts(p)) == {"Harbour at dawn", "boats", "fog"}


def test_sidecars_and_captions_file(tmp_path):
    (tmp_path / "holiday").mkdir()
    p = _jpeg(tmp_path / "holiday" / "c.jpg")
    (tmp_path / "holiday" / "c.jpg.txt").write_text("two kayaks on a lake\n", encoding="utf-8")
    (tmp_path / "holiday" / "c.txt").write_text("山间小屋", encoding="utf-8")
    caps = tmp_path / "caps.tsv"
    caps.write_text("path\tcaption\nholiday/c.jpg\ta wooden jetty\nother.jpg\tnothing\n", encoding="utf-8")
    loaded = load_captions(caps)
    assert loaded == {"holiday/c.jpg": ["a wooden jetty"], "other.jpg": ["nothing"]}
    entries = gather_texts(p, loaded)
    assert [e.text for e in entries if e.source == "caption"] == ["two kayaks on a lake", "山间小屋", "a wooden jetty"]
    assert [e.text.split()[-1] for e in entries if e.source == "filename"] == ["holiday"]


def test_csv_captions_with_commas(tmp_path):
    f = tmp_path / "c.csv"
    f.write_text('image,caption\nx.jpg,"a dog, a ball"\nx.jpg,second\n', encoding="utf-8")
    assert load_captions(f) == {"x.jpg": ["a dog, a ball", "second"]}


def test_chinese_text_is_segmented_into_words():
    words = segment("穿着连衣裙的小女孩 in red").split()
    assert {"连衣裙", "女孩", "小女孩"} <= set(words)
    assert "in" not in words and segment("a dog") == ""


def test_query_words_are_the_indexed_words_in_the_query():
    known = {"豹子", "草地", "狗", "小狗", "在"}
    words = query_words("一只豹子在草地上", lambda ws: known & set(ws))
    assert set(words) == {"豹子", "草地"}  # 在 is a stopword; 一只 unknown
    assert query_words("小狗", lambda ws: known & set(ws)) == ["小狗"]  # 狗 is covered by 小狗
    assert query_words("狗", lambda ws: known & set(ws)) == ["狗"]
    assert "一只" not in candidates("一只猫")
