"""Fine-tuning: data readers, losses, mining, whitening, and a tiny end-to-end training run."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lookalike.train.data import read_labelled, split_classes, split_images
from lookalike.train.losses import batch_contrastive, batch_triplet, contrastive, triplet
from lookalike.train.mining import pk_batches
from lookalike.train.views import dihedral, make_view
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


def test_batch_losses_known_values() -> None:
    d = torch.tensor([[1.0, 0.0], [0.6, -0.8], [0.0, 1.0], [1.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 1])
    # squared distances: positives (0,1) 0.8 and (2,3) 2; negatives (0,2) 2, (0,3) 0, (1,2) 3.6,
    # (1,3) 0.8: only (0,3) lies inside the margin 0.7
    got = batch_contrastive(d, labels, margin=0.7).item()
    assert got == pytest.approx(0.5 * (0.8 + 2.0) / 2 + 0.5 * 0.49)
    # batch-hard triplet, per anchor: farthest positive - nearest negative + margin
    hard = batch_triplet(d, labels, margin=0.1).item()
    assert hard == pytest.approx(((0.8 - 0.0) + (0.8 - 0.8) + (2.0 - 2.0) + (2.0 - 0.0) + 4 * 0.1) / 4)


def test_pk_batches_hold_positives_and_negatives() -> None:
    labels = np.repeat(np.arange(5), [9, 4, 4, 6, 1])
    batches = pk_batches(labels, per_class=4, classes_per_batch=3, rng=np.random.default_rng(0))
    seen = np.concatenate(batches)
    assert set(seen.tolist()) == set(range(23))  # every image of a class with a partner; not the lone one
    for b in batches:
        counts = np.bincount(labels[b])
        assert (counts[counts > 0] >= 2).all() and (counts > 0).sum() >= 2


def test_split_images_holds_out_part_of_every_class() -> None:
    labels = ["a"] * 10 + ["b"] * 5 + ["c"] * 2
    tr, va = split_images(labels, 0.2)
    assert sorted(tr + va) == list(range(17)) and not set(tr) & set(va)
    held = [labels[i] for i in va]
    assert held.count("a") == 2 and held.count("b") == 2 and held.count("c") == 0


def test_dihedral_views_cover_the_group_and_start_with_the_quarter_turns(tmp_path: Path) -> None:
    img = np.arange(2 * 3 * 3).reshape(2, 3, 3).astype(np.uint8)
    outs = {dihedral(img, k).tobytes() for k in range(8)}
    assert len(outs) == 8  # eight distinct transforms of an asymmetric image
    rgb = np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    for v in range(4):  # views 0-3: the turns a turn-averaged descriptor (DeepExtractor turns=True) uses
        assert np.array_equal(make_view(tmp_path / "a.png", v, 48, 0), np.rot90(rgb, v))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny class-folder set (4 classes x 6 images) and a cache folder for its trunk maps (Lite0)."""
    import os

    tmp = tmp_path_factory.mktemp("train")
    old = os.environ.get("LOOKALIKE_CACHE")
    os.environ["LOOKALIKE_CACHE"] = str(tmp / "cache")
    yield tmp, _class_images(tmp / "data", per_class=6)
    if old is None:
        os.environ.pop("LOOKALIKE_CACHE", None)
    else:
        os.environ["LOOKALIKE_CACHE"] = old


def _tiny_cfg(**kw):
    from lookalike.train import TrainConfig

    base = dict(backbone="efficientnet-lite0", max_side=64, epochs=3, views=2, per_class=3, classes_per_batch=4,
                lr=1e-3, val_fraction=0.0, holdout="images", whiten="on", threads=2, train_blocks=1,
                lw_shrink=(1e-3,), turns="off")
    return TrainConfig(**{**base, **kw})


def _trainer(tmp, data, out, cfg):
    from lookalike.train.loop import Trainer, load_data

    t = Trainer(cfg, tmp / out)
    t.prepare(*load_data(data, None, cfg))
    return t


