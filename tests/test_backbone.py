"""The ONNX backbone's classifier access and DeepExtractor: region queries, foreground, paths."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lookalike.features.deep import DeepExtractor, crop_map, mask_box


def stripes(h: int = 160, w: int = 160, period: int = 8) -> np.ndarray:
    x = (np.arange(w) // (period // 2)) % 2
    img = np.zeros((h, w, 3), np.uint8)
    img[:, :, 0] = (x * 220)[None, :]
    img[:, :, 1] = 40
    return img


def checker(h: int = 160, w: int = 160, cell: int = 20) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    c = ((yy // cell + xx // cell) % 2).astype(np.uint8) * 200
    return np.stack([c // 4, c, 255 - c], axis=-1)


@pytest.fixture(scope="module")
def gem() -> DeepExtractor:
    return DeepExtractor(aggregator="gem", max_side=160)


def test_crop_map_by_hand():
    fmap = np.arange(2 * 4 * 6, dtype=np.float32).reshape(2, 4, 6)
    np.testing.assert_array_equal(crop_map(fmap, (0.0, 0.0, 0.5, 1.0)), fmap[:, :, :3])
    np.testing.assert_array_equal(crop_map(fmap, (0.5, 0.5, 1.0, 1.0)), fmap[:, 2:, 3:])
    assert crop_map(fmap, (0.99, 0.99, 1.0, 1.0)).shape == (2, 1, 1)  # never empty


def test_mask_box_by_hand():
    m = np.zeros((4, 8), bool)
    m[1:3, 2:4] = True
    assert mask_box(m) == (0.25, 0.25, 0.5, 0.75)
    assert mask_box(np.zeros((3, 3), bool)) == (0.0, 0.0, 1.0, 1.0)


def test_classifier_reproduces_logits(gem):
    weight, bias = gem.net.classifier()
    assert weight.shape == (1000, 1280) and bias.shape == (1000,)
    fmap, logits = gem.net.run([checker(128, 96)])[0]
    np.testing.assert_allclose(weight @ fmap.mean(axis=(1, 2)) + bias, logits, atol=1e-3)


def test_describe_is_unit_norm(gem):
    img = checker()
    v = gem.describe([img, stripes()])
    assert v.shape == (2, 1280) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)


def test_localise_finds_textured_object():
    ex = DeepExtractor(aggregator="gem", max_side=256)
    img = np.full((256, 256, 3), 128, np.uint8)
    img[96:224, 32:160] = checker(128, 128, 16)
    for method in ("scda", "cam"):
        x, y, w, h = ex.localise(img, method)
        ix = max(0.0, min(x + w, 160) - max(x, 32)) * max(0.0, min(y + h, 224) - max(y, 96))
        assert ix / (w * h + 128 * 128 - ix) > 0.3, method
    fg = DeepExtractor(aggregator="gem", max_side=256, foreground="scda")
    assert fg.describe([img]).shape == (1, 1280)


def test_cam_multiscale_flip_and_paths(tmp_path):
    ex = DeepExtractor(aggregator="cam", max_side=128, scales=(1.0, 0.75), flip=True, top=3)
    imgs = [checker(120, 90), stripes(90, 120)]
    paths = []
    for i, im in enumerate(imgs):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(im).save(paths[-1])
    v = ex.describe(imgs)
    assert v.shape == (2, 1280) and np.isfinite(v).all()
    np.testing.assert_allclose(ex.describe_paths(paths, batch=1), v, atol=1e-5)
    assert ex.config()["scales"] == [1.0, 0.75] and ex.config()["params"] == {"top": 3}


def test_loading_the_torch_backbone_prints_nothing_on_stdout(capsys) -> None:
    """The weights loader prints a line; on stdout it broke the JSON of `train --json`."""
    from lookalike.features.backbone import load_torch_backbone

    load_torch_backbone("efficientnet-lite0")
    out = capsys.readouterr()
    assert out.out == "" and "Loaded pretrained weights" in out.err


def test_turns_average_the_four_quarter_turns_so_a_turned_image_matches():
    """``turns``: aerial photos have no up; the descriptor of an image turned a quarter is the same."""
    from lookalike.features.deep import mask_box, turn_box

    ex = DeepExtractor(aggregator="gem", max_side=96, turns=True)
    plain = DeepExtractor(aggregator="gem", max_side=96)
    img = checker(96, 96, 12)
    img[10:40, 50:90] = (200, 40, 40)
    turned = np.ascontiguousarray(np.rot90(img))
    a, b = ex.describe([img, turned])
    assert float(a @ b) > 0.999
    p, q = plain.describe([img, turned])
    assert float(p @ q) < float(a @ b)
    assert ex.config()["turns"] is True and "turns" not in plain.config()
    assert not ex.shares_pass(plain)
    mask = np.zeros((6, 8), bool)
    mask[1:3, 4:7] = True
    box = mask_box(mask)
    for t in range(1, 4):
        assert turn_box(box, t) == pytest.approx(mask_box(np.rot90(mask, t)))
