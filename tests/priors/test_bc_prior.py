"""BCPrior: p(a|s) learned from demonstrations alone (HashingEncoder, hand-made episodes, no game, no LLM);
strip_examples, the prompt function it reads states with."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from toy_text_env import CorridorTextEnv

from prior_wrappers import LLMPriorWrapper
from prior_wrappers.demonstrations import Demonstration, Demonstrations
from prior_wrappers.encoders import HashingEncoder
from prior_wrappers.priors.base import ActionPrior
from prior_wrappers.priors.behavior_cloning import BCPrior
from prior_wrappers.prompts import PromptTemplate, TextState, TranscriptPrompt, format_examples, strip_examples



@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # a tiny network on a shared 2-core machine: a second torch thread only spins (10x slower updates)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


OBJECTS = ["apple", "bowl", "knife", "lamp", "coin", "book"]
ROOMS = ["kitchen", "hall", "garden", "attic", "cellar"]
TASK = "bring the object north"


def observation(obj: str, room: str) -> str:
    return f"-= {room.title()} =-\nYou are in the {room}.\n\nYou see a {obj} here."


def episode(i: int, j: int, shift: int = 1) -> Demonstration:
    """Take the object the room shows (two other objects are takeable too), then go north."""
    obj, room = OBJECTS[i], ROOMS[j]
    others = [OBJECTS[(i + shift) % len(OBJECTS)], OBJECTS[(i + shift + 1) % len(OBJECTS)]]
    first = tuple(f"take {o}" for o in sorted([obj, *others])) + ("go north", "look")
    second = ("go north", "look", f"drop {obj}")
    steps = ((observation(obj, room), f"take {obj}"), (f"You take the {obj}.\n\nA door leads north.", "go north"))
    return Demonstration(TASK, steps, "You win.", f"game-{i}-{j}", True, 1.0, (first, second))


TRAIN = [(i, j) for i in range(len(OBJECTS)) for j in range(len(ROOMS)) if (i + j) % 3]
HELD_OUT = [(i, j) for i in range(len(OBJECTS)) for j in range(len(ROOMS)) if (i + j) % 3 == 0]


def demos(pairs=TRAIN, shift: int = 1) -> Demonstrations:
    return Demonstrations([episode(i, j, shift) for i, j in pairs])


def fit(data=None, **kwargs) -> BCPrior:
    kwargs = {"encoder": HashingEncoder(256), "updates": 200, "lr": 3e-3, "seed": 0, **kwargs}
    return BCPrior(**kwargs).fit(demos() if data is None else data)


@pytest.fixture(scope="module")
def prior() -> BCPrior:
    return fit()


def held_out_points(shift: int = 3):
    """Unseen (object, room) pairs with unseen distractor sets, as the wrappers' prompts."""
    return [p for i, j in HELD_OUT for p in episode(i, j, shift).decision_points()]


def test_learns_the_rule_and_ranks_the_expert_first_on_unseen_states(prior):
    assert isinstance(prior, ActionPrior)
    points = held_out_points()
    scores = prior.score([p.prompt for p in points], [list(p.admissible) for p in points])
    ranks = [1 + int(np.sum(lp > lp[list(p.admissible).index(p.command)])) for p, lp in zip(points, scores.logprobs)]
    assert ranks == [1] * len(points)
    p_expert = [np.exp(lp[list(p.admissible).index(p.command)]) for p, lp in zip(points, scores.logprobs)]
    assert np.mean(p_expert) > 0.8
    untrained_like = fit(epochs=1)  # one pass learns little: the rule above is learnt, not given by the features
    first_steps = [p for p in points if p.command.startswith("take")]
    s = untrained_like.score([p.prompt for p in first_steps], [list(p.admissible) for p in first_steps])
    assert np.mean([np.exp(lp[list(p.admissible).index(p.command)]) for p, lp in zip(first_steps, s.logprobs)]) < 0.5


