"""The training loop: cache trunk views, then per epoch mine hard tuples with the current model,
train the tail on them, score the held-out classes, checkpoint, log and plot."""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from lookalike.eval.metrics import average_precision, precision_at, ranked_relevance
from lookalike.train.data import Labelled, read_labelled, split_classes, train_classes_of

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass
class TrainConfig:
    """Training settings; the defaults are the ones measured in BENCHMARKS.md (fine-tuning section)."""

    loss: str = "contrastive"
    margin: float | None = None  # None: 0.7 for contrastive, 0.1 for triplet
    epochs: int = 4
    backbone: str = "efficientnet-lite2"
    train_blocks: int = 1  # last MBConv blocks trained (plus the head conv and GeM p)
    max_side: int = 352
    views: int = 1  # cached views per training image (view 0 unaugmented; >1 adds trunk passes)
    max_per_class: int | None = 40
    queries_per_epoch: int = 200
    negatives: int = 5
    batch: int = 8  # tuples per optimiser step
    lr: float = 3e-4  # 1e-5 barely moves the tail in ~100 steps; more training hurt unseen classes
    weight_decay: float = 1e-4
    val_fraction: float = 0.15
    whiten: bool = False
    seed: int = 0
    threads: int | None = None


@dataclass
class Prepared:
    """Labelled images with their cached trunk maps: ``maps[view][i]``."""

    data: Labelled
    label_ids: np.ndarray
    maps: list[list[np.ndarray]]


def load_data(data: str | Path, split: str | Path | None, cfg: TrainConfig) -> tuple[Labelled, Labelled]:
    """(training images, validation images): the split's train classes, capped, class-disjoint."""
    items = read_labelled(data)
    if split:
        items = items.subset(train_classes_of(split))
    if len(items.classes()) < 3:
        raise ValueError("training needs at least 3 classes")
    items = items.cap(cfg.max_per_class, cfg.seed)
    tr, va = split_classes(items.classes(), cfg.val_fraction, cfg.seed)
    return items.subset(set(tr)), items.subset(set(va))


def describe(tail, maps: Sequence[np.ndarray], grad: bool = False, chunk: int = 32):
    """Descriptors (N, D) of trunk maps; maps of equal shape run as one batch."""
    import torch

    groups: dict[tuple[int, ...], list[int]] = {}
    for i, m in enumerate(maps):
        groups.setdefault(m.shape, []).append(i)
    parts, order = [], []
    ctx = torch.enable_grad() if grad else torch.no_grad()
    with ctx:
        for idx in groups.values():
            for s in range(0, len(idx), chunk):
                sub = idx[s:s + chunk]
                x = torch.from_numpy(np.stack([maps[i] for i in sub]).astype(np.float32))
                parts.append(tail(x))
                order.extend(sub)
        out = torch.cat(parts)
        inv = torch.empty(len(order), dtype=torch.long)
        inv[torch.tensor(order)] = torch.arange(len(order))
        return out[inv]