@pytest.fixture(scope="module")
def trained(tiny):
    """Three epochs without validation (so the last epoch is kept) and without whitening; the
    in-batch loss of all training images (view 0) before and after."""
    from lookalike.train.losses import batch_contrastive
    from lookalike.train.loop import describe

    tmp, data = tiny
    cfg = _tiny_cfg(whiten="off")
    t = _trainer(tmp, data, "model", cfg)
    labels = torch.from_numpy(t.train.label_ids)

    def loss() -> float:
        t.tail.eval()
        with torch.no_grad():
            return float(batch_contrastive(describe(t.tail, t.train.maps[0]), labels, 0.7))

    before = loss()
    res = t.fit()
    yield tmp, data, cfg, res, (before, loss())


def test_training_lowers_the_loss_and_changes_the_descriptor(trained) -> None:
    from lookalike.features.deep import DeepExtractor
    from lookalike.io import load_image as load_rgb
    from lookalike.pipelines import build

    tmp, data, cfg, res, (before, after) = trained
    assert after < 0.7 * before
    assert res["best_epoch"] == 3
    for name in ("model.json", "checkpoint.pt", "train_log.jsonl", "training.png"):
        assert (tmp / "model" / name).exists(), name
    img = [load_rgb(data / "class1" / "0.jpg")]
    off = DeepExtractor(backbone="efficientnet-lite0", aggregator="gem", max_side=cfg.max_side)
    tuned = build("gem", model=str(tmp / "model"))
    a = off.describe(img)[0]
    b = tuned.extractor.describe(img)[0]  # before the whitening: same dimension as off-the-shelf
    assert float(a @ b) < 0.99


def test_model_selection_keeps_the_best_epoch_and_stops_early(tiny, monkeypatch) -> None:
    """With validation scores 0.5 (start), 0.6, 0.9, 0.7, 0.65, 0.6: epoch 2 is written, and
    patience 3 stops the run after epoch 5."""
    from lookalike.train import load_model
    from lookalike.train.loop import Trainer

    tmp, data = tiny
    scores = iter([0.5, 0.6, 0.9, 0.7, 0.65, 0.6, 0.55, 0.5])
    monkeypatch.setattr(Trainer, "validate", lambda self, turns=None, prep=None: (next(scores), None))
    t = _trainer(tmp, data, "select", _tiny_cfg(epochs=8, patience=3, val_fraction=0.34, whiten="on"))
    states = {}
    run_epoch = t.run_epoch

    def recording_epoch() -> float:
        loss = run_epoch()
        states[t.epoch + 1] = {k: v.clone() for k, v in t.tail.state_dict().items()}
        return loss

    t.run_epoch = recording_epoch
    res = t.fit()
    assert res["best_epoch"] == 2 and res["epochs_run"] == 5 and res["stopped_early"]
    assert [r["val_mAP"] for r in res["history"]] == [0.5, 0.6, 0.9, 0.7, 0.65, 0.6]
    saved = torch.load(load_model(tmp / "select").weights)
    cut = len(t.tb.module.net._blocks) - 1
    for k, v in states[2].items():
        if k.startswith("blocks.0."):
            name = k.replace("blocks.0.", f"_blocks.{cut}.")
            assert torch.equal(saved[name], v), k
    assert not all(torch.equal(states[2][k], states[5][k]) for k in states[2])
    assert res["whitening_start"] == "lw 0.001"
    _used_like_a_backbone(tmp / "select", data, states[2])


