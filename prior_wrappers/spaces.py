"""The observation that the prior wrappers produce, declared once for wrappers, policies and algorithms.

A wrapped text env has action space ``Discrete(K)`` (K candidate slots) and a ``Dict`` observation:

==========================  ==============  ===========================================================
key                         shape           content
==========================  ==============  ===========================================================
``prior_logprobs``          (K,)            log p_LLM(a_k|s), normalised over the valid slots;
                                            ``LOGPROB_MIN`` in empty slots
``action_mask``             (K,)            1 for a slot that holds an admissible command, else 0
``candidate_features``      (K, D)          encoding of "Observation: s Action: a_k" (0 in empty slots)
``observation_features``    (D,)            encoding of the observation alone
==========================  ==============  ===========================================================

The two feature keys are present when the wrapper has a text encoder. Valid slots come first, sorted by
prior (slot 0 is the prior's favourite), so even a policy that ignores features sees the prior's ranking.

``LOGPROB_MIN`` is also the floor of valid slots: a command whose log-probability is lower (a long command
scored with ``normalization="sum"``, a command that no sampled proposal named) reads ``LOGPROB_MIN`` but stays
valid. "Valid" and "supported by the prior" are kept apart: ``action_mask`` alone says what may be chosen, and
the algorithms in :mod:`prior_wrappers.sb3` treat every valid slot as a candidate unless an explicit rule
(``prior_top_k``, ``prior_min_logprob``) says otherwise (see :mod:`prior_wrappers.sb3.support`).
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

PRIOR_LOGPROBS = "prior_logprobs"
ACTION_MASK = "action_mask"
CANDIDATE_FEATURES = "candidate_features"
OBSERVATION_FEATURES = "observation_features"

# Log-probabilities are clipped here so that observations stay finite for neural networks; e^-30 is
# indistinguishable from zero probability in every sum over slots (softmax, posterior, KL), but a valid slot at
# the floor is still a valid command: it can win a max or an argmax of Q.
LOGPROB_MIN = -30.0


def prior_observation_space(k: int, feature_dim: int | None, feature_bound: float = np.inf) -> spaces.Dict:
    """The ``Dict`` space for ``k`` candidate slots and (optionally) ``feature_dim``-dimensional features
    bounded by ``feature_bound`` (1 for unit-norm encoders)."""
    if k < 1:
        raise ValueError(f"the number of candidate slots k must be >= 1, got {k}")
    entries: dict[str, spaces.Space] = {
        PRIOR_LOGPROBS: spaces.Box(LOGPROB_MIN, 0.0, shape=(k,), dtype=np.float32),
        ACTION_MASK: spaces.MultiBinary(k),
    }
    if feature_dim:
        b = feature_bound
        entries[CANDIDATE_FEATURES] = spaces.Box(-b, b, shape=(k, feature_dim), dtype=np.float32)
        entries[OBSERVATION_FEATURES] = spaces.Box(-b, b, shape=(feature_dim,), dtype=np.float32)
    return spaces.Dict(entries)
