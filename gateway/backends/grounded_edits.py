"""Predicted Outputs as grounded edit operations.

A request with a ``prediction`` asks for the predicted document back, edited as the last
user turn says. A small embedded model asked to write the whole document again copies it
through unchanged or drops lines. What it can do is *pick*: which text of the document
the instruction names, and which text of the instruction goes in its place. So when the
instruction grounds an edit, the model fills one edit operation whose every string is an
``enum`` of spans taken from the document or the instruction (nothing is written free),
and the gateway applies it to the document verbatim — the rest comes back whole by
construction. Instructions that ground nothing ("make it more formal") are generated as
before.

The instruction's first edit verb names the kind of edit (rename/change/replace → replace;
add/insert/append → a new line at the end, at the top or after a line; remove/delete → the
text, or its whole line when a line, statement or sentence is named); the model never picks
the kind, only the spans. Spans, in order of trust: quoted spans (``'x'``, ``"x"``, `` `x` ``,
``“x”``) are what the user marked; without quotes, the instruction's content words (minus
function words and the vocabulary of editing itself) that occur in the document are what to
find, and the new text is the phrase after the last "to"/"with"/"by"/"for" of a replace or
after the colon of an addition. An instruction with no edit verb, or without the spans its
kind needs ("add type hints" names no text to add; "change the name to uppercase" or "turn
the list into a table" describe the new text instead of giving it), grounds nothing.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any, Sequence

from router.plan import RequestPlan, message_text

#: what the model is told when it fills an edit operation
EDIT_OP_INSTRUCTION = (
    "Turn the edit instruction into one edit operation on the document. "
    "replace: `find` is the text the instruction changes and `with` is the new text from the instruction. "
    "delete: `find` is the text to remove. delete_line: the line with `containing` is removed. "
    "add_last_line: `line` is the new line to add at the end. add_first_line: `line` is the new first line. "
    "add_line_after: `line` goes after the line with `after`.")

_QUOTED = re.compile(r"`([^`\n]+)`|\"([^\"\n]+)\"|“([^”\n]+)”|(?<!\w)'([^'\n]+)'(?!\w)")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: words that say how to edit, not what: never a span to find or to insert
_NOT_CONTENT = frozenset("""
a an the to from with into in on at of for by and or as is be it its this that these those
please can could would you your me my i we our
rename change replace swap substitute turn make set update edit modify fix correct use
add insert append prepend put include write remove delete drop cut strip omit
line lines word words text phrase sentence sentences statement statements paragraph document file code string
function method variable class parameter argument field
end start beginning top bottom last first new old instead every all each
""".split())
_MAX_CHOICES = 24


#: the verb of an instruction names the kind of edit; the model then only picks the spans
_VERB_KINDS = {
    **dict.fromkeys("rename change replace swap substitute turn set update correct fix".split(), "replace"),
    **dict.fromkeys("add insert append prepend put include write".split(), "add"),
    **dict.fromkeys("remove delete drop cut strip omit".split(), "delete"),
}
#: units of text that a deletion takes whole: "delete the print statement" removes its line
_LINE_UNITS = frozenset("line lines statement statements sentence sentences call calls import imports".split())


@dataclass(frozen=True)
class EditChoices:
    """What an instruction grounds in a document: spans to find, spans of new text, and the
    kind of edit its verb names (replace | add | delete | delete_line: a deletion of a line-like
    unit, "the print statement")."""

    finds: tuple[str, ...]
    texts: tuple[str, ...]
    kind: str

    @classmethod
    def of(cls, instruction: str, document: str) -> "EditChoices | None":
        """The grounded choices, or None when the instruction grounds no edit operation."""
        quoted = [next(g for g in m.groups() if g is not None).strip() for m in _QUOTED.finditer(instruction)]
        quoted = [q for q in quoted if q]
        # words inside a quoted span belong to that span: only the unquoted rest is read for words
        unquoted = _QUOTED.sub(" | ", instruction)
        kind = next((_VERB_KINDS[w.lower()] for w in _WORD.findall(unquoted) if w.lower() in _VERB_KINDS), None)
        if kind is None:  # no edit verb: the instruction is generated as written
            return None
        finds = [q for q in quoted if _occurs(q, document)] or [w for w in _content_words(unquoted) if _occurs(w, document)]
        texts = [q for q in quoted if q not in document] or _unquoted_new_text(kind, unquoted, document)
        finds, texts = _unique(finds)[:_MAX_CHOICES], _unique(t for t in texts if t not in finds)[:_MAX_CHOICES]
        if kind == "delete" and any(w.lower() in _LINE_UNITS for w in _WORD.findall(unquoted)):
            kind = "delete_line"
        choices = cls(tuple(finds), tuple(texts), kind)
        return choices if choices.operations() else None

    def operations(self) -> list[dict[str, Any]]:
        """The operations of the verb's kind that these choices ground, as JSON Schemas."""
        finds, texts = {"enum": list(self.finds)}, {"enum": list(self.texts)}
        ops: dict[str, list[dict[str, Any]]] = {"replace": [], "add": [], "delete": [], "delete_line": []}
        if self.finds and self.texts:
            ops["replace"].append(_op("replace", find=finds, **{"with": texts}))
        if self.texts:
            ops["add"] += [_op("add_last_line", line=texts), _op("add_first_line", line=texts)]
            if self.finds:
                ops["add"].append(_op("add_line_after", after=finds, line=texts))
        if self.finds:
            ops["delete"].append(_op("delete", find=finds))
            ops["delete_line"].append(_op("delete_line", containing=finds))
        return ops[self.kind]

    def schema(self) -> dict[str, Any]:
        """One JSON Schema for the grounded operations."""
        ops = self.operations()
        return ops[0] if len(ops) == 1 else {"anyOf": ops}


