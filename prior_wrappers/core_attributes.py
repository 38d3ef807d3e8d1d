"""How the three wrappers hold their :class:`~prior_wrappers.core.PriorCore`: the options they pass on to it
(:func:`core_options`) and the public attributes they keep in it (:class:`CoreAttributes`), so that
``wrapper.builder``, ``wrapper.invalid_action``, ... read and set the core's."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar, overload

from prior_wrappers.actions import InvalidAction
from prior_wrappers.core import PriorCore
from prior_wrappers.demonstrations import Demonstrations
from prior_wrappers.slots import SlotBuilder


def core_options(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The options a wrapper passes on to its :class:`PriorCore`: the arguments of its ``__init__`` (its
    ``locals()`` before it defines any), less the wrapper and its env. The three wrappers take the same options,
    so a new one is added to their signatures and to :class:`PriorCore`, and to nothing else."""
    return {name: value for name, value in arguments.items() if name not in ("self", "__class__", "env", "venv")}


T = TypeVar("T")


class _OnCore(Generic[T]):
    """A wrapper attribute kept in its core: reading or setting it on the wrapper reads or sets the core's."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, wrapper: None, owner: type) -> _OnCore[T]: ...
    @overload
    def __get__(self, wrapper: object, owner: type) -> T: ...
    def __get__(self, wrapper: Any, owner: type | None = None) -> Any:
        return self if wrapper is None else getattr(wrapper._core, self.name)

    def __set__(self, wrapper: Any, value: T) -> None:
        setattr(wrapper._core, self.name, value)


class CoreAttributes:
    """The public attributes the three wrappers keep in their :class:`PriorCore` (``wrapper._core``)."""

    _core: PriorCore
    builder: _OnCore[SlotBuilder] = _OnCore()
    actions: _OnCore[list[str] | None] = _OnCore()
    observation_to_text: _OnCore[Callable[[Any], str] | None] = _OnCore()
    invalid_action: _OnCore[InvalidAction] = _OnCore()
    score_terminal: _OnCore[bool] = _OnCore()
    demonstrations: _OnCore[Demonstrations | str | None] = _OnCore()
