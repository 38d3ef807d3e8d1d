"""Save/load round trips: small zips (no LLM, no encoder inside) and identical predictions."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from candidate_env import CandidateChainEnv

from prior_wrappers.sb3 import CQLPrior, DQNPrior, PPOPrior

CASES = [
    (DQNPrior, dict(learning_starts=50, alpha=0.2, target="soft", prior_top_k=3)),
    (CQLPrior, dict(learning_starts=50, cql_weight=2.0, include_data_action=True)),
    (PPOPrior, dict(n_steps=64, batch_size=32, n_epochs=1, alpha=0.3)),
]


@pytest.mark.parametrize("algo,kwargs", CASES, ids=[c[0].__name__ for c in CASES])
def test_save_load_round_trip(tmp_path, algo, kwargs):
    env = CandidateChainEnv(k=6, feature_dim=16)
    model = algo("CandidatePolicy", env, seed=0, device="cpu", **kwargs).learn(128)
    path = tmp_path / "model.zip"
    model.save(path)
    assert path.stat().st_size < 1_000_000
    loaded = algo.load(path, env=env, device="cpu")
    for name, value in kwargs.items():
        if name not in ("learning_starts", "n_steps", "batch_size", "n_epochs"):
            assert getattr(loaded, name) == value, name

    observations = [env.reset(seed=s)[0] for s in range(16)]
    obs = {k: np.stack([o[k] for o in observations]) for k in observations[0]}
    expected, _ = model.predict(obs, deterministic=True)
    actual, _ = loaded.predict(obs, deterministic=True)
    np.testing.assert_array_equal(actual, expected)
    th.manual_seed(3)
    expected, _ = model.predict(obs, deterministic=False)
    th.manual_seed(3)
    actual, _ = loaded.predict(obs, deterministic=False)
    np.testing.assert_array_equal(actual, expected)
    loaded.learn(64)  # and it keeps training
