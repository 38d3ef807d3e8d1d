"""Every ```python block of README.md and docs/**/*.md runs, so an example that no longer matches the code fails.

A page's blocks run in order in one namespace (a later block uses the names of an earlier one), in a temporary
working directory of their own; each block is one test, named by its file and line (``docs/priors.md:23``), and a
traceback points at the page's own lines. A block after a failed one of the same page is skipped.

What the blocks load or train is swapped for fast stand-ins, here only:

- ``HFPrior.default()`` and ``GFlanLLM.default()`` load a 2-layer random-weight Llama with the embedded SmolLM2's
  tokenizer instead of SmolLM2 (the same weights at every call, so saved adapters and models load back);
- ``SentenceEncoder.default()`` (the wrappers' ``encoder="minilm"``, ``BCPrior``) a 1-layer random-weight BERT of
  MiniLM's width (384) with MiniLM's tokenizer;
- training is capped: ``learn`` and ``learn_offline`` at ``MAX_STEPS`` steps (an off-policy algorithm starts
  learning within them), ``collect_expert_mixture`` at ``MAX_EPISODES`` episodes.

So the tests check every name, argument and call of the examples, not what the real model would rank or learn
(the benchmarks and the tests of each module do that). A block that cannot run here at all (a server, the Hugging
Face Hub) is preceded by ``<!-- docs-test: skip <reason> -->``; ``EXPECTED_SKIPS`` counts them, so that skips cannot
grow silently.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
EXPECTED_SKIPS = 1  # docs/scaling-out.md: OpenAIPrior needs a vLLM server and the served model's tokenizer
MAX_STEPS = 64
MAX_EPISODES = 4

FENCE = re.compile(r"^(?P<indent>[ \t]*)```python[ \t]*$")
SKIP = re.compile(r"^\s*<!--\s*docs-test:\s*skip\b(?P<reason>.*?)-->\s*$")


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the block's first line of code
    code: str
    skip: str | None  # the reason given by a skip marker, else None

    @property
    def name(self) -> str:
        """The page's path from the repository root (or its bare name outside it)."""
        return self.page.relative_to(ROOT).as_posix() if self.page.is_relative_to(ROOT) else self.page.name

    @property
    def id(self) -> str:
        return f"{self.name}:{self.line}"


def extract(page: Path) -> list[Block]:
    """The ```python blocks of a Markdown page, with their line numbers and skip markers."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent = match["indent"]
        end = i + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        if end == len(lines):
            raise ValueError(f"{page}:{i + 1}: a ```python block that is never closed")
        code = textwrap.dedent(
            "\n".join(line[len(indent) :] if line.startswith(indent) else line for line in lines[i + 1 : end])
        )
        marker = SKIP.match(lines[i - 1]) if i > 0 else None
        skip = (marker["reason"].strip() or "(no reason)") if marker else None
        blocks.append(Block(page, i + 2, code, skip))
        i = end + 1
    return blocks


def skip_markers(page: Path) -> list[tuple[int, str]]:
    """Every skip marker of a page, with its line, whether or not a block follows it."""
    return [
        (n, m["reason"].strip())
        for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1)
        if (m := SKIP.match(line))
    ]


BLOCKS = [block for page in PAGES for block in extract(page)]


@dataclass
class PageRun:
    """One page's namespace and working directory, and the outcome of each of its blocks run so far."""

    workdir: Path
    namespace: dict[str, Any] = field(default_factory=lambda: {"__name__": "__docs__"})
    outcomes: dict[int, BaseException | None] = field(default_factory=dict)


_runs: dict[Path, PageRun] = {}


def run_block(block: Block, namespace: dict[str, Any]) -> None:
    """Execute a block so that a traceback names the page and its own line numbers."""
    exec(compile("\n" * (block.line - 1) + block.code, block.name, "exec"), namespace)