def test_scores_are_the_log_softmax_of_the_logits_per_command(prior):
    prompts = [held_out_points()[0].prompt, "Observation: an empty room\nAction:"]
    candidates = [["take apple", "go north", "look"], ["wait"]]
    s = prior.score(prompts, candidates)
    for raw, lp in zip(s.raw_logprobs, s.logprobs):
        by_hand = raw - np.log(np.sum(np.exp(raw)))
        np.testing.assert_allclose(lp, by_hand, rtol=0, atol=1e-12)
        assert abs(np.exp(lp).sum() - 1) < 1e-12
    assert s.logprobs[1].tolist() == [0.0] and len(set(s.raw_logprobs[0].tolist())) == 3
    assert [n.tolist() for n in s.num_tokens] == [[1, 1, 1], [1]] and s.features is None
    for normalization in ("word", "sum"):  # per command, not per token: nothing to normalise
        other = prior.score(prompts, candidates, normalization=normalization)
        np.testing.assert_array_equal(other.logprobs[0], s.logprobs[0])
    alone = prior.score(prompts[:1], candidates[:1])  # a prompt's scores do not depend on the rest of the call
    np.testing.assert_allclose(alone.logprobs[0], s.logprobs[0], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="normalization"):
        prior.score(prompts, candidates, normalization="tokens")
    features = prior.score(prompts, candidates, return_features=True).features
    assert [f.shape for f in features] == [(3, 256), (1, 256)]
    proposals = prior.propose(prompts, candidates, k=8)
    np.testing.assert_allclose(proposals.counts[0], 8 * np.exp(s.logprobs[0]))
    assert proposals.commands == candidates and proposals.invalid_rate == 0.0


def test_the_example_block_does_not_change_the_scores(prior):
    point = episode(*HELD_OUT[0], shift=3).steps[0]
    examples = [None, CorridorTextEnv.prompt_example, demos().text(), format_examples(["Observation: a\nAction: b"] * 2)]
    for template in (PromptTemplate(), TranscriptPrompt()):
        state = TextState(point[0], [], TASK, (("You wake up.\n\nIt is dark.", "look"),))
        prompts = [template(dataclasses.replace(state, example=e)) for e in examples]
        assert len(set(prompts)) == len(examples)
        s = prior.score(prompts, [["take apple", "take bowl", "look"]] * len(prompts))
        for lp in s.logprobs[1:]:
            np.testing.assert_array_equal(lp, s.logprobs[0])


STATES = [
    TextState("You see a bowl.", ["take bowl"]),
    TextState("-= Kitchen =-\nA kitchen.\n\nYou see a bowl.\n\n\nExits: north.", ["take bowl"], task="cook\nmeal",
              history=(("-= Hall =-\n\nA hall.", "go  south"), ("Task: not a task line", "look"))),
    TextState("Observation: nested\n\nObservation: again", ["look"], history=(("old\n\nObservation: x", "wait"),)),
]
EXAMPLE_TEXTS = [
    None,
    "Observation: a kitchen\nAction: take bowl\nObservation: done",
    format_examples(["Task: one\nObservation: a\nAction: b", "Task: two\nObservation: c\nAction: d"]),
    Demonstrations([episode(0, 1), episode(1, 2)], max_tokens=None).text(),
]


@pytest.mark.parametrize("template", [PromptTemplate(), PromptTemplate(history=0), TranscriptPrompt(),
                                      TranscriptPrompt(max_chars=60)], ids=["template", "no-history", "transcript",
                                                                            "transcript-omitted"])
@pytest.mark.parametrize("example", EXAMPLE_TEXTS, ids=["none", "env", "numbered", "demonstrations"])
@pytest.mark.parametrize("state", STATES, ids=["plain", "blank-lines-task", "no-task-nested"])
def test_strip_examples_gives_the_prompt_without_examples(template, example, state):
    prompt = template(dataclasses.replace(state, example=example))
    without = dataclasses.replace(template, use_example=False)(state)
    assert strip_examples(prompt) == without
    assert strip_examples(without) == without
    if example is not None:
        assert prompt != without


def test_strip_examples_leaves_other_text_alone():
    state_with_example_words = "Observation: the sign reads\nExample:\nnothing here\n\nObservation: more\nAction:"
    assert strip_examples(state_with_example_words) == state_with_example_words
    assert strip_examples("Instruction.\nExample:\nno state follows") == "Instruction.\nExample:\nno state follows"
    assert strip_examples("") == ""


def test_save_and_load_round_trip(prior, tmp_path):
    path = prior.save(tmp_path / "bc.pt")
    loaded = BCPrior.load(path)  # the HashingEncoder is rebuilt from its name
    again = BCPrior.load(path, encoder=HashingEncoder(256))
    points = held_out_points()
    prompts, cands = [p.prompt for p in points], [list(p.admissible) for p in points]
    expected = prior.score(prompts, cands).logprobs
    for other in (loaded, again):
        for a, b in zip(other.score(prompts, cands).logprobs, expected):
            np.testing.assert_array_equal(a, b)
        assert other.fingerprint == prior.fingerprint
        assert other.config == prior.config and "fitted on 40 states of 20 episodes" in repr(other)
    data = torch.load(path, weights_only=True)  # plain data only
    assert data["encoder"] == "hashing:256" and data["version"] == 1


