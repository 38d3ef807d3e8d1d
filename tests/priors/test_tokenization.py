"""The tail path of candidate tokenisation (tokenise the prompt once, then only its last pre-tokens with each
candidate) against the definition: what ``prompt + separator + candidate + suffix`` adds to the prompt's tokens."""

from __future__ import annotations

import random
import warnings
from typing import Any

import numpy as np
import pytest

from prior_wrappers.priors import tokenization
from prior_wrappers.priors.tokenization import (
    TAIL_PRE_TOKENS,
    CandidateTokenization,
    TokenizedPrompt,
    common_prefix,
    tail_cut,
    tail_tokenization_supported,
)

SEPARATORS = [" ", "", ": ", "\n"]
SUFFIXES = ["", "\n"]
WORDS = ["go", "north", "take", "the", "lamp", "café", "naïve", "door", "12", "3,000", "room", "You", "don", "'t",
         "it's", "...", "!", "?", "(", ")", "-->", "über", "日本", "x", "key:", "\t", "<|im_", "end|>", "<|im_end|>"]
GLUES = [" ", " ", " ", "", "  ", "\n", "\n\n", " \n", ", ", ". "]
CANDIDATES = ["go", "go north", "go nor", "th", "take lamp", " look", "\nlook", "'s", "é", "3", "456", "!", "...",
              "end|>", "  ", "\n", "naïve café", "<|im_end|>", "x y"]


class Engine(CandidateTokenization):
    """The mixin alone, with a context window that never truncates."""

    def __init__(self, tokenizer: Any, separator: str = " ", suffix: str = "") -> None:
        self.tokenizer = tokenizer
        self.separator = separator
        self.candidate_suffix = suffix
        self.truncation = "left"
        self.max_length = 1 << 30

    def force(self, enabled: bool) -> Engine:
        """Take (True, no cross-check) or skip (False) the tail path."""
        self._tail_enabled()
        self._tail_state = (id(self.tokenizer), enabled)
        return self


class CountingTokenizer:
    """A tokenizer that counts the characters it is asked to tokenise."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self.chars = 0

    def __call__(self, texts: Any, **kwargs: Any) -> Any:
        self.chars += len(texts) if isinstance(texts, str) else sum(map(len, texts))
        return self._tokenizer(texts, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tokenizer, name)


def reference(
    tokenizer: Any, prompts: list[str], candidates: list[list[str]], sep: str, suffix: str
) -> list[TokenizedPrompt]:
    """The definition, written out: tokenise prompt and prompt + candidate whole, split at their common prefix."""
    out = []
    for p, cands in zip(prompts, candidates):
        p_ids = tokenizer(p, add_special_tokens=True)["input_ids"]
        joined = [tokenizer(p + sep + c + suffix, add_special_tokens=True)["input_ids"] for c in cands]
        contexts = [common_prefix(p_ids, ids) for ids in joined]
        out.append(TokenizedPrompt(p_ids, contexts, [ids[ctx:] for ctx, ids in zip(contexts, joined)]))
    return out


def random_prompt(rng: random.Random) -> str:
    text = "".join(rng.choice(WORDS) + rng.choice(GLUES) for _ in range(rng.randint(2, 60)))
    ending = rng.choice(["", " ", "  ", "\n", "\n\n", " \n ", ">", ": ", "no", "caf"])
    return text + ending


def random_candidates(rng: random.Random) -> list[str]:
    return rng.sample(CANDIDATES, rng.randint(1, 8))


def assert_tail_path_exact(
    tokenizer: Any, prompts: list[str], candidates: list[list[str]], sep: str, suffix: str
) -> int:
    """The tail path (forced on, no cross-check) gives the definition's tokens; returns how many prompts took it."""
    engine = Engine(tokenizer, sep, suffix).force(True)
    prompt_ids = tokenizer(prompts, add_special_tokens=True)["input_ids"]
    joined = iter(engine._joined_ids(prompts, prompt_ids, candidates))
    for p, p_ids, cands in zip(prompts, prompt_ids, candidates):
        for c in cands:
            t, ids = next(joined)
            assert p_ids[:t] + ids == tokenizer(p + sep + c + suffix)["input_ids"], (p, c)
    assert engine._tokenize_candidates(prompts, candidates) == reference(tokenizer, prompts, candidates, sep, suffix)
    return sum(cut is not None and cut[0] > 0 for cut in engine._prompt_cuts(prompts, prompt_ids))


