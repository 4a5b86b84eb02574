"""Whether a request with tools gets tool calls or an answer: OpenAI's ``tool_choice`` semantics.

``required`` and a named function force a call. ``auto`` (or no ``tool_choice``) leaves the
choice to the model; a model that always calls loops an agent forever, so Tandem decides
here, before generation, from what can be known well:

1. the conversation state: tool results after the last user turn already answer it (an
   agent sends them back to get the answer); the same call with the same arguments made
   twice is a loop — answer;
2. relevance: does the last user turn ask for what a tool does? Word overlap between the
   turn and the tool's name and description, and, when the router's sentence embedder is
   loaded, their cosine similarity;
3. callability: a tool that needs an identifier (a required ``order_id``, ``ticket_number``,
   …) cannot be called before the conversation gives one — "do you ship to Canada, before I
   order?" mentions orders but names none. The answer then comes from what is known, or asks
   for it, as a model would; it never invents the identifier.

Generation then follows the decision: a constrained call restricted to ``tools``, or text.
Providers that choose for themselves (litellm, pass-through upstreams) get the request
unchanged; the decision binds the embedded backends.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Sequence

from router.plan import RequestPlan, message_text

#: cosine similarity (MiniLM, unit vectors) above which a turn asks for what a tool does
RELEVANCE_COSINE = 0.2
#: lower bars for tools the conversation already points at: named in the system prompt
#: ("every attack requires a roll via roll_dice"), or called in an earlier turn (follow-ups)
NAMED_IN_SYSTEM_COSINE = 0.03
CALLED_BEFORE_COSINE = 0.1
#: with a forced call, how far the closest tool must lead the next one to be chosen for the model
FORCED_MARGIN = 0.1

_STOPWORDS = frozenset(
    "a an the and or of to in on at for by with from is are was be been it its this that these those "
    "i me my you your we our he she they them what whats which who how when where why do does did can "
    "could would should will please tell get use using any some "
    "all about into as if then than so not no yes hi hello hey thanks thank there here just now".split()
)


@dataclass(frozen=True)
class ToolUse:
    """The decision for one request with tools.

    ``mode`` "call": generate tool calls, restricted to ``tools``, at most ``max_calls``
    (None: no limit); "answer": generate text. ``reason`` goes to explain and headers.
    """

    mode: Literal["call", "answer"]
    tools: tuple[str, ...]
    reason: str
    forced: bool = False
    max_calls: int | None = None

    def header(self) -> str:
        return f"{self.mode}; {self.reason}"


def _words(text: str) -> set[str]:
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", text)
    words = set()
    for word in re.findall(r"[a-zA-Z]{2,}", spaced.replace("_", " ").lower()):
        if word in _STOPWORDS:
            continue
        for suffix in ("ing", "es", "s", "ed"):  # a light stem: weather/weathers, search/searching
            if word.endswith(suffix) and len(word) - len(suffix) >= 3:
                word = word[: -len(suffix)]
                break
        words.add(word)
    return words


def tool_text(function: Mapping[str, Any]) -> str:
    """What a tool does, in words: its name and description."""
    name = str(function.get("name") or "")
    return f"{name.replace('_', ' ')}. {function.get('description') or ''}".strip()


def _calls_since_last_user(messages: Sequence[Mapping[str, Any]]) -> tuple[list[tuple[str, str]], bool]:
    """Calls (name, canonical arguments) the assistant made after the last user turn, and
    whether the conversation ends with tool results."""
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    calls: list[tuple[str, str]] = []
    for message in messages[last_user + 1:]:
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            calls.append((str(function.get("name")), _canonical(function.get("arguments"))))
    ends_with_result = bool(messages) and messages[-1].get("role") in ("tool", "function")
    return calls, ends_with_result


def _canonical(arguments: Any) -> str:
    try:
        return json.dumps(json.loads(arguments), sort_keys=True) if isinstance(arguments, str) else json.dumps(arguments, sort_keys=True)
    except (ValueError, TypeError):
        return str(arguments)


def _last_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return message_text(message)
    return ""


#: a required argument by this name is an identifier the conversation has to give
#: (not ``code``: a ``country_code`` follows from a name, a ``code`` argument is source code)
_IDENTIFIER_NAME = re.compile(r"(?:^|_)(?:id|uuid|number|no|num|sku|ref|reference)$|^(?:\w+)Id$")
#: what an identifier looks like in text: letters joined to digits ("A-12345", "TK-9",
#: "inv_0042"), a number after "#", grouped digits ("88-1204"), or four digits or more; not
#: prices, counts or ranges ("$75", "60 days", "5-9")
_IDENTIFIER_TOKEN = re.compile(r"(?<![\w-])(?:[A-Za-z]+[-_]?\d[\w-]*|#\d+|\d{2,}[-_/]\d{3,}|\d{4,})")


def identifier_arguments(function: Mapping[str, Any]) -> list[str]:
    """The required arguments of ``function`` that are identifiers (``order_id``, ``ticketNumber``)."""
    parameters = function.get("parameters") or {}
    properties = parameters.get("properties") or {}
    required = parameters.get("required") or []
    return [name for name in required if isinstance(name, str) and isinstance(properties.get(name), Mapping)
            and properties[name].get("type", "string") in ("string", "integer")
            and "enum" not in properties[name] and _IDENTIFIER_NAME.search(name)]


def conversation_gives_identifier(messages: Sequence[Mapping[str, Any]]) -> bool:
    """Whether any turn holds something identifier-like: the user's, a tool result, an earlier
    answer, or the system prompt ("the signed-in customer is C-1029")."""
    return any(_IDENTIFIER_TOKEN.search(message_text(m)) for m in messages)


def relevant_tools(turn: str, functions: Sequence[Mapping[str, Any]], embedder: Any = None,
                   context: str = "", called_before: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    """``(name, why)`` for each tool the turn asks for. ``context`` is the system prompt;
    ``called_before`` the tools called in earlier turns."""
    asked = _words(turn)
    found: list[tuple[str, str]] = []
    unmatched = []
    for function in functions:
        shared = sorted(asked & _words(tool_text(function)))
        if shared:
            found.append((str(function["name"]), f"the last user turn mentions {', '.join(shared[:3])}"))
        else:
            unmatched.append(function)
    if unmatched and embedder is not None and turn.strip():
        vectors = embedder.encode([turn] + [tool_text(f) for f in unmatched])
        for function, vector in zip(unmatched, vectors[1:]):
            name = str(function["name"])
            cosine = float(vectors[0] @ vector)
            if cosine >= RELEVANCE_COSINE:
                found.append((name, f"the last user turn is close to what it does (cos={cosine:.2f})"))
            elif name in context and cosine >= NAMED_IN_SYSTEM_COSINE:
                found.append((name, f"the system prompt names it (cos={cosine:.2f})"))
            elif name in called_before and cosine >= CALLED_BEFORE_COSINE:
                found.append((name, f"a follow-up to an earlier call (cos={cosine:.2f})"))
    return found


def closest_tool(turn: str, functions: Sequence[Mapping[str, Any]], embedder: Any) -> list[tuple[str, str]]:
    """When a call is forced and no tool clears the relevance bar: the tool closest to the
    turn, if it leads the runner-up by ``FORCED_MARGIN`` (else none: the model picks)."""
    if embedder is None or len(functions) < 2 or not turn.strip():
        return []
    vectors = embedder.encode([turn] + [tool_text(f) for f in functions])
    ranked = sorted(((float(vectors[0] @ v), str(f["name"])) for f, v in zip(functions, vectors[1:])), reverse=True)
    (best, name), (second, _) = ranked[0], ranked[1]
    if best - second < FORCED_MARGIN:
        return []
    return [(name, f"the closest tool to the last user turn (cos={best:.2f}, next {second:.2f})")]


def decide_tool_use(plan: RequestPlan, embedder: Any = None) -> ToolUse | None:
    """The decision for a request's plan; None without tools or with tool_choice none."""
    if not plan.calls_tools:
        return None
    offer = plan.tools
    assert offer is not None
    if offer.named is not None:
        return ToolUse("call", (offer.named,), f"tool_choice names {offer.named}", forced=True, max_calls=1)
    functions = offer.functions()
    choice = offer.choice
    names = tuple(str(f["name"]) for f in functions)
    max_calls = None if offer.parallel else 1
    messages = plan.messages
    if choice == "required":
        # a call is forced; with several tools, the ones the turn asks for (all when none matches)
        turn = _last_user_text(messages)
        relevant = (relevant_tools(turn, functions, embedder) or closest_tool(turn, functions, embedder)
                    if len(functions) > 1 else [])
        chosen = tuple(name for name, _ in relevant) or names
        why = f"; {chosen[0]}: {relevant[0][1]}" if relevant else ""
        return ToolUse("call", chosen, f"tool_choice=required{why}", forced=True, max_calls=max_calls)
    calls, ends_with_result = _calls_since_last_user(messages)
    if len(set(calls)) < len(calls):
        return ToolUse("answer", (), "the same tool call was already made with the same arguments")
    called = {name for name, _ in calls}
    uncalled = [f for f in functions if f["name"] not in called]
    context = " ".join(message_text(m) for m in messages if m.get("role") in ("system", "developer"))
    called_before = frozenset(str((c.get("function") or {}).get("name")) for m in messages
                              for c in m.get("tool_calls") or [])
    relevant = relevant_tools(_last_user_text(messages), uncalled, embedder, context, called_before)
    if relevant and not conversation_gives_identifier(messages):
        needs = {str(f["name"]): identifier_arguments(f) for f in uncalled}
        callable_now = [(name, why) for name, why in relevant if not needs.get(name)]
        if not callable_now:
            name = relevant[0][0]
            return ToolUse("answer", (), f"{name} needs {', '.join(needs[name])}, which the conversation "
                                         "does not give yet")
        relevant = callable_now
    if relevant:
        chosen = tuple(name for name, _ in relevant)
        return ToolUse("call", chosen, f"{chosen[0]}: {relevant[0][1]}", max_calls=max_calls)
    if ends_with_result:
        return ToolUse("answer", (), f"tool results for {', '.join(sorted(called)) or 'the calls'} answer the last user turn")
    return ToolUse("answer", (), "no tool matches the last user turn")