def test_class_holdout_keeps_the_start_when_training_hurts_unseen_classes(tiny, monkeypatch) -> None:
    """For new classes (the default), validation holds out whole classes, so selection judges on
    classes never trained on; when every epoch scores below the start, the start is written."""
    from lookalike.train import load_model
    from lookalike.train.loop import Trainer, holdout_of, load_data
    from lookalike.train.whiten import LearnedWhitening

    tmp, data = tiny
    cfg = _tiny_cfg(epochs=3, patience=5, holdout="auto", val_class_fraction=0.25, whiten="on", train_blocks=0)
    tr, va = load_data(data, None, cfg)
    assert len(va.classes()) == 2 and len(tr.classes()) == 2 and not set(tr.labels) & set(va.labels)
    assert len(va) == 12  # every image of the held-out classes
    assert holdout_of(_tiny_cfg(holdout="auto", protocol="images"), 4) == "images"
    assert holdout_of(_tiny_cfg(holdout="classes"), 3) == "images"  # too few classes
    t = Trainer(cfg, tmp / "keep")
    t.prepare(tr, va)
    scores = iter([0.7, 0.6, 0.5, 0.4])
    monkeypatch.setattr(Trainer, "validate", lambda self, turns=None, prep=None: (next(scores), None))
    start = {}
    init = t.init_whitening

    def recording_init():
        got = init()
        start.update({k: v.clone() for k, v in t.tail.state_dict().items()})
        return got

    t.init_whitening = recording_init
    res = t.fit()
    assert res["best_epoch"] == 0 and res["epochs_run"] == 3 and res["holdout"] == "classes"
    assert res["val_classes"] == 2 and res["train_classes"] == 2
    spec = load_model(tmp / "keep")
    assert spec.p == pytest.approx(float(start["gem.p"]))
    w = LearnedWhitening().load(tmp / "keep")
    # the start won, so its Lw is fitted again on both halves of the classes for the written model
    assert res["whitening_fitted_on"] == "training and held-out parts"
    mean, proj = t.fit_whitening([t.train, t.val], False, 1e-3)
    assert np.allclose(w.proj, proj, atol=1e-5) and np.allclose(w.mean, mean, atol=1e-6)
    assert not np.allclose(w.proj, start["white.proj"].numpy(), atol=1e-3)
    trained = torch.load(tmp / "keep" / "checkpoint.pt", weights_only=False)["tail"]
    assert not torch.equal(trained["white.proj"], start["white.proj"])  # training did move it


def test_whitening_start_is_chosen_on_validation(tiny, monkeypatch) -> None:
    """``auto`` tries the identity and Lw at each ridge, and keeps the one validating best."""
    from lookalike.train.loop import Trainer, load_data

    tmp, data = tiny
    cfg = _tiny_cfg(holdout="auto", whiten="auto", train_blocks=0, lw_shrink=(0.001, 0.1, 1.0, 10.0))
    t = Trainer(cfg, tmp / "start")
    t.prepare(*load_data(data, None, cfg))
    seen, scores = [], iter([0.5, 0.4, 0.7, 0.6, 0.3])
    parts = []
    monkeypatch.setattr(Trainer, "validate", lambda self, turns=None, prep=None: (
        seen.append(self.tail.white.proj.detach().clone()), parts.append(prep), next(scores))[2:] + (None,))
    # whole classes held out: each start is fitted on one half of the classes and scored on the
    # other, both ways round, and the mean decides (lw 0.1: 0.9 and 0.2 lose to lw 1: 0.6 and 0.6)
    scores = iter([0.5, 0.5, 0.4, 0.4, 0.9, 0.2, 0.6, 0.6, 0.3, 0.3])
    assert t.cross_fitted() and t.init_whitening() == "lw 1"
    assert parts[:2] == [t.val, t.train]
    assert torch.equal(seen[0], torch.eye(len(seen[0])))  # the identity first
    assert torch.equal(t.tail.white.proj, seen[6]) and not torch.equal(seen[6], seen[7])  # fitted on either half
    assert t.start_scores == {"identity": 0.5, "lw 0.001": 0.4, "lw 0.1": 0.55, "lw 1": 0.6, "lw 10": 0.3}
    scores = iter([0.9, 0.9, 0.4, 0.4, 0.7, 0.7, 0.6, 0.6, 0.3, 0.3])
    assert t.init_whitening() == "identity" and torch.equal(t.tail.white.proj, seen[0])
    n = len(seen)
    t.val = None  # nothing to judge by: the first ridge's Lw, no validation
    assert t.init_whitening() == "lw 0.001" and len(seen) == n