# ---------------------------------------------------------------------------------------------------- stand-ins
@pytest.fixture
def stand_ins(monkeypatch, smollm_tokenizer):
    """Fast stand-ins for the embedded LLM and for long training (see the module docstring)."""
    from stable_baselines3.common.base_class import BaseAlgorithm
    from transformers import LlamaConfig, LlamaForCausalLM

    import prior_wrappers.sb3 as sb3
    from prior_wrappers.encoders import SentenceEncoder
    from prior_wrappers.priors import HFPrior
    from prior_wrappers.priors.adaptation import load_adapter
    from prior_wrappers.sb3 import GFlanLLM

    def tiny_llama() -> LlamaForCausalLM:
        config = LlamaConfig(
            vocab_size=len(smollm_tokenizer),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=2048,
            pad_token_id=smollm_tokenizer.pad_token_id,
        )
        with torch.random.fork_rng():
            torch.manual_seed(0)  # the same weights at every call: an adapter or a model saved over one loads back
            return LlamaForCausalLM(config).eval()

    def hf_default(cls, *, adapter=None, dtype=None, device=None, local_files_only=None, **kwargs):
        prior = cls(tiny_llama(), smollm_tokenizer, **kwargs)
        return prior if adapter is None else load_adapter(prior, adapter, copy_model=False)

    def gflan_default(cls, *, separator=" ", candidate_suffix="", dtype=None, device=None, **kwargs):
        return cls(tiny_llama(), smollm_tokenizer, separator=separator, candidate_suffix=candidate_suffix)

    def encoder_default(cls, **kwargs):
        from transformers import AutoTokenizer, BertConfig, BertModel

        from prior_wrappers.priors.embedded import embedded_encoder_path

        tokenizer = AutoTokenizer.from_pretrained(str(embedded_encoder_path()), local_files_only=True)
        config = BertConfig(
            vocab_size=tokenizer.vocab_size,
            hidden_size=384,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=256,
        )
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = BertModel(config)
        kwargs.setdefault("name", "minilm:all-MiniLM-L6-v2")
        return cls(model, tokenizer, **kwargs)

    monkeypatch.setattr(HFPrior, "default", classmethod(hf_default))
    monkeypatch.setattr(SentenceEncoder, "default", classmethod(encoder_default))
    monkeypatch.setattr(GFlanLLM, "default", classmethod(gflan_default))

    setup_learn = BaseAlgorithm._setup_learn

    def capped_setup_learn(self, total_timesteps, *args, **kwargs):
        if hasattr(self, "learning_starts"):  # off-policy: some gradient steps within the cap
            self.learning_starts = min(self.learning_starts, MAX_STEPS // 2)
        return setup_learn(self, min(total_timesteps, MAX_STEPS), *args, **kwargs)

    monkeypatch.setattr(BaseAlgorithm, "_setup_learn", capped_setup_learn)

    collect = sb3.collect_expert_mixture

    def capped_collect(env, expert, n_episodes, *args, **kwargs):
        return collect(env, expert, min(n_episodes, MAX_EPISODES), *args, **kwargs)

    monkeypatch.setattr(sb3, "collect_expert_mixture", capped_collect)


@pytest.fixture(autouse=True)
def _one_thread():
    # tiny networks on a shared 2-core machine: a second torch thread only spins
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------------- the tests
@pytest.mark.parametrize("block", BLOCKS, ids=[block.id for block in BLOCKS])
def test_block_runs(block: Block, stand_ins, tmp_path_factory, monkeypatch):
    if block.skip is not None:
        pytest.skip(f"docs-test: skip {block.skip}")
    run = _runs.get(block.page)
    if run is None:
        run = _runs[block.page] = PageRun(tmp_path_factory.mktemp(block.page.stem))
    monkeypatch.chdir(run.workdir)
    # run the page's earlier blocks first when this one was selected alone (pytest -k)
    for earlier in [b for b in BLOCKS if b.page == block.page and b.line < block.line and b.skip is None]:
        if earlier.line not in run.outcomes:
            try:
                run_block(earlier, run.namespace)
                run.outcomes[earlier.line] = None
            except BaseException as err:  # recorded: this block is skipped below
                run.outcomes[earlier.line] = err
        if run.outcomes[earlier.line] is not None:
            pytest.skip(f"an earlier block of the page failed: {earlier.id}")
    try:
        run_block(block, run.namespace)
    except BaseException as err:
        run.outcomes[block.line] = err
        raise
    run.outcomes[block.line] = None


def test_every_page_with_examples_is_found():
    pages = {block.page.relative_to(ROOT).as_posix() for block in BLOCKS}
    assert {"README.md", "docs/getting-started.md", "docs/priors.md", "docs/algorithms/dqn-prior.md"} <= pages


def test_skips_are_few_and_explained():
    markers = [(page, line, reason) for page in PAGES for line, reason in skip_markers(page)]
    for page, line, reason in markers:
        where = f"{page.relative_to(ROOT)}:{line}"
        assert reason, f"{where}: a docs-test skip needs a reason"
        assert any(b.page == page and b.line == line + 2 for b in BLOCKS), f"{where}: no ```python block follows"
    assert len(markers) == EXPECTED_SKIPS, (
        f"{len(markers)} docs-test skips, expected {EXPECTED_SKIPS}: make the new block run on the stand-ins, "
        "or raise EXPECTED_SKIPS deliberately"
    )


def test_a_wrong_block_fails_at_its_own_line(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "Text.\n\n```python\nfrom prior_wrappers import LLMPriorWrapper\n```\n\n"
        "```python\nx = 1\nfrom prior_wrappers import NoSuchWrapper\n```\n"
    )
    first, second = extract(page)
    assert (first.line, second.line) == (4, 8)
    namespace: dict[str, Any] = {}
    run_block(first, namespace)
    with pytest.raises(ImportError, match="NoSuchWrapper") as failure:
        run_block(second, namespace)
    assert (Path(failure.traceback[-1].path).name, failure.traceback[-1].lineno + 1) == ("page.md", 9)


def test_readme_links_and_images_exist():
    """The README is not part of the strict site build: its relative links are checked here."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)\s#]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if not re.match(r"[a-z]+://", t)]
    assert local, "the README links to no page"
    missing = [t for t in local if not (ROOT / t).exists()]
    assert not missing, f"README links to missing files: {missing}"
