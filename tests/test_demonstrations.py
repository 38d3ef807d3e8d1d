"""Demonstrations: k-shot text (seeded, within a token budget), leakage check, learning from successes (off by
default), the wrappers' prompts, OfflineDataset text, and the shared-prefix cache paying for them once."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv
from toy_text_env import CorridorTextEnv

from prior_wrappers import Demonstration, Demonstrations, FunctionPrior, HFPrior, LLMPriorWrapper, VecLLMPrior
from prior_wrappers.demonstrations import token_counter
from prior_wrappers.prompts import PromptTemplate, TextState
from prior_wrappers.sb3 import CommandPolicy, OfflineDataset, collect_dataset
from prior_wrappers.vec_wrappers import TextInInfo


def east_prior() -> FunctionPrior:
    return FunctionPrior(lambda p, c: [3.0 if x == "go east" else 0.0 for x in c], name="east")


def episode(i: int, n_steps: int = 3, obs_words: int = 30) -> Demonstration:
    filler = " ".join(f"word{j}" for j in range(obs_words))
    steps = tuple((f"Room {i}.{t}: {filler}", f"do thing {i}.{t}") for t in range(n_steps))
    return Demonstration(f"task {i}", steps, f"You won game {i}.", source=f"game-{i}.z8", episode_return=1.0)


POOL = [episode(i) for i in range(6)]


def test_render_uses_the_prompt_format_and_cuts_long_observations():
    demo = Demonstration("make\nsoup", (("You see a pot.\nIt is empty.", "take  pot"), ("x " * 300, "cook")), "Done.")
    text = demo.render(max_observation_chars=50)
    lines = text.split("\n")
    assert lines[:3] == ["Task: make soup", "Observation: You see a pot. It is empty.", "Action: take pot"]
    assert lines[3].startswith("Observation: x x") and lines[3].endswith("...") and len(lines[3]) <= 13 + 50
    assert lines[4:] == ["Action: cook", "Observation: Done."]
    # TextWorld states the objective at the start of the first observation: not repeated
    tw = Demonstration("Find the key.", (("Find the key. -= Hall =- A hall.", "take key"),))
    assert tw.render().split("\n")[1] == "Observation: -= Hall =- A hall."


def test_text_numbers_the_examples_and_the_template_shows_them_once():
    text = Demonstrations(POOL, shots=2, max_tokens=None).text()
    assert text.startswith("Example 1:\nTask: task ") and "\n\nExample 2:\nTask: task " in text
    assert "Example 3:" not in text
    prompt = PromptTemplate()(TextState("You are in room 1.", ["go east"], task="reach the exit", example=text))
    assert prompt.startswith("You are playing a text game. Choose the next action.\nExample 1:\n")
    assert "Example:" not in prompt and prompt.endswith("Task: reach the exit\nObservation: You are in room 1.\nAction:")
    single = PromptTemplate()(TextState("obs", ["a"], example="Observation: o\nAction: a"))
    assert "\nExample:\nObservation: o\nAction: a\n" in single  # an env's own example keeps its header


def test_selection_is_deterministic_by_seed():
    texts = {seed: Demonstrations(POOL, shots=2, seed=seed, max_tokens=None).text() for seed in range(6)}
    assert texts[3] == Demonstrations(list(POOL), shots=2, seed=3, max_tokens=None).text()
    assert len(set(texts.values())) > 1  # the seed chooses which episodes
    demos = Demonstrations(POOL, shots=2, seed=1, max_tokens=None)
    assert len(demos.sources) == 2 and all(f"Task: task {s[5]}" in demos.text() for s in demos.sources)
    assert Demonstrations(POOL, shots=0).text() is None and Demonstrations([], shots=2).text() is None
    failed = Demonstration("t", (("o", "a"),), success=False)
    assert Demonstrations([failed]).text() is None  # only successful episodes are kept


def test_budget_is_respected_with_the_real_tokenizer(smollm_tokenizer):
    count = token_counter(smollm_tokenizer)
    pool = [episode(i, n_steps=4, obs_words=80) for i in range(4)]
    full = Demonstrations(pool, shots=2, max_tokens=None).text()
    assert count(full) > 900
    for budget in (100, 300, 600, 900):
        demos = Demonstrations(pool, shots=2, max_tokens=budget, count_tokens=count)
        text = demos.text()
        assert text is not None and count(text) <= budget, budget
    assert "Example 2:" in Demonstrations(pool, shots=2, max_tokens=900, count_tokens=count).text()
    small = Demonstrations(pool, shots=2, max_tokens=100, count_tokens=count)
    assert "Example 2:" not in small.text() and len(small.sources) == 1  # fewer examples, then fewer steps
    assert Demonstrations(pool, shots=2, max_tokens=5, count_tokens=count).text() is None  # nothing fits


def test_leakage_check_refuses_evaluation_games(tmp_path, monkeypatch):
    game = tmp_path / "game-7.z8"
    game.write_bytes(b"")
    demos = Demonstrations(POOL + [Demonstration("t", (("o", "a"),), source=str(game))], shots=1)
    demos.check_no_leakage(["game-100.z8", tmp_path / "other.z8"])  # disjoint: fine
    with pytest.raises(ValueError, match="game-3.z8"):
        demos.check_no_leakage(["game-3.z8"])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="evaluation games"):
        demos.check_no_leakage(["game-7.z8"])  # the same file by a relative path
    # an episode in the pool counts even when the seed does not show it
    with pytest.raises(ValueError):
        Demonstrations(POOL, shots=1, seed=0).check_no_leakage([f"game-{i}.z8" for i in range(6)])


def test_learning_from_successes_is_off_by_default():
    demos = Demonstrations(POOL[:1])
    assert demos.learn_from_successes is False
    with pytest.raises(RuntimeError, match="learn_from_successes"):
        demos.add(POOL[1])
    env = LLMPriorWrapper(CorridorTextEnv(length=3), east_prior(), k=4, encoder=None, demonstrations=demos)
    env.reset(seed=0)
    for _ in range(2):
        *_, info = env.step(0)
    assert info["is_success"] and len(demos) == 1 and demos.version == 0


def test_the_wrapper_puts_the_demonstrations_into_the_prompt():
    demos = Demonstrations(POOL, shots=2, max_tokens=None)
    env = LLMPriorWrapper(CorridorTextEnv(), east_prior(), k=4, encoder=None, demonstrations=demos)
    _, info = env.reset(seed=0)
    assert demos.text() in info["prior_prompt"] and CorridorTextEnv.prompt_example not in info["prior_prompt"]
    _, _, _, _, info = env.step(0)
    assert demos.text() in info["prior_prompt"]
    fixed = LLMPriorWrapper(CorridorTextEnv(), east_prior(), k=4, encoder=None, demonstrations="Observation: x\nAction: y")
    assert "Example:\nObservation: x\nAction: y\n" in fixed.reset(seed=0)[1]["prior_prompt"]
    plain = LLMPriorWrapper(CorridorTextEnv(), east_prior(), k=4, encoder=None)
    assert CorridorTextEnv.prompt_example in plain.reset(seed=0)[1]["prior_prompt"]

    venv = VecLLMPrior(DummyVecEnv([lambda: TextInInfo(CorridorTextEnv())] * 2), east_prior(), k=4, encoder=None,
                       demonstrations=demos)
    venv.reset()
    assert all(demos.text() in info["prior_prompt"] for info in venv.reset_infos)
    _, _, _, infos = venv.step(np.zeros(2, dtype=int))
    assert all(demos.text() in info["prior_prompt"] for info in infos)


def test_learning_from_successes_adds_won_episodes_and_changes_the_prompt():
    demos = Demonstrations(shots=1, learn_from_successes=True, max_tokens=None)
    env = LLMPriorWrapper(CorridorTextEnv(length=3), east_prior(), k=4, encoder=None, demonstrations=demos)
    _, info = env.reset(seed=0)
    assert CorridorTextEnv.prompt_example in info["prior_prompt"]  # nothing learnt yet: the env's example
    env.step(1)  # go west: stays in room 1
    env.step(0)
    *_, terminated, _, info = env.step(0)
    assert terminated and info["is_success"] and demos.version == 1
    [learnt] = demos.episodes
    assert [c for _, c in learnt.steps] == ["go west", "go east", "go east"] and learnt.task == "reach the exit"
    assert learnt.final_observation == "You are in room 3 of 3. The exit is to the east."
    _, info = env.reset(seed=0)
    assert demos.text() in info["prior_prompt"] and "Action: go west" in info["prior_prompt"]

    vdemos = Demonstrations(shots=1, learn_from_successes=True, max_tokens=None)
    venv = VecLLMPrior(DummyVecEnv([lambda: TextInInfo(CorridorTextEnv(length=2))] * 2), east_prior(), k=4,
                       encoder=None, demonstrations=vdemos)
    venv.reset()
    _, _, dones, _ = venv.step(np.zeros(2, dtype=int))
    assert dones.all() and vdemos.version == 1  # the same episode twice is added once
    _, _, dones, infos = venv.step(np.zeros(2, dtype=int))  # states built from then on show it
    assert all(vdemos.text() in info["prior_prompt"] for info in infos) and vdemos.version == 1


def test_from_dataset_needs_text_and_keeps_the_successful_episodes(tmp_path):
    import envs  # noqa: F401  (registers the ids)

    env = LLMPriorWrapper(gym.make("prior_wrappers/OvercookedTomato-v0"), east_prior(), k=8, encoder=None)
    expert = CommandPolicy(lambda: env.unwrapped.expert_command())
    plain = collect_dataset(env, expert, n_episodes=1, seed=0)
    with pytest.raises(ValueError, match="record_text=True"):
        Demonstrations.from_dataset(plain)
    data = collect_dataset(env, expert, n_episodes=2, seed=0, record_text=True)
    data.episode_success[1] = False  # pretend the second one failed
    loaded = OfflineDataset.load(data.save(tmp_path / "data.npz"))
    assert loaded.commands.tolist() == data.commands.tolist()
    demos = Demonstrations.from_dataset(loaded, shots=1)
    [demo] = demos.episodes
    rows = np.flatnonzero(loaded.episode_index == 0)
    assert [c for _, c in demo.steps] == loaded.commands[rows].tolist() and demo.steps[-1][1].startswith("serve")
    assert demo.task.startswith("Make a tomato salad") and demo.steps[0][0] == loaded.text_observations[0]
    assert demos.text().startswith("Example 1:\nTask: Make a tomato salad")
    assert len(data.episodes(1).commands) == len(rows)


def _tokens_computed(model, tokenizer, prefix_cache, demos) -> int:
    """Tokens through the model (all forwards) while a wrapper scores the five states of a corridor episode."""
    computed: list[int] = []
    hook = model.get_input_embeddings().register_forward_hook(lambda m, inputs, out: computed.append(inputs[0].numel()))
    try:
        prior = HFPrior(model, tokenizer, prefix_cache=prefix_cache)
        env = LLMPriorWrapper(CorridorTextEnv(length=5), prior, k=4, encoder=None, history=0, order="env",
                              demonstrations=demos, score_terminal=True)
        _, info = env.reset(seed=0)
        rooms = [info["text_observation"]]
        for _ in range(4):
            *_, info = env.step(0)  # slot 0 is "go east" (env order): five different rooms
            rooms.append(info["text_observation"])
        assert len(set(rooms)) == 5
    finally:
        hook.remove()
    return sum(computed)


def test_the_prefix_cache_computes_the_demonstrations_once(tiny_llama, smollm_tokenizer):
    demos = Demonstrations([episode(i, n_steps=2, obs_words=8) for i in range(3)], shots=2, max_tokens=None)
    n_demo_tokens = len(smollm_tokenizer(demos.text())["input_ids"])
    assert 60 < n_demo_tokens < 300  # the tiny model's context is 512 tokens
    without = _tokens_computed(tiny_llama, smollm_tokenizer, False, demos)
    cached = _tokens_computed(tiny_llama, smollm_tokenizer, True, demos)
    assert without > 5 * n_demo_tokens  # every state's prompt holds the demonstrations
    assert without - cached >= 4 * n_demo_tokens  # with the cache, they are computed once, not five times


def test_decision_points_are_the_prompts_the_wrapper_shows_with_their_admissible_commands():
    env = LLMPriorWrapper(CorridorTextEnv(length=5), east_prior(), k=4, encoder=None, history=2)
    _, info = env.reset(seed=0)
    steps, admissible, prompts, commands = [], [], [], ["go east", "wait", "go east", "go west", "go east"]
    for command in commands:
        prompts.append(info["prior_prompt"])
        admissible.append(tuple(env.unwrapped._info()["admissible_commands"]))
        observation = info["text_observation"]
        _, _, _, _, info = env.step(info["prior_candidates"].index(command))
        steps.append((observation, command))
    demo = Demonstration("reach the exit", tuple(steps), admissible=tuple(admissible))
    points = demo.decision_points(history=2, example=CorridorTextEnv.prompt_example)
    assert [p.prompt for p in points] == prompts
    assert [p.command for p in points] == commands
    assert points[1].admissible == ("go east", "go west", "wait", "look at the painting")
    no_history = demo.decision_points(history=0)
    assert "Action: wait" in points[2].prompt and "Action: wait" not in no_history[2].prompt
    assert Demonstrations([demo]).decision_points(history=2, example=CorridorTextEnv.prompt_example) == points
    assert demo.cut(2).admissible == tuple(admissible[:2])
    with pytest.raises(ValueError, match="one per step"):
        Demonstration("t", steps, admissible=tuple(admissible[:2]))


def test_an_expert_command_the_admissible_list_spells_otherwise_is_recorded_among_them():
    """TextWorld's walkthrough may take a command its admissible list spells differently ("take knife from counter"
    vs "take knife"): the game accepted it, so it was valid. Without it among the recorded alternatives a BCPrior
    or LoRA fit refuses the step."""
    from prior_wrappers import BCPrior, HashingEncoder

    class Terse(CorridorTextEnv):
        def step(self, action):
            return super().step("go east" if action == "go east quickly" else action)

        def expert_command(self) -> str:
            return "go east quickly"

    demos = Demonstrations.from_expert(Terse(length=3), 1)
    [episode] = demos.episodes
    assert all(a[-1] == "go east quickly" and "go east" in a for a in episode.admissible)
    assert episode.admissible[0] == ("go east", "go west", "wait", "go east quickly")  # appended, order kept
    BCPrior(encoder=HashingEncoder(64), seed=0).fit(demos, history=0)  # refused before: not among the admissible