def test_turns_are_chosen_on_validation_and_kept_by_the_model(tiny, monkeypatch) -> None:
    """With ``turns`` auto, every whitening start is judged with the single view and with the mean
    of the quarter turns; the best pair is kept, and the written model describes that way."""
    from lookalike.pipelines import build
    from lookalike.train import load_model
    from lookalike.train.loop import Trainer, load_data

    tmp, data = tiny
    cfg = _tiny_cfg(holdout="auto", whiten="auto", train_blocks=0, turns="auto", epochs=0)
    t = Trainer(cfg, tmp / "turns")
    t.prepare(*load_data(data, None, cfg))
    assert len(t.val.maps) == 4 and len(t.train.maps) == 4  # the turns of every image are cached
    table = {(False, "identity"): 0.5, (False, "lw"): 0.6, (True, "identity"): 0.55, (True, "lw"): 0.7}
    asked = []

    def validate(self, turns=None, prep=None):
        turns = self.turns if turns is None else turns
        ident = torch.equal(self.tail.white.proj, torch.eye(len(self.tail.white.proj)))
        asked.append((turns, "identity" if ident else "lw"))
        return table[asked[-1]], None

    with monkeypatch.context() as m:
        m.setattr(Trainer, "validate", validate)
        assert t.init_whitening() == "lw 0.001 + turns" and t.turns
        assert sorted(set(asked)) == sorted(table)
        table[(True, "lw")] = 0.6  # a tie with the single view: the cheaper single view is kept
        assert t.init_whitening() == "lw 0.001" and not t.turns
        table[(True, "lw")] = 0.7
        res = t.fit()  # chooses the start again, then writes it (no epochs)
    assert res["turns"] and res["history"][0]["turns"] and "lw 0.001 + turns" in res["history"][0]["start_scores"]
    spec = load_model(tmp / "turns")
    assert spec.turns and spec.extractor_kwargs()["turns"]
    assert build("gem", model=str(tmp / "turns")).extractor.turns
    _used_like_a_backbone(tmp / "turns", data)
    assert Trainer(_tiny_cfg(turns="auto", augmentation="crops"), tmp / "crops").turn_choices() == (False,)
    with pytest.raises(ValueError, match="dihedral"):
        Trainer(_tiny_cfg(turns="on", augmentation="crops"), tmp / "crops")