# ------------------------------------------------------------------ SmolLM2 (the embedded model's tokenizer)
def test_smollm2_takes_the_tail_path(smollm_tokenizer):
    assert tail_tokenization_supported(smollm_tokenizer)


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("sep", SEPARATORS)
def test_tail_path_equals_full_path_on_generated_prompts(smollm_tokenizer, sep, suffix):
    rng = random.Random(f"{sep!r}{suffix!r}")
    prompts = [random_prompt(rng) for _ in range(80)]
    candidates = [random_candidates(rng) for _ in prompts]
    taken = assert_tail_path_exact(smollm_tokenizer, prompts, candidates, sep, suffix)
    assert taken >= 0.9 * sum(len(p) > 60 for p in prompts)  # the path is really taken, not fallen back from


@pytest.mark.parametrize(
    ("prompt", "sep", "candidates"),
    [
        ("You are in a hall.\n> go nor", "", ["th", "th east", "thwest", "n"]),  # mid-word: merges back
        ("You are in a hall. Exits: north  ", "", ["east", " east", "\n"]),  # trailing spaces
        ("You are in a hall.\n\n\n", "", ["go", "\ngo", " go"]),  # trailing newlines
        ("You are in a hall.\n  \n ", " ", ["go", "\n"]),
        ("Take the key, then the lamp. I don", "", ["'t", "'t know", "t"]),  # contraction
        ("Score: 12", "", ["34", "3", ",000"]),  # digits
        ("Where is the caf", "", ["é", "é au lait", "e"]),  # a multi-byte character
        ("Wait...", "", ["!", "?!", "..."]),  # punctuation runs
        ("The end is <|im_", "", ["end|>", "end|> now", "start|>"]),  # an added token straddling the prompt's end
        ("Next: <|im_start", "", ["|>", "|>user"]),  # ... that starts more pre-tokens back than the tail's
        ("Hi <|im_start|>user\nopen the door<|im_end|>", "", ["\n", "x", "<|im_end|>"]),
        ("a", " ", ["b", "bc"]),  # shorter than the tail: the whole prompt is the tail
        ("日本語のテキスト。東京へ行く", "", ["か", "。"]),
    ],
)
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_tail_path_keeps_merges_into_the_prompt(smollm_tokenizer, prompt, sep, candidates, suffix):
    assert_tail_path_exact(smollm_tokenizer, [prompt], [candidates], sep, suffix)


def test_a_leading_bos_is_kept_and_an_appended_eos_turns_the_path_off(smollm_dir):
    from transformers import AutoTokenizer

    rng = random.Random(1)
    prompts = [random_prompt(rng) for _ in range(30)]
    candidates = [random_candidates(rng) for _ in prompts]
    bos = AutoTokenizer.from_pretrained(str(smollm_dir), local_files_only=True, add_bos_token=True)
    assert tail_tokenization_supported(bos)
    assert assert_tail_path_exact(bos, prompts, candidates, "", "") > 20
    eos = AutoTokenizer.from_pretrained(str(smollm_dir), local_files_only=True, add_eos_token=True)
    assert not tail_tokenization_supported(eos)
    engine = Engine(eos, "")
    assert engine._tokenize_candidates(prompts, candidates) == reference(eos, prompts, candidates, "", "")
    assert engine._tail_state == (id(eos), False)


