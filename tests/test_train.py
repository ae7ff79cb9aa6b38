"""Fine-tuning: data readers, losses, mining, whitening, and a tiny end-to-end training run."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lookalike.train.data import read_labelled, split_classes
from lookalike.train.losses import contrastive, triplet
from lookalike.train.mining import mine_tuples
from lookalike.train.whiten import LearnedWhitening, learn_whitening, positive_pairs

from conftest import synthetic_photo


def _class_images(root: Path, classes: int = 4, per_class: int = 5) -> Path:
    """Class folders; each class is one synthetic scene seen through different crops and tints."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        base = synthetic_photo(100 + c, size=(150, 120))
        (root / f"class{c}").mkdir(parents=True)
        for k in range(per_class):
            x, y = rng.integers(0, 30), rng.integers(0, 24)
            im = base[y:y + 96, x:x + 120].astype(np.float32) * rng.uniform(0.85, 1.15, 3)
            Image.fromarray(np.clip(im, 0, 255).astype(np.uint8)).save(root / f"class{c}" / f"{k}.jpg")
    return root


def test_readers_folders_csv_and_benchmark(tmp_path: Path) -> None:
    root = _class_images(tmp_path / "imgs", classes=3, per_class=2)
    got = read_labelled(root)
    assert got.labels == ["class0", "class0", "class1", "class1", "class2", "class2"]
    csv = tmp_path / "pairs.csv"
    csv.write_text("image_a,image_b,match\nimgs/class0/0.jpg,imgs/class0/1.jpg,1\n"
                   "imgs/class1/0.jpg,imgs/class1/1.jpg,1\nimgs/class0/0.jpg,imgs/class1/0.jpg,0\n")
    pairs = read_labelled(csv)
    assert len(pairs) == 4 and len(pairs.classes()) == 2  # two matching groups
    gt = {"format": "lookalike-benchmark/1", "db_dir": "imgs", "queries": [],
          "db": [{"id": "a", "file": "class0/0.jpg"}, {"id": "b", "file": "class1/0.jpg"}],
          "labels": {"a": "x", "b": "y"}}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    assert read_labelled(tmp_path).labels == ["x", "y"]
    tr, va = split_classes([f"c{i}" for i in range(20)], 0.2)
    assert len(va) == 4 and not set(tr) & set(va)


def test_losses_known_values() -> None:
    q = torch.tensor([[1.0, 0.0]])
    p = torch.tensor([[0.0, 1.0]])  # distance sqrt(2)
    n = torch.tensor([[[1.0, 0.0]]])  # distance 0
    assert contrastive(q, p, n, margin=0.7).item() == pytest.approx(0.5 * 2 + 0.5 * 0.49)
    assert triplet(q, p, n, margin=0.1).item() == pytest.approx(2.0 + 0.1)
    assert triplet(q, q, p, margin=0.1).item() == 0.0  # easy triplet: no loss


def test_mining_picks_nearest_other_class() -> None:
    desc = np.array([[1, 0], [0.9, 0.1], [0.8, 0.6], [0, 1], [-1, 0]], np.float32)
    desc /= np.linalg.norm(desc, axis=1, keepdims=True)
    labels = np.array([0, 0, 1, 2, 3])
    q, p, n = mine_tuples(desc, labels, np.array([0, 3]), n_neg=2, rng=np.random.default_rng(0))
    assert q.tolist() == [0]  # image 3 has no positive
    assert p.tolist() == [1]
    assert n[0].tolist() == [2, 3]  # the two nearest images of other classes, one per class


