"""The training loop: cache trunk views, choose the start (whitening, and for images without an up
whether the descriptor averages the four quarter turns) on the held-out part, then per epoch mine
hard tuples with the current model, train the tail on them, score the held-out part, checkpoint,
log and plot."""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from lookalike.eval.metrics import average_precision, precision_at, ranked_relevance
from lookalike.train.data import Labelled, read_labelled, restrict_to_split, split_classes, split_images

Progress = Callable[[str, int, int], None]  # (stage, done, total)


# Learning-rate factors of the network's layers, GeM p (one number: it may move fast) and the
# whitening (a D x D matrix, where Adam moves every entry by about the learning rate)
LR_SCALES = (1.0, 10.0, 1.0)
HOLDOUTS = ("auto", "classes", "images")
TURNS = ("auto", "on", "off")
LW_SHRINK = {"classes": (0.001, 0.1, 1.0, 10.0, 100.0), "images": (0.001,)}  # by what validation holds out


@dataclass
class TrainConfig:
    """Training settings; the defaults are the ones measured in BENCHMARKS.md (fine-tuning section)."""

    loss: str = "contrastive"  # in-batch: every pair of a batch, hard negatives (inside the margin) only
    margin: float | None = None  # None: 0.7 for contrastive, 0.1 for triplet
    epochs: int = 30  # at most; early stopping usually ends sooner
    patience: int = 5  # epochs without a better validation mAP before stopping
    backbone: str = "efficientnet-lite2"
    train_blocks: int = 0  # last MBConv blocks trained with the head conv (0: backbone frozen)
    max_side: int = 352
    augmentation: str = "dihedral"  # or "crops" (for images that have an "up")
    turns: str = "auto"  # the descriptor averaged over the image's four quarter turns ("on"), not ("off"),
    # or whichever validates better ("auto"; ties keep the single view, 4x cheaper). Needs "dihedral".
    views: int = 4  # cached views per training image (view 0 unaugmented; each view is one trunk pass)
    max_per_class: int | None = None
    per_class: int = 4  # images of a class in a batch
    classes_per_batch: int = 8
    lr: float = 1e-3  # cosine-decayed over ``epochs`` (scaled per part by ``LR_SCALES``); 1e-4 too slow
    weight_decay: float = 1e-4
    val_fraction: float = 0.2  # of every class's images, held out (holdout "images") to choose the start and epoch
    val_class_fraction: float = 0.5  # of the classes, held out (holdout "classes"): with a quarter (2 of 8
    # aerial classes) validation mAP starts at 0.99 and cannot rank anything
    holdout: str = "auto"  # "classes": whole classes held out (the model is for new classes, so selection
    # must see classes it never trained on); "images": images of every class; "auto": "images" for
    # protocol "images", else "classes"
    whiten: str = "auto"  # learnable whitening, starting from Lw ("on"), or the best of Lw and the
    # identity on validation ("auto"); "off": none
    lw_shrink: tuple[float, ...] | None = None  # Lw ridges tried (times the mean variance); None: see
    # LW_SHRINK (for the same classes the strongest Lw start validated best but ended lower after training)
    protocol: str = "classes"  # which half of a split.json to train on: train_classes or train_images
    seed: int = 0
    threads: int | None = None


@dataclass
class Prepared:
    """Labelled images with their cached trunk maps: ``maps[view][i]``."""

    data: Labelled
    label_ids: np.ndarray
    maps: list[list[np.ndarray]]


def load_data(data: str | Path, split: str | Path | None, cfg: TrainConfig) -> tuple[Labelled, Labelled]:
    """(training images, validation images): the split's training part, capped; ``val_fraction``
    of every class's images held out for validation."""
    items = read_labelled(data)
    if split:
        items = restrict_to_split(items, data, split, cfg.protocol)
    if len(items.classes()) < 2:
        raise ValueError("training needs at least 2 classes")
    items = items.cap(cfg.max_per_class, cfg.seed)
    if holdout_of(cfg, len(items.classes())) == "classes":
        _, held = split_classes(items.classes(), cfg.val_class_fraction, cfg.seed)
        va_set = set(held)
        tr = [i for i, c in enumerate(items.labels) if c not in va_set]
        va = [i for i, c in enumerate(items.labels) if c in va_set]
    else:
        tr, va = split_images(items.labels, cfg.val_fraction, cfg.seed)
    pick = lambda rows: Labelled([items.paths[i] for i in rows], [items.labels[i] for i in rows])  # noqa: E731
    return pick(tr), pick(va)


