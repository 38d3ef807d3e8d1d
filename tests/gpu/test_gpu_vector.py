"""One prior call per vector step with 64 envs: VecLLMPrior (SB3) and GymVectorLLMPrior (Gymnasium) over 64 toy
corridors score every sub-env's state in one engine call per step, through autoresets, in one forward on the
device."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from gpu_support import Target, build
from toy_text_env import CorridorTextEnv

from prior_wrappers import GymVectorLLMPrior, VecLLMPrior, make_text_gym_vector_env, make_text_vec_env
from prior_wrappers.priors import HFPrior

N_ENVS = 64


class CountingPrior(HFPrior):
    """The engine, recording how many prompts each score call had and how many forwards it ran."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[int, int]] = []

    def score(self, prompts, candidates, **kwargs):
        before = self.forward_passes
        out = super().score(prompts, candidates, **kwargs)
        self.calls.append((len(prompts), self.forward_passes - before))
        return out


@pytest.mark.parametrize("api", ["sb3", "gymnasium"])
def test_one_prior_call_per_vector_step_with_64_envs(target: Target, tokenizer: Any, api: str):
    dtype = torch.bfloat16 if target.cuda else torch.float32
    prior = CountingPrior(build(target, tokenizer, dtype), tokenizer, token_budget=32_768)

    def corridor() -> CorridorTextEnv:
        return CorridorTextEnv(length=3, max_steps=5)

    if api == "sb3":
        envs: Any = VecLLMPrior(make_text_vec_env(corridor, N_ENVS, seed=0), prior, k=4, encoder="hashing", history=1)
        reset = envs.reset
    else:
        envs = GymVectorLLMPrior(make_text_gym_vector_env(corridor, N_ENVS), prior, k=4, encoder="hashing", history=1)

        def reset():
            return envs.reset(seed=0)[0]

    rng = np.random.default_rng(0)
    try:
        obs = reset()
        assert prior.calls == [(N_ENVS, 1)]
        ended = 0
        for t in range(8):
            # a random valid slot per sub-env, so that episodes end at different steps (an episode's last state,
            # not scored, has none: the next step resets that sub-env whatever the action)
            actions = np.array([rng.choice(np.flatnonzero(m)) if m.any() else 0 for m in obs["action_mask"]])
            if api == "sb3":
                obs, _, dones, _ = envs.step(actions)
            else:
                obs, _, terminated, truncated, _ = envs.step(actions)
                dones = terminated | truncated
            ended += int(np.sum(dones))
            assert len(prior.calls) == t + 2  # exactly one call for the whole vector step
            prompts, forwards = prior.calls[-1]
            # every sub-env's current state (SB3 resets in the same step; Gymnasium's next-step autoreset scores the
            # new episode's first state a step later), and the last states of truncated episodes
            assert (N_ENVS if api == "sb3" else 1) <= prompts <= 2 * N_ENVS
            assert forwards == 1  # all of them in one forward
            assert np.isfinite(obs["prior_logprobs"][obs["action_mask"].astype(bool)]).all()
        assert ended >= N_ENVS  # through autoresets (an episode lasts at most 5 steps)
    finally:
        envs.close()
