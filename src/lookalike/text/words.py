"""Words of Chinese (and other CJK) text for keyword search.

Stored text is segmented with ``jieba`` in search mode (a long word also yields its shorter words:
"小女孩" → 小女, 女孩, 小女孩), and the words are kept in an FTS5 table. A query is matched
against the words the index holds: every substring of a CJK run that is an indexed word is a
query word (``query_words``), so searching needs no segmenter and no dictionary load.
"""
from __future__ import annotations

import re
import threading
from typing import Callable, Iterable

CJK_RUN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]+")
MAX_WORD = 6  # longest query substring looked up
# frequent function words and measure phrases that match almost every caption
STOPWORDS_ZH = frozenset("""的 了 在 是 和 与 及 着 有 上 下 里 中 把 被 从 向 对 为 也 都 而 或 这 那 这个 那个
一 一个 一只 一位 一名 一群 一些 一条 一辆 一张 两个 两只 个 只 位 名 正在 他 她 它 他们 她们 它们 我 你""".split())

_lock = threading.Lock()
_ready = False


def has_cjk(text: str) -> bool:
    return bool(CJK_RUN.search(text))


def _jieba():
    global _ready
    import jieba

    with _lock:
        if not _ready:
            jieba.setLogLevel(60)
            jieba.initialize()
            _ready = True
    return jieba


def segment(text: str) -> str:
    """The CJK words of ``text`` (jieba, search mode), space-separated; "" if it has no CJK."""
    if not has_cjk(text):
        return ""
    jb = _jieba()
    words: list[str] = []
    for run in CJK_RUN.findall(text):
        words += [w for w in jb.lcut_for_search(run) if w.strip()]
    return " ".join(words)


def candidates(query: str) -> list[str]:
    """Every substring (1..MAX_WORD characters) of the query's CJK runs, longest first, no stopwords."""
    out: dict[str, None] = {}
    for run in CJK_RUN.findall(query):
        for n in range(min(MAX_WORD, len(run)), 0, -1):
            for i in range(len(run) - n + 1):
                w = run[i:i + n]
                if w not in STOPWORDS_ZH:
                    out[w] = None
    return list(out)


def query_words(query: str, known: Callable[[Iterable[str]], set[str]]) -> list[str]:
    """The query's CJK words that the index knows (``known(candidates) -> subset``). A single
    character counts only where no longer known word covers it ("狗" alone, not the 狗 of 小狗)."""
    cands = candidates(query)
    if not cands:
        return []
    have = known(cands)
    long = [w for w in cands if len(w) > 1 and w in have]
    covered = set("".join(long))
    return long + [w for w in cands if len(w) == 1 and w in have and w not in covered]