def apply_edit(operation: dict[str, Any], document: str) -> str:
    """``document`` with ``operation`` (one of :meth:`EditChoices.operations`) applied."""
    op = operation["op"]
    ending = "\n" if document.endswith("\n") else ""
    if op == "add_first_line":
        return f"{operation['line']}\n{document}"
    if op == "add_last_line":
        body = document.rstrip("\n")
        return f"{body}\n{operation['line']}{ending}" if body else f"{operation['line']}{ending}"
    if op == "add_line_after":
        lines = document.split("\n")
        at = next(i for i, line in enumerate(lines) if re.search(_bounded(operation["after"]), line))
        return "\n".join([*lines[: at + 1], operation["line"], *lines[at + 1:]])
    if op == "delete_line":
        pattern = re.compile(_bounded(operation["containing"]))
        return "".join(line for line in document.splitlines(keepends=True) if not pattern.search(line))
    find = operation["find"]
    if op == "delete":
        whole_lines = re.compile(rf"^[ \t]*{re.escape(find)}[ \t]*\n?", re.MULTILINE)
        if whole_lines.search(document):
            return whole_lines.sub("", document)
        return re.sub(rf"[ \t]?{_bounded(find)}", "", document)
    return re.sub(_bounded(find), lambda _: operation["with"], document)


@dataclass(frozen=True)
class EditedDocument:
    """The answer to a Predicted Output from a grounded edit: the edited document, cut at
    ``max_tokens`` when it is longer (``finish`` "length", as OpenAI answers)."""

    text: str
    tokens: int
    finish: str
    #: ``usage.completion_tokens_details``: the prediction's tokens kept and not kept
    details: dict[str, int]


@dataclass(frozen=True)
class GroundedEdit:
    """A Predicted Output request answered by one grounded edit operation: what the model is
    asked (:meth:`messages`, :meth:`schema`) and how its answer becomes the document."""

    document: str
    instruction: str
    choices: EditChoices

    @classmethod
    def of(cls, plan: RequestPlan, instruction: str | None = None) -> "GroundedEdit | None":
        """The grounded edit a request asks for, or None (no prediction, or nothing grounded).
        ``instruction``: the request's :func:`edit_instruction`, when the caller has it."""
        if plan.prediction is None:
            return None
        instruction = edit_instruction(plan) if instruction is None else instruction
        choices = EditChoices.of(instruction, plan.prediction)
        return cls(plan.prediction, instruction, choices) if choices is not None else None

    def messages(self) -> list[dict[str, str]]:
        return [{"role": "system", "content": EDIT_OP_INSTRUCTION},
                {"role": "user", "content": f"{self.instruction}\n\nDocument:\n{self.document}"}]

    def schema(self) -> dict[str, Any]:
        return self.choices.schema()

    def token_budget(self, tokenizer: Any) -> int:
        """``max_tokens`` for the operation: its longest span twice (a replace holds two),
        and room for the JSON around them."""
        spans = (*self.choices.finds, *self.choices.texts)
        return 2 * max(len(tokenizer.encode(span, add_special_tokens=False)) for span in spans) + 32

    def allows(self, operation: Any) -> bool:
        """Whether ``operation`` is one the schema allows (a constrained decoder's output is
        checked, not trusted)."""
        from jsonschema import Draft202012Validator

        return Draft202012Validator(self.schema()).is_valid(operation)

    def apply(self, operation: dict[str, Any]) -> str:
        return apply_edit(operation, self.document)

    def answer(self, operation: dict[str, Any], tokenizer: Any, max_tokens: int | None) -> EditedDocument:
        """The document with ``operation`` applied, as the answer to the request."""
        text = self.apply(operation)
        tokens = tokenizer.encode(text, add_special_tokens=False)
        finish = "stop"
        if max_tokens and len(tokens) > max_tokens:
            tokens, finish = tokens[:max_tokens], "length"
            text = tokenizer.decode(tokens)
        predicted = tokenizer.encode(self.document, add_special_tokens=False)
        return EditedDocument(text, len(tokens), finish, prediction_details(predicted, tokens))