def test_learned_whitening_brings_pairs_together(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(10, 16))
    labels = np.repeat(np.arange(10), 8)
    noise = rng.normal(size=(80, 16)) * np.r_[np.full(4, 3.0), np.full(12, 0.1)]  # nuisance on 4 axes
    x = (centres[labels] + noise).astype(np.float32)
    qi, pi = positive_pairs(labels, 3, rng)
    step = LearnedWhitening(*learn_whitening(x, qi, pi))
    step.save(tmp_path)
    y = LearnedWhitening().load(tmp_path).apply(x)

    def nn_acc(v: np.ndarray) -> float:
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
        s = v @ v.T
        np.fill_diagonal(s, -9)
        return float((labels[s.argmax(1)] == labels).mean())

    assert nn_acc(y) > nn_acc(x) + 0.2


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny run on Lite0: 4 classes x 5 images, 64-pixel inputs (cache in a temp folder).

    Before the one training epoch, 16 steps on fixed hard tuples record the loss before and after.
    """
    import os

    tmp = tmp_path_factory.mktemp("train")
    old = os.environ.get("LOOKALIKE_CACHE")
    os.environ["LOOKALIKE_CACHE"] = str(tmp / "cache")
    from lookalike.train import TrainConfig
    from lookalike.train.loop import Trainer, load_data

    data = _class_images(tmp / "data")
    cfg = TrainConfig(backbone="efficientnet-lite0", max_side=64, epochs=1, views=2, queries_per_epoch=12,
                      negatives=2, batch=4, lr=1e-3, val_fraction=0.0, whiten=True, threads=2)
    t = Trainer(cfg, tmp / "model")
    t.prepare(*load_data(data, None, cfg))
    q, p, n = np.arange(0, 20, 5), np.arange(1, 20, 5), np.array([[6, 11], [11, 16], [16, 1], [1, 6]])
    t.tail.eval()
    losses = [t.batch_loss(q, p, n).item()]
    t.tail.train()
    for _ in range(16):
        loss = t.batch_loss(q, p, n, grad=True)
        t.opt.zero_grad()
        loss.backward()
        t.opt.step()
    t.tail.eval()
    losses.append(t.batch_loss(q, p, n).item())
    res = t.fit()
    yield tmp, data, cfg, res, losses
    if old is None:
        os.environ.pop("LOOKALIKE_CACHE", None)
    else:
        os.environ["LOOKALIKE_CACHE"] = old


def test_training_lowers_the_loss_and_resumes(trained) -> None:
    from lookalike.train import TrainConfig, train

    tmp, data, cfg, res, (before, after) = trained
    assert after < 0.7 * before
    model = tmp / "model"
    for name in ("model.json", "checkpoint.pt", "train_log.jsonl", "training.png", "whiten.npz"):
        assert (model / name).exists(), name
    # resuming continues the saved run for one more epoch
    res2 = train(data, model, cfg=TrainConfig(epochs=2), resume=True)
    assert [r["epoch"] for r in res2["history"]] == [0, 1, 2]
    assert res2["history"][:2] == res["history"][:2]
    log = [json.loads(x) for x in (model / "train_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [0, 1, 2]


def test_model_is_used_like_a_backbone(trained) -> None:
    """The default pipeline with model= describes an image as the trained torch tail does."""
    from lookalike.features.deep import resize_max_side
    from lookalike.io import load_image as load_rgb
    from lookalike.pipelines import build
    from lookalike.train import load_model
    from lookalike.train.network import Tail, Trunk, split_backbone

    tmp, data, cfg, _, _ = trained
    spec = load_model(tmp / "model")
    assert spec.backbone == "efficientnet-lite0" and spec.p != 3.0 and spec.whitening is not None
    pipe = build("default", model=str(tmp / "model"))
    img = load_rgb(data / "class1" / "0.jpg")
    got = pipe.prepare(pipe.describe([img]))[0]
    tb, cut = split_backbone("efficientnet-lite0", cfg.train_blocks, str(spec.weights))
    tail = Tail(tb.module.net, cut, p=spec.p).eval()
    x = resize_max_side(img, cfg.max_side).astype(np.float32)
    x = torch.from_numpy(((x - 127.0) / 128.0).transpose(2, 0, 1)[None].copy())
    with torch.no_grad():
        ref = tail(Trunk(tb.module.net, cut)(x)).numpy()
    ref = spec.post_steps()[0].apply(ref)[0]
    assert float(got @ ref) > 0.999
    # a retrained model gets new weights and so a new ONNX export and feature cache key
    assert spec.weights.name != "efficientnet-lite0.pth" and spec.weights.exists()