def test_load_refuses_another_encoder_and_malformed_files(prior, tmp_path):
    path = prior.save(tmp_path / "bc.pt")
    with pytest.raises(ValueError, match="trained with the encoder 'hashing:256', not 'hashing:128'"):
        BCPrior.load(path, encoder=HashingEncoder(128))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="not a BCPrior file"):
        BCPrior.load(garbage)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(ValueError, match="not a BCPrior file"):
        BCPrior.load(other)
    pickled = tmp_path / "pickled.pt"
    torch.save({"format": "prior_wrappers.BCPrior", "object": HashingEncoder(4)}, pickled)
    with pytest.raises(ValueError, match="not a BCPrior file"):  # weights_only: no arbitrary objects are unpickled
        BCPrior.load(pickled)
    data = torch.load(path, weights_only=True)
    for key, value, message in [("version", 99, "version 99"), ("state_dict", {}, "damaged"),
                                ("encoder_dim", 128, "scorer expects 128")]:
        broken = tmp_path / f"broken-{key}.pt"
        torch.save({**data, key: value}, broken)
        with pytest.raises(ValueError, match=message):
            BCPrior.load(broken)
    renamed = tmp_path / "renamed.pt"
    torch.save({**data, "encoder": "sentence:some-model"}, renamed)
    with pytest.raises(ValueError, match="pass it"):
        BCPrior.load(renamed)
    with pytest.raises(FileNotFoundError):
        BCPrior.load(tmp_path / "missing.pt")


def test_fit_is_deterministic_per_seed_and_leaves_the_global_rng_alone(prior):
    state = torch.get_rng_state()
    numpy_state = np.random.get_state()[1].copy()
    same = fit()
    assert torch.equal(torch.get_rng_state(), state) and np.array_equal(np.random.get_state()[1], numpy_state)
    points = held_out_points()
    prompts, cands = [p.prompt for p in points], [list(p.admissible) for p in points]
    for a, b in zip(same.score(prompts, cands).logprobs, prior.score(prompts, cands).logprobs):
        np.testing.assert_array_equal(a, b)
    assert same.fingerprint == prior.fingerprint
    assert prior.training["updates"] == 200 and prior.training["epochs"] == 100  # 40 states: 2 minibatches a pass
    assert fit(epochs=3).training["updates"] == 6  # epochs, when given, decide instead
    reseeded = fit(seed=1).score(prompts, cands).logprobs
    assert any(not np.array_equal(a, b) for a, b in zip(reseeded, prior.score(prompts, cands).logprobs))


def test_fingerprint_names_the_encoder_and_changes_with_the_data(prior):
    assert BCPrior(encoder=HashingEncoder(256)).fingerprint == "BCPrior:hashing:256:unfitted"
    assert BCPrior().fingerprint == "BCPrior:minilm:all-MiniLM-L6-v2:unfitted"  # the default encoder is not loaded
    assert prior.fingerprint.startswith("BCPrior:hashing:256:") and len(prior.fingerprint.rsplit(":", 1)[1]) == 16
    fewer = fit(demos(TRAIN[:-1]))
    assert fewer.fingerprint != prior.fingerprint
    refit = fit().fit(demos(TRAIN[:-1]))  # fit replaces the earlier fit
    assert refit.fingerprint == fewer.fingerprint


def test_steps_without_admissible_commands_learn_from_the_other_steps_commands():
    bare = [dataclasses.replace(episode(i, j), admissible=()) for i, j in TRAIN]
    prior = fit(bare, negatives=3)
    assert prior.training["states"] == 2 * len(TRAIN)
    points = held_out_points()
    s = prior.score([p.prompt for p in points], [list(p.admissible) for p in points])
    p_expert = [np.exp(lp[list(p.admissible).index(p.command)]) for p, lp in zip(points, s.logprobs)]
    assert np.mean(p_expert) > 0.5