def test_tail_path_tokenises_each_prompt_once(smollm_tokenizer):
    """Per call, the characters tokenised grow with the prompts, not with prompts x candidates."""
    counting = CountingTokenizer(smollm_tokenizer)
    engine = Engine(counting)
    rng = random.Random(2)
    prompts = [" ".join(rng.choice(WORDS) for _ in range(600)) for _ in range(4)]
    candidates = [CANDIDATES[:10] for _ in prompts]
    engine._tokenize_candidates(prompts, candidates)  # the first call also cross-checks
    assert engine._tail_state == (id(counting), True)
    prompt_chars = sum(map(len, prompts))
    for n in (10, 19):
        counting.chars = 0
        engine._tokenize_candidates(prompts, [CANDIDATES[:n] for _ in prompts])
        assert counting.chars < prompt_chars + len(prompts) * n * 100 < 2 * prompt_chars  # full: ~n x prompt_chars


def test_the_first_call_cross_checks_and_a_wrong_tail_falls_back(smollm_tokenizer, monkeypatch):
    """A tail cut at the prompt's very end loses the merges of an empty separator: the cross-check of the first call
    catches it and the engine tokenises whole from then on, with the definition's tokens throughout."""
    monkeypatch.setattr(tokenization, "tail_cut", lambda prompt, pre_tokenizer, min_chars=0: len(prompt))
    counting = CountingTokenizer(smollm_tokenizer)
    engine = Engine(counting, "")
    prompts = ["You are in a hall.\n> go nor", "The exits are east and we"]
    candidates = [["th", "th east"], ["st", "est"]]
    with pytest.warns(RuntimeWarning, match="disagreed"):
        first = engine._tokenize_candidates(prompts, candidates)
    assert first == reference(smollm_tokenizer, prompts, candidates, "", "")
    assert engine._tail_state == (id(counting), False)
    counting.chars = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert engine._tokenize_candidates(prompts, candidates) == first
    assert counting.chars >= 2 * sum(map(len, prompts))  # whole: each prompt once per candidate


def test_tail_cut_is_a_pre_token_boundary_far_enough_back(smollm_tokenizer):
    pre = smollm_tokenizer.backend_tokenizer.pre_tokenizer
    prompt = "You are in the hall. A lamp is here.\n\nExits: north, east  \n"
    cut = tail_cut(prompt, pre)
    starts = [start for _, (start, _) in pre.pre_tokenize_str(prompt)]
    assert cut in starts and len(starts) - starts.index(cut) >= TAIL_PRE_TOKENS
    assert not prompt[cut - 1].isspace()
    assert len(prompt) - tail_cut(prompt, pre, min_chars=30) >= 30
    assert tail_cut("go north", pre) == 0  # too few pre-tokens: the whole prompt
    assert tail_cut("Go: exits:\n\nnorth east", pre) == len("Go: exits:")  # not between the newlines
    long_prompt = "word " * 10_000 + "go nor"
    assert len(long_prompt) - tail_cut(long_prompt, pre) < 40


