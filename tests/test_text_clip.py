"""ClipEncoder on a tiny randomly initialised CLIP checkpoint written to a temp folder (no download)."""
from __future__ import annotations

import json

import numpy as np
import pytest

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    d = tmp_path_factory.mktemp("clip")
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in letters:
        vocab[ch] = len(vocab)
        vocab[ch + "</w>"] = len(vocab)
    (d / "vocab.json").write_text(json.dumps(vocab))
    (d / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(d / "vocab.json"), str(d / "merges.txt"))
    proc = CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32},
                                                            crop_size={"height": 32, "width": 32}), tokenizer=tok)
    cfg = CLIPConfig(text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                      num_attention_heads=2, max_position_embeddings=32, bos_token_id=0,
                                      eos_token_id=1, pad_token_id=1),
                     vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                        num_attention_heads=2, image_size=32, patch_size=8),
                     projection_dim=16)
    import torch

    torch.manual_seed(0)
    CLIPModel(cfg).save_pretrained(d)
    proc.save_pretrained(d)
    return d


def test_clip_text_and_image_search(tiny_clip, tmp_path):
    from lookalike.text.clip import ClipEncoder
    from lookalike.text.store import TextIndex

    enc = ClipEncoder(tiny_clip)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (40, 48, 3), dtype=np.uint8) for _ in range(3)]
    V = enc.encode_images(images)
    assert V.shape == (3, 16) and np.allclose(np.linalg.norm(V, axis=1), 1, atol=1e-5)
    T = enc.encode_text(["a cat", "dog"])
    assert T.shape == (2, 16) and np.allclose(enc.encode_text(["a cat"]), T[:1], atol=1e-5)
    ti = TextIndex(tmp_path / "t.sqlite", encoder=enc)
    ti.set_vectors("clip", [7, 8, 9], V)
    # image -> image: each image finds itself first
    for i in range(3):
        ids, S = ti.score(["-"], methods=("clip",), query_vectors={"clip": enc.encode_images([images[i]])})
        assert ids[np.argmax(S[0])] == [7, 8, 9][i]
    # text -> image follows the text-image cosine
    ids, S = ti.score(["a cat"], methods=("clip",), query_vectors={"clip": T[:1]})
    assert ids[np.argmax(S[0])] == [7, 8, 9][int(np.argmax(V @ T[0]))]


def test_missing_folder_is_refused(tmp_path):
    from lookalike.text.clip import ClipEncoder

    with pytest.raises(FileNotFoundError):
        ClipEncoder(tmp_path)
