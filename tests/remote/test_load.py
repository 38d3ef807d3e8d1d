"""A small load test: 8 text envs in SubprocVecEnv share one OpenAIPrior (behind a cache) through VecLLMPrior.

The toy corridor keeps the distinct states (and so the requests) few enough for a CPU server and the test
budget; what is tested is the concurrency, the cache in front, and that every answer goes back to its prompt.
(TextFrozenLake here sends ~40 requests of ~1,500 tokens: over two minutes on two CPU cores.)
"""

from __future__ import annotations

import time

import numpy as np
from stable_baselines3.common.vec_env import SubprocVecEnv
from toy_text_env import CorridorTextEnv
from vllm_server import SERVED_NAME

from prior_wrappers import CachedPrior, VecLLMPrior, make_text_vec_env
from prior_wrappers.priors import OpenAIPrior

N_ENVS = 8
VECTOR_STEPS = 40  # 320 env steps


def test_eight_subprocess_envs_share_one_remote_prior(vllm_server, smollm_tokenizer, smollm_prior):
    remote = OpenAIPrior(vllm_server.base_url, model=SERVED_NAME, tokenizer=smollm_tokenizer, max_concurrency=N_ENVS)
    cached = CachedPrior(remote)
    venv = VecLLMPrior(
        make_text_vec_env(
            lambda: CorridorTextEnv(length=6, max_steps=8), N_ENVS,
            vec_env_cls=SubprocVecEnv, vec_env_kwargs={"start_method": "fork"},
        ),
        cached, k=4, encoder="hashing", history=1, seed=0,
    )  # fmt: skip
    rng = np.random.default_rng(0)
    step_ms = []
    try:
        start = time.perf_counter()
        obs = venv.reset()
        seen: dict[str, tuple[list[str], np.ndarray]] = {}  # prompt -> (slot commands, prior log-probs received)
        for _ in range(VECTOR_STEPS):
            actions = [rng.choice(np.flatnonzero(mask)) for mask in venv.action_masks()]
            t0 = time.perf_counter()
            obs, _, dones, infos = venv.step(np.array(actions))
            step_ms.append((time.perf_counter() - t0) * 1000)
            assert np.all(np.isfinite(obs["prior_logprobs"])) and obs["action_mask"].sum(1).min() >= 3
            for i, info in enumerate(infos):
                if not dones[i]:  # a finished env's info describes its terminal state, its obs the next episode
                    commands = info["prior_candidates"]
                    seen[info["prior_prompt"]] = (commands, obs["prior_logprobs"][i, : len(commands)].copy())
        wall = time.perf_counter() - start
    finally:
        venv.close()

    stats = remote.request_stats()
    busy_s = venv.builder.stats.total_ms / 1000  # time spent inside prior calls (hits and misses)
    p50_step, p95_step = np.percentile(step_ms, [50, 95])
    print(
        f"\nload: {N_ENVS} envs x {VECTOR_STEPS} vector steps in {wall:.1f} s; {stats['requests']} requests, "
        f"{stats['requests'] / busy_s:.2f} requests/s while scoring ({stats['requests'] / wall:.2f}/s overall); "
        f"request latency p50 {stats['p50_ms']:.0f} ms p95 {stats['p95_ms']:.0f} ms; vector step p50 {p50_step:.0f} ms "
        f"p95 {p95_step:.0f} ms; cache hit rate {cached.hit_rate:.2f}"
    )
    assert stats["retries"] == 0
    assert stats["requests"] == cached.cache_info()["size"]  # one request per distinct state, nothing lost or doubled

    # the answers of concurrent requests went back to the prompts that asked: what the envs received equals the
    # local engine's scores of the same states (slots are in prior order, which does not change a log-softmax)
    sample = list(seen.items())[:: max(len(seen) // 4, 1)][:4]
    local = smollm_prior.score([p for p, _ in sample], [c for _, (c, _) in sample])
    for (_, (_, received)), expected in zip(sample, local.logprobs):
        np.testing.assert_allclose(received, expected, atol=1e-3, rtol=0)
