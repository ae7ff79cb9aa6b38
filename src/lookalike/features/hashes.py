"""Cheap whole-image fingerprints for finding copies: a digest of the decoded pixels, and the
perceptual hash (``imagehash.phash``) of the image in its eight dihedral orientations.

The pixel digest tells apart files with other bytes but the same picture (metadata edits, lossless
re-encodes). The eight pHashes let a copy that was only turned or mirrored (and resized or
re-compressed) be found by comparing its upright hash with the other image's eight.
"""
from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image

# PIL's transposes in a fixed order; ORIENTATIONS[k] is what turns an image into variant k
ORIENTATIONS = ("identity", "mirror", "rot90", "rot180", "rot270", "flip", "transpose", "transverse")
_TRANSPOSE = (None, Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180,
              Image.Transpose.ROTATE_270, Image.Transpose.FLIP_TOP_BOTTOM, Image.Transpose.TRANSPOSE,
              Image.Transpose.TRANSVERSE)
_TURNS_BACK = {"rot90": "rot270", "rot270": "rot90"}  # every other orientation undoes itself


def inverse_orientation(name: str) -> str:
    """The orientation that undoes ``name`` (one of ``ORIENTATIONS``)."""
    return _TURNS_BACK.get(name, name)


HASH_SIDE = 64  # pHash looks at a 32x32 grey image: resizing to this first keeps it cheap


def pixel_digest(rgb: np.ndarray) -> str:
    """SHA-1 of the decoded RGB pixels and their shape."""
    a = np.ascontiguousarray(rgb, np.uint8)
    h = hashlib.sha1(repr(a.shape).encode())
    h.update(a.tobytes())
    return h.hexdigest()


def dihedral_phashes(rgb: np.ndarray) -> np.ndarray:
    """(8,) uint64: the 64-bit pHash of the image in each orientation of ``ORIENTATIONS``."""
    import imagehash  # on first use: searches never hash

    im = Image.fromarray(np.ascontiguousarray(rgb, np.uint8)).convert("L")
    im = im.resize((HASH_SIDE, HASH_SIDE), Image.Resampling.BOX)
    out = np.zeros(8, np.uint64)
    for k, t in enumerate(_TRANSPOSE):
        bits = imagehash.phash(im if t is None else im.transpose(t)).hash.ravel()
        out[k] = np.uint64(int("".join("1" if b else "0" for b in bits), 2))
    return out


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bit differences between uint64 hashes (broadcast)."""
    x = np.bitwise_xor(np.asarray(a, np.uint64), np.asarray(b, np.uint64))
    return np.unpackbits(x.view(np.uint8).reshape(*x.shape, 8), axis=-1).sum(-1)


def to_bytes(hashes: np.ndarray) -> bytes:
    return np.ascontiguousarray(hashes, np.uint64).tobytes()


def from_bytes(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, np.uint64).copy()
