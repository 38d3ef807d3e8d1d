"""prior-wrappers: an LLM action prior for text environments, as Gymnasium wrappers and SB3 algorithms."""

from prior_wrappers.priors import (
    ActionPrior,
    CachedPrior,
    CommandMatcher,
    FunctionPrior,
    HFPrior,
    PriorScores,
    Proposals,
    UniformPrior,
)

__version__ = "0.1.0"

__all__ = [
    "ActionPrior",
    "CachedPrior",
    "CommandMatcher",
    "FunctionPrior",
    "HFPrior",
    "PriorScores",
    "Proposals",
    "UniformPrior",
]