# ------------------------------------------------------------------ offline tokenizers of other kinds
def _trained(pre_tokenizer: Any, normalizer: Any = None, post: Any = None, byte_level: bool = True) -> Any:
    """A small BPE trained here (no downloads), wrapped as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, trainers
    from tokenizers import pre_tokenizers as pt
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None if byte_level else "<unk>"))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel() if byte_level else decoders.Metaspace()
    rng = random.Random(3)
    corpus = [random_prompt(rng) + " " + " ".join(random_candidates(rng)) for _ in range(400)]
    alphabet = pt.ByteLevel.alphabet() if byte_level else []
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=600, initial_alphabet=alphabet,
                                                        special_tokens=["<s>", "</s>", "<unk>"], show_progress=False))
    if post is not None:
        tok.post_processor = post
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def _llama3_split() -> Any:
    from tokenizers import Regex
    from tokenizers import pre_tokenizers as pt

    pattern = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
               r"|\s+(?!\S)|\s+")
    split = pt.Split(Regex(pattern), behavior="isolated")
    return pt.Sequence([split, pt.ByteLevel(add_prefix_space=False, use_regex=False)])


def _generated(seed: int) -> tuple[list[str], list[list[str]]]:
    rng = random.Random(seed)
    prompts = [random_prompt(rng) for _ in range(40)]
    return prompts, [random_candidates(rng) for _ in prompts]


@pytest.mark.parametrize("kind", ["gpt2", "gpt2_bos", "llama3", "qwen2_nfc"])
def test_byte_level_tokenizers_take_the_tail_path_exactly(kind):
    from tokenizers import normalizers, processors
    from tokenizers import pre_tokenizers as pt

    gpt2 = pt.ByteLevel(add_prefix_space=False)
    bos = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    tok = {"gpt2": lambda: _trained(gpt2), "gpt2_bos": lambda: _trained(gpt2, post=bos),
           "llama3": lambda: _trained(_llama3_split(), post=bos),
           "qwen2_nfc": lambda: _trained(_llama3_split(), normalizer=normalizers.NFC())}[kind]()
    assert tail_tokenization_supported(tok)
    for sep in SEPARATORS:
        prompts, candidates = _generated(len(sep))
        assert assert_tail_path_exact(tok, prompts, candidates, sep, "\n") > 20


@pytest.mark.parametrize("style", ["metaspace", "llama2_normalizer", "eos"])
def test_sentencepiece_style_tokenizers_take_the_full_path_exactly(style):
    """A "▁" prepended to the text (Metaspace, or Llama 2's normaliser) may make a text's tail tokenise differently
    from the same characters inside the text: such tokenizers, and ones appending an EOS, keep the full path."""
    from tokenizers import normalizers, processors
    from tokenizers import pre_tokenizers as pt

    if style == "metaspace":
        tok = _trained(pt.Metaspace(replacement="▁", prepend_scheme="always"), byte_level=False)
    elif style == "llama2_normalizer":
        norm = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
        tok = _trained(None, normalizer=norm, byte_level=False)
    else:
        eos = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
        tok = _trained(pt.ByteLevel(add_prefix_space=False), post=eos)
    assert not tail_tokenization_supported(tok)
    prompts, candidates = _generated(4)
    engine = Engine(tok)
    assert engine._tokenize_candidates(prompts, candidates) == reference(tok, prompts, candidates, " ", "")
    assert engine._tail_state == (id(tok), False)


# ------------------------------------------------------------------ the engines using it
def test_hf_prior_scores_are_identical_on_both_paths(tiny_llama, smollm_tokenizer):
    from prior_wrappers.priors import HFPrior

    rng = random.Random(5)
    prompts = [random_prompt(rng) for _ in range(6)]
    candidates = [[c for c in CANDIDATES if c.strip()] for _ in prompts]  # a prior rejects blank commands
    scores = {}
    for enabled in (True, False):
        prior = HFPrior(tiny_llama, smollm_tokenizer, separator="")
        prior._tail_enabled()
        prior._tail_state = (id(smollm_tokenizer), enabled)
        scores[enabled] = prior.score(prompts, candidates)
    for fast, full in zip(scores[True].raw_logprobs, scores[False].raw_logprobs):
        np.testing.assert_array_equal(fast, full)
    for fast, full in zip(scores[True].num_tokens, scores[False].num_tokens):
        np.testing.assert_array_equal(fast, full)


def test_token_id_spec_is_identical_on_both_paths(smollm_tokenizer):
    from prior_wrappers.token_ids import TokenIdSpec

    rng = random.Random(6)
    for _ in range(10):
        prompt, cands = random_prompt(rng), [c for c in random_candidates(rng) if c.strip()] or ["go"]
        arrays = []
        for enabled in (True, False):
            spec = TokenIdSpec(smollm_tokenizer, max_prompt_tokens=512, max_candidate_tokens=16)
            spec._tail_enabled()
            spec._tail_state = (id(smollm_tokenizer), enabled)
            arrays.append(spec.encode(prompt, cands, k=8, normalization="token"))
        for key in arrays[0]:
            np.testing.assert_array_equal(arrays[0][key], arrays[1][key])
