"""A query restricted to a box describes exactly the pixels of that box: the same descriptor and
the same ranking as the box saved as a file (losslessly), through the API and the command line,
for a large EXIF-rotated JPEG (decoded in draft mode when indexed) and a small PNG."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import synthetic_photo
from lookalike.api import Index
from lookalike.cli import app
from lookalike.io import load_image


@pytest.fixture(scope="module", params=["color", "gem"])
def setup(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("box")
    coll = root / "photos"
    coll.mkdir()
    big = np.asarray(Image.fromarray(synthetic_photo(5, (300, 200))).resize((1800, 1200), Image.BICUBIC))
    ex = Image.Exif()
    ex[0x0112] = 6  # stored on its side: displayed 1200 wide, 1800 high
    Image.fromarray(big).save(coll / "original.jpg", quality=92, exif=ex)
    for s in range(6):
        Image.fromarray(synthetic_photo(30 + s, (240, 180))).save(coll / f"other{s}.jpg", quality=92)
    Image.fromarray(synthetic_photo(5, (160, 120))).save(coll / "small.png")
    ix = Index(root / "idx", request.param)
    ix.add([coll])
    yield ix, coll, root
    ix.close()


@pytest.mark.parametrize("name, box", [("original.jpg", (150, 300, 700, 900)), ("small.png", (20, 10, 90, 80))])
def test_a_box_query_equals_the_box_saved_as_a_file(setup, name, box):
    ix, coll, root = setup
    rgb = load_image(coll / name)
    x, y, w, h = box
    saved = root / f"crop-{name}.png"
    Image.fromarray(rgb[y:y + h, x:x + w]).save(saved)
    boxed, _ = ix.describe_query(coll / name, box)
    cropped, _ = ix.describe_query(saved)
    np.testing.assert_allclose(boxed, cropped, atol=1e-5)
    a = ix.search(coll / name, k=5, box=box).hits
    b = ix.search(saved, k=5).hits
    assert [h.id for h in a] == [h.id for h in b]  # the same top hit, and the same ranking after it
    np.testing.assert_allclose([h.score for h in a], [h.score for h in b], atol=1e-5)
    cli = CliRunner()
    by_box = cli.invoke(app, ["search", str(coll / name), "--index", str(ix.dir), "--box", ",".join(map(str, box)),
                              "-k", "5", "--json"])
    by_file = cli.invoke(app, ["search", str(saved), "--index", str(ix.dir), "-k", "5", "--json"])
    assert by_box.exit_code == 0, by_box.output
    ids = lambda r: [h["id"] for h in json.loads(r.stdout)["results"]]  # noqa: E731
    assert ids(by_box) == ids(by_file) == [h.id for h in a]


def test_a_box_on_a_file_too_large_to_decode_whole_cuts_the_same_region(setup, monkeypatch):
    """A JPEG over the pixel limit is decoded at half size: its box, given in the file's pixels,
    must cut the same part of the picture (not the part at those coordinates of the half-size
    decode, which was the lower right instead)."""
    import lookalike.io as lio

    ix, coll, root = setup
    full = load_image(coll / "original.jpg")  # 1200 x 1800 as displayed
    box = (150, 300, 700, 900)
    x, y, w, h = box
    saved = root / "crop-full.png"
    Image.fromarray(full[y:y + h, x:x + w]).save(saved)
    want, _ = ix.describe_query(saved)
    code = lio.load_image.__code__
    defaults = dict(zip(code.co_varnames[1:code.co_argcount], lio.load_image.__defaults__))
    defaults["max_pixels"] = 1_000_000  # 2.16 MP: decoded at 1/2
    monkeypatch.setattr(lio.load_image, "__defaults__", tuple(defaults.values()))
    assert load_image(coll / "original.jpg").shape[:2] == (900, 600)
    got, _ = ix.describe_query(coll / "original.jpg", box)
    assert float(got[0] @ want[0]) > 0.97
    assert [h.id for h in ix.search(coll / "original.jpg", k=3, box=box).hits] == \
        [h.id for h in ix.search(saved, k=3).hits]
