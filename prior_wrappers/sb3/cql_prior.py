"""CQL-Prior: offline Q-learning with a conservative penalty over the prior's candidate actions."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Literal, TypeVar

import torch as th
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, PyTorchObs, ReplayBufferSamples
from torch.nn import functional as F

from prior_wrappers.sb3.dqn_prior import DQNPrior
from prior_wrappers.sb3.masking import masked_logsumexp
from prior_wrappers.sb3.offline_dataset import OfflineDataset
from prior_wrappers.sb3.policies import DQNPriorPolicy
from prior_wrappers.sb3.support import CandidateSupport
from prior_wrappers.spaces import PRIOR_LOGPROBS

SelfCQLPrior = TypeVar("SelfCQLPrior", bound="CQLPrior")

Conservative = Literal["logsumexp", "prior_weighted"]


def cql_penalty(
    q_values: th.Tensor,
    actions: th.Tensor,
    candidates: th.Tensor,
    include_data_action: bool = True,
    log_prior: th.Tensor | None = None,
) -> th.Tensor:
    """mean_s [ log Σ_{a ∈ S(s)} w(a|s)·exp Q(s, a) − Q(s, a_data) ], S(s) the candidate slots of s (and a_data).

    ``include_data_action=True`` (default) is standard CQL: a_data is always in S, so the term is ≥ log w(a_data|s)
    and its gradient on Q(s, a_data) is −(1 − posterior weight of a_data), which vanishes as a_data wins.
    ``False`` is the reference's form: a_data is left out, and a row whose only candidate is a_data
    contributes 0. Its gradient on Q(s, a_data) is −1 per sample whatever Q is, so the term has no minimum.

    Without ``log_prior`` the weights are w ≡ 1 (the logsumexp of CQL(H)); with it, w = p̃, the prior renormalised
    over S: log Σ_S p̃·exp Q is CQL(ρ) with the prior as ρ (the maximum over μ of E_μ[Q] − KL(μ ‖ p̃)), which
    pushes Q down where the prior puts mass. That form needs a_data in S (a row is ≥ log p̃(a_data|s)).

    :param q_values: ``(batch, K)`` Q-values of all slots.
    :param actions: ``(batch, 1)`` or ``(batch,)`` data actions.
    :param candidates: ``(batch, K)`` boolean candidate slots.
    :param include_data_action: put a_data into S.
    :param log_prior: ``(batch, K)`` prior log-probabilities for the prior-weighted form; ``None``: unweighted.
    """
    if log_prior is not None and not include_data_action:
        raise ValueError("the prior-weighted penalty keeps the data action in its set (include_data_action=True)")
    actions = actions.long().reshape(-1, 1)
    data_slot = F.one_hot(actions.squeeze(1), q_values.shape[1]).bool()
    pushed_down = candidates | data_slot if include_data_action else candidates & ~data_slot
    q_data = q_values.gather(1, actions).squeeze(1)
    if log_prior is None:
        soft_max = masked_logsumexp(q_values, pushed_down)
    else:
        # log Σ_S p̃ e^Q = logsumexp_S(Q + log p) − logsumexp_S(log p)
        soft_max = masked_logsumexp(q_values + log_prior, pushed_down) - masked_logsumexp(log_prior, pushed_down)
    gap = soft_max - q_data
    return th.where(pushed_down.any(dim=1), gap, th.zeros_like(gap)).mean()


class CQLPrior(DQNPrior):
    """CQL-Prior: conservative offline Q-learning over the LLM prior's candidate actions.

    Paper: Yan et al., "Efficient Reinforcement Learning with Large Language Model Priors", ICLR 2025
    (https://arxiv.org/abs/2410.07927). Loss = TD(max over the next state's candidates) + β·mean[log Σ over the
    candidates and a_data of w·exp Q(s, ·) − Q(s, a_data)]; evaluation is greedy over the candidates. With
    ``UniformPrior`` in the wrapper and the default candidates this is plain discrete CQL over the admissible
    commands: the baseline, same network. Train from a file with :meth:`learn_offline`; ``learn`` (online, as
    :class:`DQNPrior`) still works, e.g. for fine-tuning.

    The candidates (acted on, bootstrapped from and pushed down) are every valid slot by default; ``prior_mass=p``
    keeps the smallest set holding prior mass ≥ p (adapts to the prior's confidence), ``prior_top_k=k`` the prior's
    k best (the reference labels k = 5 LLM proposals once per state), ``prior_min_logprob`` drops what the prior
    (almost) never names. Whatever the rule, a_data is in the penalty's set (standard CQL), and every state keeps
    its prior's favourite valid slot as a candidate. These rules, ``behavior_threshold``'s included, are
    ``model.support`` (a :class:`~prior_wrappers.sb3.support.CandidateSupport`, shared with the other algorithms).

    The defaults, all valid slots and ``conservative="logsumexp"``, are CQL(H) over the policy's own action set:
    the penalty pushes down, with equal weight, every action that greedy evaluation can take, the condition of
    CQL's lower bound on that policy's value. A prior-based cut (top-k or mass) removes the actions the prior ranks
    low from the policy itself: when the prior is wrong about the data (the benchmark's ``prior_top_k=2`` lost the
    data's good action), no amount of data brings them back, unless ``behavior_threshold`` adds the data's own support
    (discrete BCQ's rule) to the candidates. ``conservative="prior_weighted"`` (log Σ p̃·exp Q) barely pushes
    down the actions the prior dislikes, so an unseen one keeps whatever Q the network extrapolates and greedy
    acting may take it; and a data action the prior dislikes is pushed up until it beats the prior's favourites
    by about −log p̃(a_data|s) (up to ~30 at ``LOGPROB_MIN``). The prior still informs the default through the
    network's input (``prior_logprobs`` is a feature of every slot). Use the prior-based options when the prior
    is trusted, e.g. with ``predict_with_prior=True``.

    Defaults are the reference's (β = 5, batch 128, 10k gradient steps) except two: the candidates (the reference
    acts among its k proposals) and the data action inside the logsumexp (standard CQL). The reference leaves it
    out (``include_data_action=False``); that objective has no minimum: the penalty pushes Q(s, a_data) up by β
    per sample at any Q, the Huber TD term pulls back by at most 1, so with β > 1 Q(s, a_data) grows without bound
    (and the ``max`` target carries it to every state); results then depend on how long one trains. Use it only
    to reproduce the reference, with its step budget. The rest as :class:`DQNPrior` (AdamW lr 5e-4, γ 0.99,
    τ 0.005 at every gradient step, gradient clip 1.0).

    :param policy: the policy model to use (``"CandidatePolicy"`` or a :class:`DQNPriorPolicy` subclass).
    :param env: a prior-wrapped env: gives the observation/action spaces, and is where the policy is evaluated.
    :param cql_weight: β, weight of the conservative term (reference: 5).
    :param include_data_action: include a_data in the logsumexp (standard CQL, default). ``False`` is the
        reference's form, which diverges for ``cql_weight > 1`` (a ``UserWarning`` says so); only with
        ``conservative="logsumexp"``.
    :param conservative: ``"logsumexp"`` (default): log Σ exp Q(s, a) over the candidates and a_data, CQL(H);
        ``"prior_weighted"``: log Σ p̃(a|s)·exp Q(s, a), p̃ the prior renormalised over the same set, CQL(ρ)
        with the prior as ρ (see above for when it fits).
    :param behavior_threshold: τ in (0, 1] to add the data's support to the candidates, as discrete BCQ does
        (Fujimoto et al., 2019): an imitation network π_b, trained by cross-entropy on the data actions next to Q,
        and every valid slot with π_b(a|s) ≥ τ·max π_b(·|s) joins the prior's candidates (acting and
        bootstrapping). A prior-based cut then never removes what the data did, however low the prior ranks it.
        ``None`` (default): the candidates are the prior's alone.
    :param batch_size: minibatch size of each gradient step (reference: 128).
    :param kwargs: every other argument of :class:`DQNPrior` (``prior_mass``, ``prior_top_k``,
        ``prior_min_logprob``, ``alpha``, ``target``, ``learning_rate``, ``gamma``, ``tau``, ``seed``, ...).
    """

    def __init__(
        self,
        policy: str | type[DQNPriorPolicy],
        env: GymEnv | str,
        cql_weight: float = 5.0,
        include_data_action: bool = True,
        conservative: Conservative = "logsumexp",
        behavior_threshold: float | None = None,
        batch_size: int = 128,
        **kwargs: Any,
    ) -> None:
        # the support checks behavior_threshold with the prior rules (ValueError), in DQNPrior's constructor
        if behavior_threshold is not None:
            kwargs["policy_kwargs"] = {**(kwargs.get("policy_kwargs") or {}), "behavior_cloning": True}
        if cql_weight < 0:
            raise ValueError(f"cql_weight must be >= 0, got {cql_weight}")
        if conservative not in ("logsumexp", "prior_weighted"):
            raise ValueError(f"conservative must be 'logsumexp' or 'prior_weighted', got {conservative!r}")
        if conservative == "prior_weighted" and not include_data_action:
            raise ValueError(
                "conservative='prior_weighted' keeps the data action in its set (include_data_action=True)"
            )
        if not include_data_action and cql_weight > 1:
            warnings.warn(
                f"include_data_action=False (the reference's CQL form) with cql_weight={cql_weight} > 1 has no "
                "minimum: Q(s, a_data) grows without bound as training goes on. Keep the gradient steps few "
                "(reference: 10k) or use include_data_action=True (standard CQL, the default).",
                UserWarning,
                stacklevel=2,
            )
        self.cql_weight = cql_weight
        self.include_data_action = include_data_action
        self.conservative = conservative
        self.behavior_threshold = behavior_threshold
        super().__init__(policy, env, batch_size=batch_size, **kwargs)

    @property
    def support(self) -> CandidateSupport:
        """DQN-Prior's support, and with ``behavior_threshold`` τ the data's: every valid slot that the behaviour
        policy takes with π_b(a|s) ≥ τ·max π_b(·|s) joins the prior's candidates."""
        return dataclasses.replace(super().support, behavior_threshold=self.behavior_threshold)

    def candidates(self, obs: PyTorchObs, behavior_logits: th.Tensor | None = None) -> th.Tensor:
        """The support's candidates; with ``behavior_threshold``, π_b from ``behavior_logits`` or, when not given,
        from a forward of the imitation network (without gradients)."""
        if self.behavior_threshold is not None and behavior_logits is None:
            with th.no_grad():
                behavior_logits = self.policy.behavior_net(obs)  # type: ignore[misc]
        return self.support.candidates(obs, behavior_logits)

    def _loss(self, replay_data: ReplayBufferSamples) -> th.Tensor:
        td_loss, q_values = self._td_loss(replay_data)
        # β · mean[ log Σ_j w_j·exp Q(s, a_j) − Q(s, a_data) ], a_j over the candidates at s (and a_data)
        obs = replay_data.observations
        behavior_logits = None
        if self.behavior_threshold is not None:  # one forward of π_b serves the candidates and its own loss
            behavior_logits = self.policy.behavior_net(obs)  # type: ignore[misc]
        candidates = self.candidates(obs, behavior_logits)
        cql_loss = cql_penalty(
            q_values,
            replay_data.actions,
            candidates,
            include_data_action=self.include_data_action,
            log_prior=obs[PRIOR_LOGPROBS] if self.conservative == "prior_weighted" else None,  # type: ignore[index]
        )
        self._record("train/td_loss", td_loss)
        self._record("train/cql_loss", cql_loss)
        loss = td_loss + self.cql_weight * cql_loss
        if behavior_logits is not None:
            # the imitation network of discrete BCQ: −mean log π_b(a_data|s), over the valid slots
            behavior_loss = F.cross_entropy(behavior_logits, replay_data.actions.long().flatten())
            self._record("train/behavior_loss", behavior_loss)
            loss = loss + behavior_loss
        return loss

    def learn_offline(
        self: SelfCQLPrior,
        dataset: OfflineDataset | str,
        gradient_steps: int = 10_000,
        batch_size: int | None = None,
        callback: MaybeCallback = None,
        log_interval: int = 1000,
        tb_log_name: str = "CQLPrior",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfCQLPrior:
        """Train on a fixed dataset; ``num_timesteps`` counts gradient steps (the x-axis of the logs).

        The model's replay buffer is replaced by one that holds the dataset and is built as ``learn`` expects
        (see :meth:`OfflineDataset.to_replay_buffer`): the model's ``n_envs``, ``replay_buffer_class`` and
        ``replay_buffer_kwargs`` (time-outs bootstrapped by default, the dataset's included), and a capacity of
        ``max(buffer_size, len(dataset))`` transitions. So ``learn(total_timesteps)`` afterwards fine-tunes online
        on the dataset and the new transitions together; these fill the room behind the dataset, then replace
        its oldest transitions first. Make ``buffer_size`` at least ``len(dataset)`` plus the online steps to
        keep the whole dataset, and mind the memory: :func:`~prior_wrappers.sb3.offline_dataset.transition_nbytes`
        bytes per transition of capacity. A dataset given as a path is loaded, copied into the buffer and
        released, so training holds one copy of it; an :class:`OfflineDataset` object stays the caller's.

        :param dataset: an :class:`OfflineDataset` or the path of one saved with ``save``.
        :param gradient_steps: number of gradient steps (reference: 10k).
        :param batch_size: minibatch size (default: the model's ``batch_size``).
        :param callback: SB3 callback(s), called after every gradient step.
        :param log_interval: write the logs every this many gradient steps.
        :param tb_log_name: name of the TensorBoard run.
        :param reset_num_timesteps: restart the step counter (and the TensorBoard run).
        :param progress_bar: show a tqdm/rich progress bar over the gradient steps.
        """
        if not isinstance(dataset, OfflineDataset):
            dataset = OfflineDataset.load(dataset)
        self.replay_buffer = dataset.to_replay_buffer(
            self.observation_space,  # type: ignore[arg-type]
            self.action_space,  # type: ignore[arg-type]
            self.device,
            prior_signature=self.prior_signature,
            buffer_size=self.buffer_size,
            n_envs=self.n_envs,
            replay_buffer_class=self.replay_buffer_class,  # type: ignore[arg-type]
            replay_buffer_kwargs=self.replay_buffer_kwargs,
        )
        n_transitions, dataset_success_rate = len(dataset), dataset.success_rate
        del dataset  # the buffer has the data: a dataset loaded from a path is not kept as a second copy
        total_timesteps, callback = self._setup_learn(
            gradient_steps, callback, reset_num_timesteps, tb_log_name, progress_bar
        )
        callback.on_training_start(locals(), globals())
        while self.num_timesteps < total_timesteps:
            self.train(gradient_steps=1, batch_size=batch_size or self.batch_size)
            self.num_timesteps += 1
            self._update_current_progress_remaining(self.num_timesteps, total_timesteps)
            self._on_step()  # Polyak update of the target network, schedules
            callback.update_locals(locals())
            if not callback.on_step():
                break
            if log_interval and self.num_timesteps % log_interval == 0:
                self.logger.record("offline/transitions", n_transitions)
                self.logger.record("offline/dataset_success_rate", dataset_success_rate)
                self.logger.dump(step=self.num_timesteps)
        callback.on_training_end()
        return self