def edit_instruction(plan: RequestPlan) -> str:
    """The instruction of a Predicted Output request: its last turn, without the document
    when the turn carries that too; when the turn is only the document, the system prompt's
    (``system: "Rename greet to welcome."``, ``user: <the code>``)."""
    document = (plan.prediction or "").strip()
    for roles in (None, ("system", "developer")):
        turns = [m for m in plan.messages if roles is None or m.get("role") in roles]
        text = message_text(turns[-1]) if turns else ""
        instruction = (text.replace(document, "") if document else text).strip()
        if instruction:
            return instruction
    return ""


def prediction_details(predicted: Sequence[int], answer: Sequence[int]) -> dict[str, int]:
    """OpenAI's ``completion_tokens_details`` for a Predicted Output: the prediction's tokens
    that the answer kept, and those it did not."""
    matcher = difflib.SequenceMatcher(a=list(predicted), b=list(answer), autojunk=False)
    accepted = sum(block.size for block in matcher.get_matching_blocks())
    return {"accepted_prediction_tokens": accepted, "rejected_prediction_tokens": len(predicted) - accepted}


def _op(name: str, **fields: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": {"op": {"const": name}, **fields},
            "required": ["op", *fields], "additionalProperties": False}


def _bounded(span: str) -> str:
    """A pattern for ``span`` that does not match inside a longer word (``greet`` ≠ ``greeting``)."""
    head = r"(?<!\w)" if re.match(r"\w", span) else ""
    tail = r"(?!\w)" if re.search(r"\w$", span) else ""
    return f"{head}{re.escape(span)}{tail}"


def _occurs(span: str, document: str) -> bool:
    return re.search(_bounded(span), document) is not None


def _content_words(instruction: str) -> list[str]:
    return [w for w in _WORD.findall(instruction) if w.lower() not in _NOT_CONTENT]


def _unquoted_new_text(kind: str, instruction: str, document: str) -> list[str]:
    """New text an unquoted instruction names: for a replace, the words after its last
    "to"/"with"/"into"/"by"/"for" ("rename greet to welcome"); for an addition, what follows
    a colon ("add a last line: Then it rained."). A description ("add type hints") names none."""
    if kind == "add":
        _, colon, rest = instruction.partition(":")
        return [rest.strip()] if colon and rest.strip() and rest.strip() not in document else []
    if kind != "replace":
        return []
    targets = list(_TARGET.finditer(instruction))
    if not targets:
        return []
    phrase = re.split(r"[;!?\n|]|[.,](?:\s|$)", instruction[targets[-1].end():])[0].strip()
    literal = phrase and phrase.split()[0].lower() not in _DESCRIPTION_HEADS
    return [phrase] if literal and len(phrase.split()) <= 8 and not _occurs(phrase, document) else []


_TARGET = re.compile(r"(?<!\w)(?:to|with|into|by|for)\s+", re.IGNORECASE)
#: how a description of the new text starts ("to uppercase", "into a table", "with something
#: shorter"): it names no literal text, so it grounds no replace (quote literal text that does)
_DESCRIPTION_HEADS = frozenset("""
a an the some something more less much very be use make its their
uppercase lowercase upper lower capitals capital caps camelcase camel snake_case snake kebab title
plural singular past present future passive active bold italic
""".split())


def _unique(items) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)
