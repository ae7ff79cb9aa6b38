"""Composed queries: several images and texts with weights, negatives subtracted, on generated
images whose right answers are known."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import synthetic_photo
from lookalike.api import Index, Part, parse_query
from lookalike.errors import BadInputError, NotFoundError, UnsupportedError


def mosaic(a: np.ndarray, b: np.ndarray, tile: int = 8) -> np.ndarray:
    """Tiles of a and b in a checkerboard: its colours are half a's, half b's, everywhere."""
    yy, xx = np.mgrid[0:a.shape[0], 0:a.shape[1]]
    pick = ((yy // tile + xx // tile) % 2 == 0)[..., None]
    return np.where(pick, a, b)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("compose")
    coll, queries = root / "photos", root / "queries"
    coll.mkdir()
    queries.mkdir()
    a, b = synthetic_photo(1), synthetic_photo(2)
    brighter = lambda x: np.clip(x.astype(int) + 12, 0, 255).astype(np.uint8)  # noqa: E731
    Image.fromarray(brighter(a)).save(coll / "a_like.jpg", quality=92)
    Image.fromarray(brighter(b)).save(coll / "b_like.jpg", quality=92)
    Image.fromarray(mosaic(a, b)).save(coll / "a_and_b.png")
    for s in range(10, 16):
        Image.fromarray(synthetic_photo(s)).save(coll / f"other{s}.jpg", quality=92)
    Image.fromarray(a).save(queries / "a.png")
    Image.fromarray(b).save(queries / "b.png")
    ix = Index(root / "idx", "color")
    ix.add([coll])
    yield ix, queries
    ix.close()


def order(res) -> list[str]:
    return [Path(h.path).stem for h in res.hits]


def test_a_minus_b_ranks_what_is_like_a_and_unlike_b_first(setup):
    ix, q = setup
    plain = order(ix.search(q / "a.png", k=3))
    both = order(ix.search(query=f"{q / 'a.png'} + {q / 'b.png'}", k=3))
    minus = order(ix.search(query=f"{q / 'a.png'} - {q / 'b.png'}", k=13))
    assert both[0] == "a_and_b"  # like both
    assert minus[0] == "a_like"  # like a, unlike b
    assert minus.index("a_and_b") > plain.index("a_and_b") and minus[-1] == "b_like"


def test_weights_matter(setup):
    ix, q = setup
    more_a = order(ix.search(query=f"3:{q / 'a.png'} + {q / 'b.png'}", k=13))
    more_b = order(ix.search(query=f"{q / 'a.png'} + 3:{q / 'b.png'}", k=13))
    assert more_a.index("a_like") < more_a.index("b_like")
    assert more_b.index("b_like") < more_b.index("a_like")


def test_one_part_scores_as_a_plain_query_and_parts_by_id_or_object(setup):
    ix, q = setup
    plain = ix.search(q / "a.png", k=5)
    one = ix.search(query=str(q / "a.png"), k=5)
    assert [h.id for h in one.hits] == [h.id for h in plain.hits]
    np.testing.assert_allclose([h.score for h in one.hits], [h.score for h in plain.hits], rtol=1e-4, atol=1e-5)
    a_like = ix.catalog.by_path(str(q.parent / "photos" / "a_like.jpg")).id
    by_id = ix.search(query=f"#{a_like} - 0.5:{q / 'b.png'}", k=1)
    assert by_id.hits[0].id == a_like
    parts = [Part(1.0, image=np.asarray(Image.open(q / "a.png"))), Part(-1.0, image=str(q / "b.png"))]
    assert order(ix.search(query=parts, k=1)) == ["a_like"]
    half = ix.search(query=f"{q / 'a.png'} - {q / 'b.png'}", k=13, filters={"types": "png"})
    assert order(half) == ["a_and_b"]


def test_parse_query_follows_rclip(tmp_path):
    img = tmp_path / "pool.jpg"
    Image.fromarray(synthetic_photo(3)).save(img)
    parts = parse_query(f'"2:golden retriever" + {img} - fruit + #12 - 0.5:"a red car"')
    assert [(p.weight, p.text, p.image, p.id) for p in parts] == [
        (2.0, "golden retriever", None, None), (1.0, None, str(img), None), (-1.0, "fruit", None, None),
        (1.0, None, None, 12), (-0.5, "a red car", None, None)]
    assert parse_query("t-shirt + sea")[0].text == "t-shirt"  # a sign needs spaces around it
    assert parse_query(f"{img}", allow_paths=False)[0].text == str(img)  # a server's clients name no files
    for bad in ("", "  ", "dog + ", "0:dog", "missing-file.jpg"):
        with pytest.raises(BadInputError):
            parse_query(bad)


def test_bad_composed_queries_are_one_line_errors(setup):
    ix, q = setup
    with pytest.raises(BadInputError, match="positive"):
        ix.search(query=f"- {q / 'a.png'}")
    with pytest.raises(BadInputError, match="cancel"):
        ix.search(query=f"{q / 'a.png'} - {q / 'a.png'}")
    with pytest.raises(NotFoundError):
        ix.search(query="#98765")
    with pytest.raises(UnsupportedError, match="text"):
        ix.search(query=f"{q / 'a.png'} + sunset")
    with pytest.raises(BadInputError):
        ix.search(q / "a.png", query="#1")


@pytest.fixture(scope="module")
def text_index(tmp_path_factory):
    root = tmp_path_factory.mktemp("captioned")
    captions = {"shore1": "a sandy beach at sunset", "shore2": "a beach with palm trees at noon",
                "town": "a city street at night", "woods": "a path through a pine forest"}
    for n, (name, caption) in enumerate(captions.items()):
        Image.fromarray(synthetic_photo(20 + n)).save(root / f"{name}.jpg", quality=92)
        (root / f"{name}.jpg.txt").write_text(caption, encoding="utf-8")
    ix = Index(tmp_path_factory.mktemp("tidx") / "idx", "text")
    ix.add([root])
    yield ix, root
    ix.close()


def test_keyword_filter_and_text_parts_on_a_text_index(text_index):
    ix, root = text_index
    town = ix.catalog.by_path(str(root / "town.jpg")).id
    res = ix.search(id=town, k=4, filters={"keyword": "beach"})
    assert sorted(order(res)) == ["shore1", "shore2"]  # only the images whose text has the word
    assert order(ix.search(text="forest", k=4, filters={"keyword": "beach"}))[0].startswith("shore")
    assert order(ix.search(query="beach - sunset", k=2))[0] == "shore2"
    assert order(ix.search(query="beach + sunset", k=2))[0] == "shore1"
    mixed = ix.search(query=f"#{town} + 0.5:palm trees", k=4, filters={"keyword": "beach"})
    assert order(mixed)[0] == "shore2" and len(mixed.hits) == 2
