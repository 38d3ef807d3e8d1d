"""Save/load round trips: small zips (no LLM, no encoder inside) and identical predictions."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from candidate_env import CandidateChainEnv

from prior_wrappers.sb3 import CQLPrior, DQNPrior, PPOPrior

CASES = [
    (DQNPrior, dict(learning_starts=50, alpha=0.2, target="soft", prior_top_k=3)),
    (CQLPrior, dict(learning_starts=50, cql_weight=2.0, include_data_action=False)),  # a non-default survives
    (CQLPrior, dict(learning_starts=50, conservative="prior_weighted", prior_mass=0.9)),
    (CQLPrior, dict(learning_starts=50, prior_top_k=1, behavior_threshold=0.3)),  # with its imitation network
    (PPOPrior, dict(n_steps=64, batch_size=32, n_epochs=1, alpha=0.3)),
]


@pytest.mark.filterwarnings("ignore:include_data_action=False")
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


class SignedEnv(gym.Wrapper):
    """Publishes a ``prior_signature`` like LLMPriorWrapper does."""

    def __init__(self, env: CandidateChainEnv, encoder: str = "hashing:16") -> None:
        super().__init__(env)
        self.prior_signature = {"k": env.k, "feature_dim": env.feature_dim, "encoder": encoder, "normalization": "token"}


ONLINE = [(DQNPrior, dict(learning_starts=50)), (PPOPrior, dict(n_steps=64, batch_size=32, n_epochs=1))]


@pytest.mark.parametrize("algo,kwargs", ONLINE, ids=[c[0].__name__ for c in ONLINE])
def test_load_and_set_env_refuse_other_wrapper_settings(tmp_path, algo, kwargs):
    model = algo("CandidatePolicy", SignedEnv(CandidateChainEnv(k=6, feature_dim=16)), seed=0, device="cpu", **kwargs)
    signature = {"k": 6, "feature_dim": 16, "encoder": "hashing:16", "normalization": "token"}
    assert model.prior_signature == signature
    path = tmp_path / "model.zip"
    model.save(path)
    assert algo.load(path).prior_signature == signature  # saved in the zip

    # the same settings load and train; an env without a signature is unknown and only its layout is checked
    algo.load(path, env=SignedEnv(CandidateChainEnv(k=6, feature_dim=16)), device="cpu").learn(64)
    algo.load(path, env=CandidateChainEnv(k=6, feature_dim=16), device="cpu")
    # another encoder of the same size: the spaces match, the features do not
    other_encoder = SignedEnv(CandidateChainEnv(k=6, feature_dim=16), encoder="minilm:all-MiniLM-L6-v2")
    with pytest.raises(ValueError, match=r"encoder: 'hashing:16' vs 'minilm:all-MiniLM-L6-v2'.*same wrapper settings"):
        algo.load(path, env=other_encoder, device="cpu")
    with open(path, "rb") as file:  # a file object is read twice: the check puts it back where it was
        with pytest.raises(ValueError, match="encoder"):
            algo.load(file, env=other_encoder, device="cpu")
        file.seek(0)
        algo.load(file, env=SignedEnv(CandidateChainEnv(k=6, feature_dim=16)), device="cpu")
    with pytest.raises(ValueError, match=r"k: 6 vs 8.*same wrapper settings"):
        algo.load(path, env=CandidateChainEnv(k=8, feature_dim=16), device="cpu")
    with pytest.raises(ValueError, match=r"feature_dim: 16 vs 32"):
        algo.load(path, env=SignedEnv(CandidateChainEnv(k=6, feature_dim=32)), device="cpu")
    with pytest.raises(ValueError, match=r"feature_dim: 16 vs None"):
        algo.load(path, env=CandidateChainEnv(k=6, feature_dim=None), device="cpu")

    with pytest.raises(ValueError, match="encoder"):
        model.set_env(other_encoder)
    with pytest.raises(ValueError, match=r"k: 6 vs 5"):
        model.set_env(CandidateChainEnv(k=5, feature_dim=16))
    model.set_env(SignedEnv(CandidateChainEnv(k=6, feature_dim=16)))


def test_signature_of_the_real_wrappers_is_stored_and_checked(tmp_path):
    from toy_text_env import CorridorTextEnv

    from prior_wrappers.priors import UniformPrior
    from prior_wrappers.vec_wrappers import VecLLMPrior, make_text_vec_env
    from prior_wrappers.wrappers import LLMPriorWrapper

    def vec(**kwargs):
        return VecLLMPrior(make_text_vec_env(lambda: CorridorTextEnv(), n_envs=2, seed=0), UniformPrior(), k=4, **kwargs)

    model = DQNPrior("CandidatePolicy", vec(encoder="hashing"), learning_starts=10, seed=0, device="cpu")
    single = LLMPriorWrapper(CorridorTextEnv(), UniformPrior(), k=4, encoder="hashing")
    assert model.prior_signature is not None and model.prior_signature == single.prior_signature
    path = tmp_path / "model.zip"
    model.save(path)
    DQNPrior.load(path, env=single, device="cpu")
    with pytest.raises(ValueError, match="normalization: 'token' vs 'sum'"):
        DQNPrior.load(path, env=vec(encoder="hashing", normalization="sum"), device="cpu")
