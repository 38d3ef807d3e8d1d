"""Where a prior comes from: one protocol, several implementations."""

from prior_wrappers.priors.adaptation import AdaptedPrior, LoraSettings, fit_lora, load_adapter, save_adapter
from prior_wrappers.priors.base import ActionPrior, Normalization, PriorScores, Proposals
from prior_wrappers.priors.behavior_cloning import BCPrior
from prior_wrappers.priors.cached import CachedPrior
from prior_wrappers.priors.hf import HFPrior
from prior_wrappers.priors.matching import CommandMatcher, normalize_command
from prior_wrappers.priors.remote import OpenAIPrior
from prior_wrappers.priors.semantic import SemanticCachedPrior, split_prompt
from prior_wrappers.priors.simple import FunctionPrior, UniformPrior

__all__ = [
    "ActionPrior",
    "AdaptedPrior",
    "BCPrior",
    "LoraSettings",
    "fit_lora",
    "load_adapter",
    "save_adapter",
    "CachedPrior",
    "CommandMatcher",
    "FunctionPrior",
    "HFPrior",
    "Normalization",
    "OpenAIPrior",
    "PriorScores",
    "Proposals",
    "SemanticCachedPrior",
    "UniformPrior",
    "normalize_command",
    "split_prompt",
]