def test_resume_continues_where_it_stopped(tiny) -> None:
    """A run killed during its third epoch, resumed, matches three epochs in one go."""
    from lookalike.train import train

    tmp, data = tiny
    straight = _trainer(tmp, data, "straight", _tiny_cfg(whiten="off")).fit()
    t = _trainer(tmp, data, "resumed", _tiny_cfg(whiten="off"))
    run_epoch = t.run_epoch

    def killed_in_epoch_3() -> float:
        if t.epoch == 2:
            raise KeyboardInterrupt
        return run_epoch()

    t.run_epoch = killed_in_epoch_3
    with pytest.raises(KeyboardInterrupt):
        t.fit()
    res = train(data, tmp / "resumed", cfg=_tiny_cfg(whiten="off"), resume=True)
    assert [r["epoch"] for r in res["history"]] == [0, 1, 2, 3]
    assert [r["loss"] for r in res["history"][1:]] == pytest.approx(
        [r["loss"] for r in straight["history"][1:]], rel=1e-4)
    log = [json.loads(x) for x in (tmp / "resumed" / "train_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [0, 1, 2, 3]


def test_model_is_used_like_a_backbone(trained) -> None:
    tmp, data, _, _, _ = trained
    _used_like_a_backbone(tmp / "model", data)


def _used_like_a_backbone(model: Path, data: Path, tail_state: dict | None = None) -> None:
    """The default pipeline with model= describes an image as the trained torch tail does
    (with its whitening when the model has one)."""
    from lookalike.features.deep import resize_max_side
    from lookalike.io import load_image as load_rgb
    from lookalike.pipelines import build
    from lookalike.train import load_model
    from lookalike.train.network import Tail, Trunk, split_backbone

    spec = load_model(model)
    cfg = spec.info["training"]["config"]
    assert spec.backbone == "efficientnet-lite0" and (spec.p != 3.0 or spec.info["training"]["best_epoch"] == 0)
    assert (spec.whitening is not None) == (cfg["whiten"] != "off")
    pipe = build("default", model=str(model))
    img = load_rgb(data / "class1" / "0.jpg")
    got = pipe.prepare(pipe.describe([img]))[0]
    tb, cut = split_backbone("efficientnet-lite0", cfg["train_blocks"], str(spec.weights))
    tail = Tail(tb.module.net, cut, p=spec.p, whiten=spec.whitening is not None).eval()
    if tail_state is not None:
        tail.load_state_dict(tail_state)
    elif spec.whitening is not None:
        from lookalike.train.whiten import LearnedWhitening

        w = LearnedWhitening().load(spec.whitening.parent)
        tail.white.set(w.mean, w.proj)
    x = resize_max_side(img, cfg["max_side"]).astype(np.float32)
    turns = range(4) if spec.turns else range(1)  # with turns: the mean of the four quarter turns
    xs = [torch.from_numpy(((np.rot90(x, k) - 127.0) / 128.0).transpose(2, 0, 1)[None].copy()) for k in turns]
    with torch.no_grad():
        pooled = sum(tail.pooled(Trunk(tb.module.net, cut)(t)) for t in xs)
        pooled = torch.nn.functional.normalize(pooled, dim=1)
        ref = (tail.white(pooled) if tail.white is not None else pooled).numpy()[0]
    assert float(got @ ref) > 0.999
    # a retrained model gets new weights and so a new ONNX export and feature cache key
    assert spec.weights.name != "efficientnet-lite0.pth" and spec.weights.exists()


def test_a_turns_model_serves_index_search_and_the_server(tiny) -> None:
    """`index --model` stores the model's descriptor (turns included); `search` and the server use it:
    an image turned a quarter finds its original first."""
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    import lookalike
    from lookalike.cli import app
    from lookalike.io import load_image as load_rgb
    from lookalike.pipelines import build
    from lookalike.server import create_app

    tmp, data = tiny
    _trainer(tmp, data, "served", _tiny_cfg(epochs=0, turns="on", whiten="on")).fit()
    idx = tmp / "served-index"
    r = CliRunner().invoke(app, ["index", str(data), "--index", str(idx), "-p", "gem", "--model",
                                 str(tmp / "served"), "--quiet"])
    assert r.exit_code == 0, r.output
    img = data / "class2" / "3.jpg"
    pipe = build("gem", model=str(tmp / "served"))
    assert pipe.extractor.turns
    want = pipe.describe([load_rgb(img)])[0]  # the catalog keeps descriptors before post-processing
    with lookalike.open(idx) as index:
        hit = index.search(img, k=1).hits[0]
        assert hit.path.endswith("class2/3.jpg")
        np.testing.assert_allclose(index.catalog.vectors([hit.id])[hit.id], want, atol=1e-4)
    turned = tmp / "turned.png"
    Image.fromarray(np.ascontiguousarray(np.rot90(load_rgb(img)))).save(turned)
    r = CliRunner().invoke(app, ["search", str(turned), "--index", str(idx), "-k", "1", "--format", "paths"])
    assert r.exit_code == 0 and r.stdout.strip().endswith("class2/3.jpg"), r.output
    with TestClient(create_app(idx, reload_every=0)) as c:
        got = c.post("/search?k=1", files={"image": ("q.png", turned.read_bytes(), "image/png")}).json()
    assert got["results"][0]["path"].endswith("class2/3.jpg") and got["results"][0]["score"] > 0.99