def holdout_of(cfg: TrainConfig, n_classes: int) -> str:
    """What validation holds out: whole classes (at least 2, leaving at least 2 to train on) or
    images of every class; ``auto`` holds out classes unless the protocol is ``images``."""
    if cfg.holdout not in HOLDOUTS:
        raise ValueError(f"holdout must be one of {', '.join(HOLDOUTS)}, not {cfg.holdout!r}")
    want = cfg.holdout if cfg.holdout != "auto" else ("images" if cfg.protocol == "images" else "classes")
    return "classes" if want == "classes" and n_classes >= 4 and cfg.val_class_fraction > 0 else "images"


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

        if cfg.loss not in ("contrastive", "triplet"):
            raise ValueError(f"loss must be contrastive or triplet, not {cfg.loss!r}")
        if cfg.whiten not in ("auto", "on", "off"):
            raise ValueError(f"whiten must be auto, on or off, not {cfg.whiten!r}")
        if cfg.turns not in TURNS:
            raise ValueError(f"turns must be auto, on or off, not {cfg.turns!r}")
        if cfg.turns == "on" and cfg.augmentation != "dihedral":
            raise ValueError("turns needs the dihedral augmentation (its views 0-3 are the quarter turns)")
        self.cfg, self.out = cfg, Path(out)
        self.progress = progress or (lambda stage, done, total: None)
        torch.manual_seed(cfg.seed)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.tb, cut = split_backbone(cfg.backbone, cfg.train_blocks)
        self.onnx = trunk_onnx(self.tb, cut)
        self.tail = Tail(self.tb.module.net, cut, whiten=cfg.whiten != "off")
        named = dict(self.tail.named_parameters())
        white = [p for n, p in named.items() if n.startswith("white.")]
        params = [{"params": [p for n, p in named.items() if n != "gem.p" and not n.startswith("white.")]},
                  {"params": [named["gem.p"]], "weight_decay": 0.0},
                  {"params": white, "weight_decay": 0.0}]
        self.opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.rng = np.random.default_rng(cfg.seed)
        self.history: list[dict[str, Any]] = []
        self.best: tuple[float, int] = (-1.0, -1)
        self.best_state: dict | None = None
        self.epoch = 0
        self.holdout = "images"  # set by prepare(): what the validation set holds out
        self.start_scores: dict[str, float] = {}  # validation mAP of each whitening start tried
        self.turns = cfg.turns == "on"  # chosen by init_whitening when "auto"
        self.start_shrink: float | None = None  # the Lw ridge of the chosen start (None: identity)
        self.whitening_fitted_on = "training part"  # or both parts (``refit_start``)
        self._frozen: dict | None = None  # pooled descriptors by (part, view) while the start is chosen

    # -- data ----------------------------------------------------------------------------------
    def prepare(self, train: Labelled, val: Labelled) -> None:
        from lookalike.train.views import TrunkCache

        cache = TrunkCache(self.onnx, self.cfg.max_side, self.cfg.seed, self.tb.mean, self.tb.std,
                           threads=self.cfg.threads, augmentation=self.cfg.augmentation)
        views = max(self.cfg.views, 4) if self.turn_choices() != (False,) else self.cfg.views
        val_views = 4 if self.turn_choices() != (False,) else 1
        n_train, n_val = len(train) * views, len(val) * val_views
        train_maps = cache.maps(train.paths, views,
                                lambda d, t: self.progress("caching trunk views", d, n_train + n_val))
        self.train = self._prepared(train, train_maps)
        self.holdout = "classes" if len(val) and not set(val.labels) & set(train.labels) else "images"
        self.val = self._prepared(val, cache.maps(
            val.paths, val_views, lambda d, t: self.progress("caching trunk views", n_train + d, n_train + n_val))) \
            if len(val) else None

    def turn_choices(self) -> tuple[bool, ...]:
        """Whether the descriptor averages quarter turns: the candidates, single view first."""
        if self.cfg.turns == "auto":
            return (False, True) if self.cfg.augmentation == "dihedral" else (False,)
        return (self.cfg.turns == "on",)

    @staticmethod
    def _prepared(data: Labelled, maps: list[list[np.ndarray]]) -> Prepared:
        names = {c: k for k, c in enumerate(data.classes())}
        return Prepared(data, np.array([names[c] for c in data.labels], np.int64), maps)

    # -- epochs --------------------------------------------------------------------------------
    def descriptors(self, prep: Prepared, turns: bool, whiten: bool = True):
        """The model's descriptors (N, D) of cached images: view 0, or with ``turns`` the L2 mean of
        views 0-3 (the quarter turns), as ``DeepExtractor(turns=True)`` describes an image; then
        the whitening (unless ``whiten`` is false)."""
        import torch

        with torch.no_grad():
            d = torch.nn.functional.normalize(sum(self.pooled(prep, v) for v in (range(4) if turns else (0,))), dim=1)
            return self.tail.white(d) if whiten and self.tail.white is not None else d

    def pooled(self, prep: Prepared, view: int):
        """GeM descriptors of one cached view, kept while the start is chosen (nothing but the
        whitening changes then, and every candidate is fitted and scored on the same views)."""
        if self._frozen is None:
            return describe(self.tail.pooled, prep.maps[view])
        key = (id(prep), view)
        if key not in self._frozen:
            self._frozen[key] = describe(self.tail.pooled, prep.maps[view])
        return self._frozen[key]

    def validate(self, turns: bool | None = None, prep: Prepared | None = None) -> tuple[float | None, float | None]:
        """(mAP, P@10) of the held-out images (or of ``prep``), each querying the others (None
        without any), described with ``turns`` (default: the chosen ones)."""
        prep = prep or self.val
        if prep is None:
            return None, None
        self.tail.eval()
        d = self.descriptors(prep, self.turns if turns is None else turns).numpy()
        return leave_one_out_map(d, prep.label_ids)

    def cross_fitted(self) -> bool:
        """Whether starts are judged both ways round: with whole classes held out, the two halves
        of the classes take turns to fit the whitening and to score it, and the mean decides (one
        half of a few classes is too noisy a judge on its own)."""
        return self.holdout == "classes" and self.val is not None

    def init_whitening(self) -> str | None:
        """Choose the start on validation: the whitening, and with ``turns`` auto whether the
        descriptor averages the four quarter turns (each whitening start with each choice).

        The whitening starts from Lw (``fit_whitening``) at the ridge of each of ``lw_shrink`` (a
        stronger ridge keeps it closer to a rotation, which carries over to unseen classes
        better); with ``auto`` the identity is a candidate too. Earlier candidates win ties: the
        single view before the turns (4x cheaper), the identity before Lw. Without a validation
        set: the first choice of turns and the first ridge."""
        white = self.tail.white
        judged = self.val is not None
        turn_choices = self.turn_choices() if judged else self.turn_choices()[:1]
        if white is None:
            starts: list[tuple[str, float | None]] = [("", None)]
        else:
            starts = [("identity", None)] if self.cfg.whiten == "auto" and judged else []
            starts += [(f"lw {x:g}", x) for x in self.cfg.lw_shrink or LW_SHRINK[self.holdout]]
            if not judged:
                starts = starts[:1]
        candidates = [(t, name, x) for t in turn_choices for name, x in starts]
        self.start_scores = {}
        self._frozen = {}
        try:
            best = self._best_start(candidates, len(turn_choices) > 1)
            self.turns, self.start_shrink = best[1], best[3]
            self._set_start([self.train], self.turns, self.start_shrink)
        finally:
            self._frozen = None
        return best[2] if white is not None else None

    def _best_start(self, candidates: list[tuple[bool, str, float | None]], name_turns: bool
                    ) -> tuple[float, bool, str, float | None]:
        """(score, turns, label, shrink) of the best candidate, each score added to ``start_scores``."""
        best: tuple[float, bool, str, float | None] | None = None
        for turns, name, shrink in candidates:
            score = self._judge(turns, shrink) if len(candidates) > 1 else 0.0
            label = " + ".join(filter(None, [name, "turns" if turns and name_turns else ""]))
            if len(candidates) > 1:
                self.start_scores[label or "single view"] = round(score, 4)
            if best is None or score > best[0]:
                best = (score, turns, label, shrink)
        assert best is not None
        return best

    def _judge(self, turns: bool, shrink: float | None) -> float:
        """Validation mAP of a start (``shrink`` None: the identity), fitted on the training part;
        cross-fitted, the mean with the other way round."""
        folds = [(self.train, self.val)] + ([(self.val, self.train)] if self.cross_fitted() else [])
        scores = []
        for fit_on, score_on in folds:
            self._set_start([fit_on], turns, shrink)
            scores.append(self.validate(turns, score_on)[0] or 0.0)
        return float(np.mean(scores))

    def _set_start(self, parts: list[Prepared], turns: bool, shrink: float | None) -> None:
        """Set the whitening to the identity (``shrink`` None) or to Lw fitted on ``parts``."""
        white = self.tail.white
        if white is None:
            return
        if shrink is None:
            white.set(np.zeros(white.mean.shape, np.float32), np.eye(len(white.proj), dtype=np.float32))
        else:
            white.set(*self.fit_whitening(parts, turns, shrink))

    def fit_whitening(self, parts: list[Prepared], turns: bool, shrink: float) -> tuple[np.ndarray, np.ndarray]:
        """Lw from same-class pairs of the images of ``parts``: every cached view its own sample, or
        with ``turns`` one turn-averaged descriptor an image; scaled like the identity, so that
        the learning rate means the same."""
        from lookalike.train.whiten import learn_whitening, positive_pairs

        self.tail.eval()
        ds, names = [], []
        for prep in parts:
            if turns:
                ds.append(self.descriptors(prep, True, whiten=False).numpy())
                names += prep.data.labels
            else:
                for view in range(max(1, min(self.cfg.views, len(prep.maps)))):
                    ds.append(self.pooled(prep, view).numpy())
                    names += prep.data.labels
        labels = np.unique(np.array(names), return_inverse=True)[1]
        qi, pi = positive_pairs(labels, 10, np.random.default_rng(self.cfg.seed))
        mean, proj = learn_whitening(np.concatenate(ds), qi, pi, eps=shrink)
        return mean, proj * (np.sqrt(len(proj)) / np.linalg.norm(proj))

    def lr_at(self, epoch: int) -> float:
        """Cosine decay from ``lr`` over the configured epochs (a function of the epoch, so a
        resumed run continues the same schedule)."""
        return self.cfg.lr * 0.5 * (1.0 + np.cos(np.pi * epoch / max(self.cfg.epochs, 1)))

    def run_epoch(self) -> float:
        """One pass over the training images in P×K batches, each image in one of its cached views."""
        import torch

        from lookalike.train.losses import BATCH_LOSSES, DEFAULT_MARGIN
        from lookalike.train.mining import pk_batches

        cfg, tr = self.cfg, self.train
        lr = self.lr_at(self.epoch)
        for group, scale in zip(self.opt.param_groups, LR_SCALES):
            group["lr"] = lr * scale
        batches = pk_batches(tr.label_ids, cfg.per_class, cfg.classes_per_batch, self.rng)
        margin = cfg.margin if cfg.margin is not None else DEFAULT_MARGIN[cfg.loss]
        self.tail.train()
        losses = []
        for s, rows in enumerate(batches):
            views = self.rng.integers(min(cfg.views, len(tr.maps)), size=len(rows))
            maps = common_crop([tr.maps[v][i] for i, v in zip(rows, views)], self.rng)
            d = describe(self.tail, maps, grad=True)
            loss = BATCH_LOSSES[cfg.loss](d, torch.from_numpy(tr.label_ids[rows]), margin)
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            with torch.no_grad():
                self.tail.gem.p.clamp_(1.0, 8.0)
            losses.append(float(loss.detach()))
            self.progress(f"epoch {self.epoch + 1}/{cfg.epochs}", s + 1, len(batches))
        return float(np.mean(losses)) if losses else 0.0

    def stopped_early(self) -> bool:
        """No better validation mAP for ``patience`` epochs."""
        return self.val is not None and self.epoch - self.best[1] >= self.cfg.patience

    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train until ``cfg.epochs`` or early stopping (continuing a checkpoint when ``resume``);
        write the model of the best validation epoch."""
        self.out.mkdir(parents=True, exist_ok=True)
        if resume and self._ckpt_path().exists():
            self._load_checkpoint()
        elif not self.history:
            t = time.perf_counter()
            start = self.init_whitening()
            mAP, p10 = self.validate()
            self._record({"epoch": 0, "loss": None, "val_mAP": _r(mAP), "val_P@10": _r(p10), "whitening_start": start,
                          "turns": self.turns,
                          "start_scores": self.start_scores or None,
                          "p": round(float(self.tail.gem.p.detach()), 4),
                          "seconds": round(time.perf_counter() - t, 1)})
            self.best = (mAP if mAP is not None else -1.0, 0)
            self.best_state = self._tail_state()
        while self.epoch < self.cfg.epochs and not self.stopped_early():
            t = time.perf_counter()
            loss = self.run_epoch()
            self.epoch += 1
            mAP, p10 = self.validate()
            self._record({"epoch": self.epoch, "loss": round(loss, 5), "val_mAP": _r(mAP), "val_P@10": _r(p10),
                          "p": round(float(self.tail.gem.p.detach()), 4),
                          "seconds": round(time.perf_counter() - t, 1)})
            if mAP is None or mAP > self.best[0]:
                self.best = (mAP if mAP is not None else -1.0, self.epoch)
                self.best_state = self._tail_state()
            self._save_checkpoint()
        self.tail.load_state_dict(self.best_state)
        self.refit_start()
        return self._write_model()

    def refit_start(self) -> None:
        """When the untrained start won and its choice was cross-fitted, fit its whitening again on
        every labelled image (training and held-out classes): nothing is left to choose, and twice
        the classes give a steadier Lw."""
        if self.best[1] == 0 and self.cross_fitted() and self.start_shrink is not None and self.tail.white is not None:
            self._set_start([self.train, self.val], self.turns, self.start_shrink)
            self.whitening_fitted_on = "training and held-out parts"

    # -- output --------------------------------------------------------------------------------
    def _tail_state(self) -> dict:
        return {k: v.detach().clone() for k, v in self.tail.state_dict().items()}

    def _record(self, row: dict[str, Any]) -> None:
        self.history.append(row)
        with open(self.out / "train_log.jsonl", "w") as f:
            for r in self.history:
                f.write(json.dumps(r) + "\n")
        plot_history(self.history, self.out / "training.png", self.holdout)

    def _ckpt_path(self) -> Path:
        return self.out / "checkpoint.pt"

    def _save_checkpoint(self) -> None:
        import torch

        state = {"epoch": self.epoch, "tail": self._tail_state(), "opt": self.opt.state_dict(),
                 "history": self.history, "best": self.best, "best_tail": self.best_state,
                 "rng": self.rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                 "config": asdict(self.cfg), "turns": self.turns, "start_shrink": self.start_shrink}
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
        self.turns = bool(state.get("turns", False))
        self.start_shrink = state.get("start_shrink")
        if "torch_rng" in state:
            torch.set_rng_state(state["torch_rng"])

    def _write_model(self) -> dict[str, Any]:
        from lookalike.train.model import save_model
        from lookalike.train.network import full_state_dict

        from lookalike.train.whiten import LearnedWhitening

        w = self.tail.white
        white = None if w is None else LearnedWhitening(w.mean.detach().numpy().copy(), w.proj.detach().numpy().copy())
        info = {"config": asdict(self.cfg), "best_epoch": self.best[1], "val_mAP": _r(self.best[0]),
                "epochs_run": self.epoch, "stopped_early": self.stopped_early() and self.epoch < self.cfg.epochs,
                "whitening_start": self.history[0].get("whitening_start"), "turns": self.turns,
                "whitening_fitted_on": self.whitening_fitted_on if w is not None else None,
                "holdout": self.holdout, "train_images": len(self.train.data),
                "train_classes": len(self.train.data.classes()), "val_images": len(self.val.data) if self.val else 0,
                "val_classes": len(self.val.data.classes()) if self.val else 0}
        save_model(self.out, self.cfg.backbone, full_state_dict(self.tb), float(self.tail.gem.p.detach()),
                   self.cfg.max_side, white, info, turns=self.turns)
        return {"model": str(self.out), **info, "history": self.history}


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def plot_history(history: list[dict[str, Any]], path: Path, holdout: str = "images") -> None:
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
    b.set(xlabel="epoch", ylabel="mAP", title=f"validation mAP (held-out {holdout})")
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