def common_crop(maps: Sequence[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """Maps cut to the batch's smallest height and width at random offsets, so they batch as one."""
    h = min(m.shape[1] for m in maps)
    w = min(m.shape[2] for m in maps)
    out = []
    for m in maps:
        y = int(rng.integers(m.shape[1] - h + 1))
        x = int(rng.integers(m.shape[2] - w + 1))
        out.append(m[:, y:y + h, x:x + w])
    return out


def leave_one_out_map(desc: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(mAP, P@10) with every image querying all the others (same class = relevant)."""
    sims = desc @ desc.T
    ids = [str(i) for i in range(len(desc))]
    aps, p10 = [], []
    for q in range(len(desc)):
        rel = {str(i) for i in np.flatnonzero(labels == labels[q]) if i != q}
        if not rel:
            continue
        r = ranked_relevance(sims[q], ids, rel, {str(q)})
        aps.append(average_precision(r, len(rel)))
        p10.append(precision_at(r, 10))
    return (float(np.mean(aps)) if aps else 0.0, float(np.mean(p10)) if p10 else 0.0)


class Trainer:
    """Owns the network, the cached views, the optimiser and the run folder ``out``."""

    def __init__(self, cfg: TrainConfig, out: str | Path, progress: Progress | None = None) -> None:
        import torch

        from lookalike.train.network import Tail, split_backbone, trunk_onnx

        self.cfg, self.out = cfg, Path(out)
        self.progress = progress or (lambda stage, done, total: None)
        torch.manual_seed(cfg.seed)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.tb, cut = split_backbone(cfg.backbone, cfg.train_blocks)
        self.onnx = trunk_onnx(self.tb, cut)
        self.tail = Tail(self.tb.module.net, cut)
        params = [{"params": [p for n, p in self.tail.named_parameters() if n != "gem.p"]},
                  {"params": [self.tail.gem.p], "lr": cfg.lr * 10, "weight_decay": 0.0}]
        self.opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.rng = np.random.default_rng(cfg.seed)
        self.history: list[dict[str, Any]] = []
        self.best: tuple[float, int] = (-1.0, -1)
        self.best_state: dict | None = None
        self.epoch = 0

    # -- data ----------------------------------------------------------------------------------
    def prepare(self, train: Labelled, val: Labelled) -> None:
        from lookalike.train.views import TrunkCache

        cache = TrunkCache(self.onnx, self.cfg.max_side, self.cfg.seed, self.tb.mean, self.tb.std,
                           threads=self.cfg.threads)
        step = lambda d, t: self.progress("caching trunk views", d, t)  # noqa: E731
        self.train = self._prepared(train, cache.maps(train.paths, self.cfg.views, step))
        self.val = self._prepared(val, cache.maps(val.paths, 1, step)) if len(val) else None

    @staticmethod
    def _prepared(data: Labelled, maps: list[list[np.ndarray]]) -> Prepared:
        names = {c: k for k, c in enumerate(data.classes())}
        return Prepared(data, np.array([names[c] for c in data.labels], np.int64), maps)

    # -- epochs --------------------------------------------------------------------------------
    def validate(self) -> tuple[float | None, float | None]:
        if self.val is None:
            return None, None
        self.tail.eval()
        d = describe(self.tail, self.val.maps[0]).numpy()
        return leave_one_out_map(d, self.val.label_ids)

    def run_epoch(self) -> float:
        import torch

        from lookalike.train.mining import mine_tuples

        cfg, tr = self.cfg, self.train
        self.tail.eval()
        desc = describe(self.tail, tr.maps[0]).numpy()
        n_q = min(cfg.queries_per_epoch, len(desc))
        queries = self.rng.choice(len(desc), n_q, replace=False)
        qi, pi, ni = mine_tuples(desc, tr.label_ids, queries, cfg.negatives, self.rng)
        self.tail.train()
        losses = []
        n_steps = (len(qi) + cfg.batch - 1) // cfg.batch
        for s in range(n_steps):
            sl = slice(s * cfg.batch, (s + 1) * cfg.batch)
            loss = self.batch_loss(qi[sl], pi[sl], ni[sl], grad=True)
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            with torch.no_grad():
                self.tail.gem.p.clamp_(1.0, 8.0)
            losses.append(float(loss.detach()))
            self.progress(f"epoch {self.epoch + 1}/{cfg.epochs}", s + 1, n_steps)
        return float(np.mean(losses)) if losses else 0.0

    def batch_loss(self, q: np.ndarray, p: np.ndarray, n: np.ndarray, grad: bool = False):
        """The loss of tuples (query, positive, negatives (B, K)); query and positive use random views."""
        import torch

        from lookalike.train.losses import DEFAULT_MARGIN, LOSSES

        cfg, tr = self.cfg, self.train
        views = cfg.views if grad else 1
        keys = ([(int(i), int(self.rng.integers(views))) for i in q]
                + [(int(i), int(self.rng.integers(views))) for i in p]
                + [(int(i), 0) for i in n.ravel()])
        uniq = list(dict.fromkeys(keys))
        pos_of = {k: j for j, k in enumerate(uniq)}
        maps = [tr.maps[v][i] for i, v in uniq]
        d = describe(self.tail, common_crop(maps, self.rng) if grad else maps, grad=grad)
        rows = torch.tensor([pos_of[k] for k in keys])
        b = len(q)
        dn = d[rows[2 * b:]].view(b, n.shape[1], -1)
        margin = cfg.margin if cfg.margin is not None else DEFAULT_MARGIN[cfg.loss]
        return LOSSES[cfg.loss](d[rows[:b]], d[rows[b:2 * b]], dn, margin)

    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train for ``cfg.epochs`` (continuing a checkpoint when ``resume``); write the model."""
        self.out.mkdir(parents=True, exist_ok=True)
        if resume and self._ckpt_path().exists():
            self._load_checkpoint()
        elif not self.history:
            t = time.perf_counter()
            mAP, p10 = self.validate()
            self._record({"epoch": 0, "loss": None, "val_mAP": mAP, "val_P@10": p10,
                          "p": float(self.tail.gem.p.detach()), "seconds": round(time.perf_counter() - t, 1)})
            self.best = (mAP if mAP is not None else -1.0, 0)
            self.best_state = self._tail_state()
        while self.epoch < self.cfg.epochs:
            t = time.perf_counter()
            loss = self.run_epoch()
            self.epoch += 1
            mAP, p10 = self.validate()
            self._record({"epoch": self.epoch, "loss": round(loss, 5), "val_mAP": mAP, "val_P@10": p10,
                          "p": round(float(self.tail.gem.p.detach()), 4), "seconds": round(time.perf_counter() - t, 1)})
            if mAP is None or mAP > self.best[0]:
                self.best = (mAP if mAP is not None else -1.0, self.epoch)
                self.best_state = self._tail_state()
            self._save_checkpoint()
        self.tail.load_state_dict(self.best_state)
        return self._write_model()

    # -- output --------------------------------------------------------------------------------
    def _tail_state(self) -> dict:
        return {k: v.detach().clone() for k, v in self.tail.state_dict().items()}

    def _record(self, row: dict[str, Any]) -> None:
        self.history.append(row)
        with open(self.out / "train_log.jsonl", "w") as f:
            for r in self.history:
                f.write(json.dumps(r) + "\n")
        plot_history(self.history, self.out / "training.png")

    def _ckpt_path(self) -> Path:
        return self.out / "checkpoint.pt"

    def _save_checkpoint(self) -> None:
        import torch

        state = {"epoch": self.epoch, "tail": self._tail_state(), "opt": self.opt.state_dict(),
                 "history": self.history, "best": self.best, "best_tail": self.best_state,
                 "rng": self.rng.bit_generator.state, "config": asdict(self.cfg)}
        tmp = self._ckpt_path().with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self._ckpt_path())

    def _load_checkpoint(self) -> None:
        import torch

        state = torch.load(self._ckpt_path(), weights_only=False)
        self.tail.load_state_dict(state["tail"])
        self.opt.load_state_dict(state["opt"])
        self.epoch, self.history = int(state["epoch"]), list(state["history"])
        self.best, self.best_state = tuple(state["best"]), state["best_tail"]
        self.rng.bit_generator.state = state["rng"]

    def _write_model(self) -> dict[str, Any]:
        from lookalike.train.model import save_model
        from lookalike.train.network import full_state_dict

        white = None
        if self.cfg.whiten:
            from lookalike.train.whiten import LearnedWhitening, learn_whitening, positive_pairs

            self.tail.eval()
            d = describe(self.tail, self.train.maps[0]).numpy()
            qi, pi = positive_pairs(self.train.label_ids, 10, np.random.default_rng(self.cfg.seed))
            white = LearnedWhitening(*learn_whitening(d, qi, pi))
        info = {"config": asdict(self.cfg), "best_epoch": self.best[1], "val_mAP": self.best[0],
                "train_images": len(self.train.data), "train_classes": len(self.train.data.classes()),
                "val_classes": len(self.val.data.classes()) if self.val else 0}
        save_model(self.out, self.cfg.backbone, full_state_dict(self.tb), float(self.tail.gem.p.detach()),
                   self.cfg.max_side, white, info)
        return {"model": str(self.out), **info, "history": self.history}


def plot_history(history: list[dict[str, Any]], path: Path) -> None:
    """Loss and validation mAP per epoch, side by side (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    pts = [(r["epoch"], r["loss"]) for r in history if r.get("loss") is not None]
    if pts:
        a.plot(*zip(*pts), marker="o")
    a.set(xlabel="epoch", ylabel="training loss", title="loss")
    pts = [(r["epoch"], r["val_mAP"]) for r in history if r.get("val_mAP") is not None]
    if pts:
        b.plot(*zip(*pts), marker="o", color="tab:green")
    b.set(xlabel="epoch", ylabel="mAP", title="validation mAP (held-out classes)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def train(data: str | Path, out: str | Path, split: str | Path | None = None, cfg: TrainConfig | None = None,
          resume: bool = False, progress: Progress | None = None) -> dict[str, Any]:
    """Fine-tune on labelled images and write the model folder ``out``; returns a summary."""
    cfg = cfg or TrainConfig()
    if resume and (Path(out) / "checkpoint.pt").exists():
        import torch

        saved = torch.load(Path(out) / "checkpoint.pt", weights_only=False)["config"]
        saved["epochs"] = cfg.epochs  # --epochs may extend a finished run
        cfg = TrainConfig(**saved)
    t0 = time.perf_counter()
    trainer = Trainer(cfg, out, progress)
    tr, va = load_data(data, split, cfg)
    trainer.prepare(tr, va)
    summary = trainer.fit(resume=resume)
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    return summary