def test_fit_takes_a_list_of_episodes_or_an_offline_dataset_recorded_with_text(prior):
    from prior_wrappers.sb3 import OfflineDataset

    episodes = [episode(i, j) for i, j in TRAIN]
    as_list = fit(episodes)
    assert as_list.fingerprint == prior.fingerprint
    rows = [(e, obs, cmd) for e, ep in enumerate(episodes) for obs, cmd in ep.steps]
    n = len(rows)
    dataset = OfflineDataset(
        observations={"action_mask": np.ones((n, 2), np.int8)}, actions=np.zeros(n, int), rewards=np.zeros(n),
        next_observations={"action_mask": np.ones((n, 2), np.int8)}, terminated=np.zeros(n, bool),
        truncated=np.zeros(n, bool), episode_index=np.array([r[0] for r in rows]),
        episode_success=np.ones(len(episodes), bool), episode_return=np.ones(len(episodes)),
        text_observations=np.array([r[1] for r in rows], dtype=object), commands=np.array([r[2] for r in rows], dtype=object),
        episode_task=np.array([TASK] * len(episodes), dtype=object),
        episode_source=np.array([e.source for e in episodes], dtype=object),
    )
    from_dataset = fit(dataset)  # no admissible lists in a dataset: the other steps' commands are the negatives
    assert from_dataset.training == {**prior.training, "final_loss": from_dataset.training["final_loss"]}


def test_bad_inputs_raise_errors_that_say_what_to_fix(prior):
    with pytest.raises(ValueError, match="no demonstration to learn from"):
        fit(Demonstrations())
    with pytest.raises(ValueError, match="no demonstration to learn from"):
        fit([])
    with pytest.raises(ValueError, match="no demonstration to learn from"):
        fit([dataclasses.replace(episode(0, 1), success=False)])
    wrong = dataclasses.replace(episode(0, 1), steps=(episode(0, 1).steps[0], ("You take the apple.", "fly away")))
    with pytest.raises(ValueError, match=r"step 1 of demonstration 1 \(source 'game-0-1'\).*'fly away' is not among"):
        fit([episode(1, 2), wrong])
    with pytest.raises(TypeError, match="takes a Demonstrations"):
        fit("take apple")
    single = Demonstration("t", (("o", "a"),), admissible=(("a",),))
    with pytest.raises(ValueError, match="single candidate"):
        fit([single])
    unfitted = BCPrior(encoder=HashingEncoder(256))
    with pytest.raises(RuntimeError, match=r"call fit\(demonstrations\) or BCPrior.load"):
        unfitted.score(["Observation: x\nAction:"], [["a", "b"]])
    with pytest.raises(RuntimeError, match="fit"):
        unfitted.save("/nonexistent/never-written.pt")
    assert "not fitted" in repr(unfitted)
    with pytest.raises(TypeError, match="single string"):
        prior.score("Observation: x\nAction:", [["a"]])
    with pytest.raises(ValueError, match="empty"):
        prior.score(["Observation: x\nAction:"], [[]])
    for kwargs in ({"hidden": 0}, {"features": ("state",)}, {"features": ("joint", "joint")}, {"epochs": 0},
                   {"updates": 0},
                   {"lr": 0.0}, {"negatives": 0}):
        with pytest.raises(ValueError):
            BCPrior(**kwargs)
    with pytest.raises(TypeError, match="TextEncoder"):
        BCPrior(encoder="hashing")


def corridor_demos() -> Demonstrations:
    """Go east through corridors of 3-5 rooms, with the admissible commands CorridorTextEnv reports."""
    episodes = []
    for length in (3, 5):
        env = CorridorTextEnv(length=length)
        observation, info = env.reset(seed=0)
        steps, admissible, done = [], [], False
        while not done:
            steps.append((observation, "go east"))
            admissible.append(tuple(info["admissible_commands"]))
            observation, _, done, _, info = env.step("go east")
        episodes.append(Demonstration(info["task"], tuple(steps), observation, f"corridor-{length}", True, 1.0,
                                      tuple(admissible)))
    return Demonstrations(episodes)


@pytest.mark.parametrize("encoder", ["hashing", None])
def test_works_inside_the_wrapper(encoder):
    prior = BCPrior(encoder=HashingEncoder(128), seed=0).fit(corridor_demos())  # the default training length
    env = LLMPriorWrapper(CorridorTextEnv(length=4), prior, k=4, encoder=encoder)
    obs, info = env.reset(seed=0)
    assert "Example:" in info["prior_prompt"]  # the env's example is in the prompt, and ignored by the prior
    assert info["prior_candidates"][0] == "go east" and np.exp(obs["prior_logprobs"][0]) > 0.5
    for _ in range(3):
        obs, reward, terminated, truncated, info = env.step(0)
    assert terminated and info["is_success"]
    gym_check_env(env, skip_render_check=True)
