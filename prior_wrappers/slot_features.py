"""What the slots' features are: the encoder a wrapper's ``encoder=`` option names (:func:`resolve_encoder`), the
text it embeds per candidate (:func:`feature_text`) and the check on what it returns (:func:`encode_checked`), for
:class:`~prior_wrappers.slots.SlotBuilder`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from prior_wrappers.encoders import CachedEncoder, HashingEncoder, SentenceEncoder, TextEncoder, encoder_name
from prior_wrappers.priors.base import ActionPrior
from prior_wrappers.prompts import one_line

EncoderSpec = TextEncoder | Literal["minilm", "prior", "hashing"] | None


def _hashing_dim(name: str) -> int:
    """``"hashing"`` -> 64, ``"hashing:256"`` -> 256 (the name :class:`HashingEncoder` gives itself)."""
    _, _, dim = name.partition(":")
    if not dim:
        return 64
    if not dim.isdigit() or int(dim) < 1:
        raise ValueError(f"encoder {name!r}: write 'hashing:DIM' with DIM a positive integer, e.g. 'hashing:256'")
    return int(dim)


def resolve_encoder(encoder: EncoderSpec, prior: ActionPrior) -> tuple[CachedEncoder | None, bool, int | None]:
    """Returns ``(encoder, use_prior_hidden_states, feature_dim)``."""
    if encoder is None:
        return None, False, None
    if encoder == "prior":
        model = getattr(prior, "model", None)
        if model is None:
            raise ValueError("encoder='prior' needs a prior with a transformers model (HFPrior); use 'minilm' instead")
        return None, True, int(model.config.hidden_size)
    if encoder == "minilm":
        encoder = SentenceEncoder.default()
    elif isinstance(encoder, str) and encoder.split(":")[0] == "hashing":
        encoder = HashingEncoder(_hashing_dim(encoder))
    if not isinstance(encoder, TextEncoder):
        raise TypeError(
            f"encoder must be 'minilm', 'prior', 'hashing' (or 'hashing:DIM'), None or a TextEncoder, got {encoder!r}"
        )
    if not isinstance(encoder, CachedEncoder):
        encoder = CachedEncoder(encoder)
    return encoder, False, int(encoder.dim)


CandidateText = Literal["joint", "action"]


def feature_text(observation: str, command: str, candidate_text: CandidateText = "joint") -> str:
    """What the encoder sees for one candidate: the reference's joint "Observation: s Action: a", or the action
    alone (the observation is encoded once into ``observation_features``, and far fewer distinct texts need
    encoding because commands repeat across states)."""
    if candidate_text == "action":
        return f"Action: {one_line(command)}"
    return f"Observation: {one_line(observation)} Action: {one_line(command)}"


def encode_checked(encoder: TextEncoder, texts: Sequence[str]) -> np.ndarray:
    """``encoder.encode(texts)``, refusing NaN/inf features (naming the first text that gave them).

    :raises ValueError: a half-precision encoder overflowed, or another gave non-finite vectors.
    """
    vectors = encoder.encode(texts)
    if not np.isfinite(vectors).all():
        bad = texts[int(np.flatnonzero(~np.isfinite(vectors).all(axis=1))[0])]
        raise ValueError(
            f"the encoder {encoder_name(encoder)} returned NaN/inf features for the text {bad[:200]!r}; "
            "load it in float32 (half precision overflows) or use another encoder"
        )
    return vectors
