"""prior-wrappers: an LLM action prior for text environments, as Gymnasium wrappers and SB3 algorithms."""

from prior_wrappers.demonstrations import Demonstration, Demonstrations
from prior_wrappers.encoders import CachedEncoder, HashingEncoder, SentenceEncoder, TextEncoder
from prior_wrappers.gym_vector import GymVectorLLMPrior, make_text_gym_vector_env
from prior_wrappers.priors import (
    ActionPrior,
    AdaptedPrior,
    BCPrior,
    CachedPrior,
    CommandMatcher,
    FunctionPrior,
    HFPrior,
    LoraSettings,
    OpenAIPrior,
    PriorScores,
    Proposals,
    SemanticCachedPrior,
    UniformPrior,
    fit_lora,
    load_adapter,
    save_adapter,
)
from prior_wrappers.prompts import PromptTemplate, TextState, TranscriptPrompt
from prior_wrappers.proposals import ProposalConfig
from prior_wrappers.slots import UnreachableCommandsWarning
from prior_wrappers.vec_wrappers import TextInInfo, VecLLMPrior, make_text_vec_env
from prior_wrappers.wrappers import LLMPriorWrapper

__version__ = "0.4.0"

# The text envs' Gymnasium ids ("prior_wrappers/..."), so gym.make works after `import prior_wrappers`; cheap: the
# envs' modules (and TextWorld, the JVM, minigrid) load only when an env is made. See envs/registration.py.
from envs.registration import register_envs as _register_envs  # noqa: E402

_register_envs()

__all__ = [
    "ActionPrior",
    "AdaptedPrior",
    "BCPrior",
    "LoraSettings",
    "fit_lora",
    "load_adapter",
    "save_adapter",
    "CachedEncoder",
    "Demonstration",
    "Demonstrations",
    "GymVectorLLMPrior",
    "HashingEncoder",
    "LLMPriorWrapper",
    "PromptTemplate",
    "ProposalConfig",
    "SentenceEncoder",
    "TextEncoder",
    "TextInInfo",
    "TextState",
    "TranscriptPrompt",
    "UnreachableCommandsWarning",
    "VecLLMPrior",
    "make_text_vec_env",
    "make_text_gym_vector_env",
    "CachedPrior",
    "CommandMatcher",
    "FunctionPrior",
    "HFPrior",
    "OpenAIPrior",
    "PriorScores",
    "Proposals",
    "SemanticCachedPrior",
    "UniformPrior",
]
