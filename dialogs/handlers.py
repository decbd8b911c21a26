"""What each dialog module handles (its ``Handlers``), and the router of their union.

Every dialog module declares one table: the button kinds it answers (workflow/payloads.py),
the words that work anywhere, its flows (the step that takes any other message while a
person is in it), the start payloads it opens, and at most one module a fallback. The
``Routes`` made of all the tables refuse, when the service starts, two modules claiming the
same kind, word, flow or start, so nothing depends on the order modules are listed in.

One message is routed thus (the order the dialogs rely on):
1. a start goes to the module of its start payload (longest prefix; a garbled one falls
   to the next, ``START_PLAIN`` last);
2. a typed word of some module (取消, 菜单, 我的议题, 提议题, 待办…) works in every flow;
3. a pressed command (the menu, a card, a review action, the to-do list) works in every
   flow; another module's button (a topic, a joint answer, a found room) works in every
   flow but a *modal* one, whose question it answers (review: asked again);
4. anything else goes to the step of the person's flow, then to the fallback (home: a
   person without a room is searching for one);
5. what nothing took: a button is stale, anything else not understood. A button whose
   payload is garbled (``t:abc``) is not taken by its kind's module: it goes on to 4.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

from dialogs.conversation import SAY, Conversation, say
from workflow.payloads import BUTTONS, STARTS, Kind, Payload, Ref

T = TypeVar("T")

#: A step that takes the message.
Step = Callable[[Conversation], Awaitable[None]]
#: A step that may leave the message to others (False).
Taker = Callable[[Conversation], Awaitable[bool]]


@dataclass(frozen=True)
class Route:
    kind: Kind
    #: Handles the message of this payload; False when the payload is garbled.
    run: Callable[[Conversation, str], Awaitable[bool]]


@overload
def on(kind: Payload, step: Step) -> Route: ...
@overload
def on(kind: Ref[T], step: Callable[[Conversation, T], Awaitable[None]]) -> Route: ...
def on(kind: Any, step: Any) -> Route:
    """``step`` handles the payloads of ``kind``; a ``Ref``'s step gets its parsed value."""
    if isinstance(kind, Payload):

        async def fixed(conv: Conversation, payload: str) -> bool:
            await step(conv)
            return True

        return Route(kind, fixed)

    async def valued(conv: Conversation, payload: str) -> bool:
        value = kind.parse(payload)
        if value is None:
            return False
        await step(conv, value)
        return True

    return Route(kind, valued)


@dataclass(frozen=True)
class Flow:
    """The step of a flow: it takes every message no word or button took."""

    step: Step
    #: Modal: while in it, other modules' buttons (not commands) answer its question too.
    modal: bool = False
    #: The button kinds only its steps read (offered and answered within the flow).
    answers: tuple[Kind, ...] = ()
    #: Takes files (documents); elsewhere a file is answered as something not taken.
    files: bool = False


@dataclass(frozen=True)
class Handlers:
    """What one dialog module handles."""

    module: str
    #: Buttons that work in every flow.
    commands: Sequence[Route] = ()
    #: Buttons that work in every flow but a modal one.
    buttons: Sequence[Route] = ()
    #: Typed words (compared stripped) that work in every flow.
    words: Mapping[str, Step] = field(default_factory=dict)
    flows: Mapping[str, Flow] = field(default_factory=dict)
    #: Start payloads (``Ref``s of ``STARTS``).
    starts: Sequence[Route] = ()
    #: For a message nothing else took (one module at most).
    fallback: Taker | None = None


class Conflict(ValueError):
    """Two dialog modules claim the same thing."""


class Routes:
    """The union of the modules' tables, checked once (at start-up)."""

    def __init__(self, tables: Iterable[Handlers]) -> None:
        self.commands: dict[Kind, Route] = {}
        self.buttons: dict[Kind, Route] = {}
        self.words: dict[str, Step] = {}
        self.flows: dict[str, Flow] = {}
        self.starts: dict[Kind, Route] = {}
        self.fallback: Taker | None = None
        owner: dict[object, str] = {}

        def claim(what: object, name: str, module: str) -> None:
            if what in owner:
                raise Conflict(f"{name} is claimed by both {owner[what]} and {module}")
            owner[what] = module

        for table in tables:
            module = table.module
            for routes, into, registry in (
                (table.commands, self.commands, BUTTONS),
                (table.buttons, self.buttons, BUTTONS),
                (table.starts, self.starts, STARTS),
            ):
                for route in routes:
                    _registered(route.kind, registry.kinds, module)
                    claim(("kind", route.kind), f"payload kind {route.kind.name}", module)
                    into[route.kind] = route
            for word, step in table.words.items():
                claim(("word", word), f"the word {word!r}", module)
                self.words[word] = step
            for name, flow in table.flows.items():
                claim(("flow", name), f"flow {name!r}", module)
                for kind in flow.answers:
                    _registered(kind, BUTTONS.kinds, module)
                    claim(("kind", kind), f"payload kind {kind.name}", module)
                self.flows[name] = flow
            if table.fallback is not None:
                claim("fallback", "the fallback", module)
                self.fallback = table.fallback

    async def step(self, conv: Conversation) -> None:
        inbound = conv.inbound
        if inbound.kind == "start":
            await self._start(conv)
            return
        flow = self.flows.get(conv.state.flow)
        if inbound.kind == "unsupported" or (
            inbound.kind == "file" and not (flow is not None and flow.files)
        ):
            names = SAY.sections["what"]
            what = inbound.unsupported or ("document" if inbound.kind == "file" else "")
            conv.reply(say("common", "unsupported", what=names.get(what, names["other"])))
            return
        word = self.words.get(inbound.text.strip()) if inbound.kind == "text" else None
        if word is not None:
            await word(conv)
            return
        if inbound.kind == "button" and (kind := BUTTONS.kind(inbound.payload)) is not None:
            route = self.commands.get(kind)
            if route is None and not (flow is not None and flow.modal):
                route = self.buttons.get(kind)
            if route is not None and await route.run(conv, inbound.payload):
                return
        if flow is not None:
            await flow.step(conv)
        elif self.fallback is None or not await self.fallback(conv):
            conv.reply(
                say("common", "stale_button" if inbound.kind == "button" else "not_understood")
            )

    async def _start(self, conv: Conversation) -> None:
        payload = conv.inbound.payload
        for ref in STARTS.refs:  # longest prefix first
            route = self.starts.get(ref)
            if route is not None and ref.claims(payload) and await route.run(conv, payload):
                return
        conv.reply(say("common", "not_understood"))


def _registered(kind: Kind, kinds: Sequence[Kind], module: str) -> None:
    if not any(kind is k for k in kinds):
        raise Conflict(f"{module} handles {kind.name}, which is not in workflow/payloads.py")
