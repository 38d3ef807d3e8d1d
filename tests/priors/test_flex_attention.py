"""The FlexAttention path (attention="flex") against the dense-mask path, and the engine's choice of attention."""

from __future__ import annotations

import numpy as np
import pytest

from prior_wrappers.priors import HFPrior
from prior_wrappers.priors.attention import FLEX_IMPLEMENTATION, flex_available, scoring_implementation

pytestmark = pytest.mark.skipif(not flex_available(), reason="torch has no FlexAttention")

# long enough that a row spans several 128-token blocks, so whole blocks are skipped
KITCHEN = "You are in a kitchen. A knife lies on the counter, an apple on the table, a door leads north. " * 6
PROMPTS = [KITCHEN + "Action:", "A dark cellar. Exits: north, up.\nAction:", KITCHEN + "You took the knife.\nAction:"]
CANDIDATES = [
    ["take knife", "take apple", "go north", "open door", "examine apple"],
    ["go north", "go up", "look", "inventory"],
    ["cut apple with knife", "take apple", "drop knife", "go north"],
]


def max_diff(a, b) -> float:
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b))


@pytest.mark.parametrize("prefix_cache", [True, False])
def test_flex_scores_equal_dense_scores(tiny_llama, smollm_tokenizer, prefix_cache):
    kwargs = dict(prefix_cache=prefix_cache, token_budget=700)
    dense = HFPrior(tiny_llama, smollm_tokenizer, **kwargs)
    flex = HFPrior(tiny_llama, smollm_tokenizer, attention="flex", **kwargs)
    for _ in range(2):  # the second call is served (in part) from each engine's own prefix cache
        d = dense.score(PROMPTS, CANDIDATES, return_features=True)
        f = flex.score(PROMPTS, CANDIDATES, return_features=True)
        assert max_diff(d.logprobs, f.logprobs) <= 1e-4
        assert max_diff(d.raw_logprobs, f.raw_logprobs) <= 1e-4
        assert max_diff(d.features, f.features) <= 1e-4
    assert flex.forward_passes == dense.forward_passes  # same packing: only the attention differs
    # the model's own implementation is back after scoring (generation keeps its attention)
    assert tiny_llama.config._attn_implementation != FLEX_IMPLEMENTATION


def test_flex_mask_hides_other_candidates(tiny_llama, smollm_tokenizer):
    """A candidate's score must not depend on its neighbours in the row: scored alone or among others, the same."""
    flex = HFPrior(tiny_llama, smollm_tokenizer, attention="flex", prefix_cache=False)
    together = flex.score(PROMPTS[:1], CANDIDATES[:1]).raw_logprobs[0]
    alone = [flex.score(PROMPTS[:1], [[c, "look"]]).raw_logprobs[0][0] for c in CANDIDATES[0]]
    np.testing.assert_allclose(together, alone, atol=1e-4)


def test_scoring_never_hands_a_4d_mask_to_a_flash_kernel(tiny_llama):
    config = tiny_llama.config
    saved = config._attn_implementation
    try:
        config._attn_implementation = "flash_attention_2"  # as loaded with attn_implementation="flash_attention_2"
        assert scoring_implementation(tiny_llama, "dense") == "sdpa"
        assert scoring_implementation(tiny_llama, "flex") == FLEX_IMPLEMENTATION
        config._attn_implementation = "eager"
        assert scoring_implementation(tiny_llama, "dense") == "eager"
    finally:
        config._attn_implementation = saved


def test_unknown_attention_mode_is_refused(tiny_llama, smollm_tokenizer):
    with pytest.raises(ValueError, match="attention must be one of"):
        HFPrior(tiny_llama, smollm_tokenizer, attention="sparse")  # type: ignore[arg-type]
