"""Text → image search, offline.

Per image, text comes from file/folder names, EXIF/XMP/IPTC metadata, sidecar and captions-file
captions, user tags, automatic ImageNet tags and OCR (``sources``, ``classes``, ``ocr``). A
``TextIndex`` (``store``) keeps it in SQLite with FTS5 and scores a query by keyword (bm25), by
meaning (``encoder``: USE multilingual for every language, MiniLM too for English), zero-shot
through the classifier's probabilities, and through image vectors in the sentence space: learned
``bridges`` or a local CLIP checkpoint (``clip``); ``fusion`` combines them and ``scale`` puts the
result on a readable 0–1 scale. Chinese text is matched by its words (``words``: jieba).
``plugin`` wires this into the index, the ``text`` pipeline and ``lookalike eval``.
"""
from lookalike.text.sources import TextEntry  # noqa: F401
