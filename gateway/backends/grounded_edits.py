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

Grounding, in order of trust: quoted spans (``'x'``, ``"x"``, `` `x` ``, ``“x”``) are what
the user marked; without quotes, the words of the instruction are read (minus function
words and the vocabulary of editing itself). A span that occurs in the document can be
*found*; a span that does not is *new text*. The operations offered follow from that:
replace and add-a-line need new text, delete needs only something found.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

#: what the model is told when it fills an edit operation
EDIT_OP_INSTRUCTION = (
    "Turn the edit instruction into one edit operation on the document. "
    "replace: `find` is the text the instruction changes and `with` is the new text from the instruction. "
    "delete: `find` is the text to remove. "
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
line lines word words text phrase sentence paragraph document file code string
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


@dataclass(frozen=True)
class EditChoices:
    """What an instruction grounds in a document: spans to find, spans of new text, and the
    kind of edit its verb names (replace | add | delete)."""

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
        finds = [q for q in quoted if _occurs(q, document)] or [w for w in _content_words(unquoted) if _occurs(w, document)]
        texts = [q for q in quoted if q not in document] or _new_text_runs(unquoted, document)
        finds, texts = _unique(finds)[:_MAX_CHOICES], _unique(t for t in texts if t not in finds)[:_MAX_CHOICES]
        kind = next((_VERB_KINDS[w.lower()] for w in _WORD.findall(unquoted) if w.lower() in _VERB_KINDS), None)
        if kind is None:  # no edit verb: the instruction is generated as written
            return None
        choices = cls(tuple(finds), tuple(texts), kind)
        return choices if choices.operations() else None

    def operations(self) -> list[dict[str, Any]]:
        """The operations of the verb's kind that these choices ground, as JSON Schemas."""
        finds, texts = {"enum": list(self.finds)}, {"enum": list(self.texts)}
        ops: dict[str, list[dict[str, Any]]] = {"replace": [], "add": [], "delete": []}
        if self.finds and self.texts:
            ops["replace"].append(_op("replace", find=finds, **{"with": texts}))
        if self.texts:
            ops["add"] += [_op("add_last_line", line=texts), _op("add_first_line", line=texts)]
            if self.finds:
                ops["add"].append(_op("add_line_after", after=finds, line=texts))
        if self.finds:
            ops["delete"].append(_op("delete", find=finds))
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
    find = operation["find"]
    if op == "delete":
        whole_lines = re.compile(rf"^[ \t]*{re.escape(find)}[ \t]*\n?", re.MULTILINE)
        if whole_lines.search(document):
            return whole_lines.sub("", document)
        return re.sub(rf"[ \t]?{_bounded(find)}", "", document)
    return re.sub(_bounded(find), lambda _: operation["with"], document)


def instruction_of(last_user_text: str, document: str) -> str:
    """The instruction of a turn that may also carry the document itself."""
    return last_user_text.replace(document.strip(), "").strip() if document.strip() else last_user_text.strip()


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
    return [w for w in _WORD.findall(instruction) if w.lower() not in _NOT_CONTENT and len(w) > 1]


def _new_text_runs(instruction: str, document: str) -> list[str]:
    """Runs of adjacent content words absent from the document ("to Good morning" → "Good
    morning"), and each such word alone."""
    runs: list[list[str]] = [[]]
    for match in _WORD.finditer(instruction):
        word = match.group()
        fresh = word.lower() not in _NOT_CONTENT and len(word) > 1 and not _occurs(word, document)
        if fresh:
            runs[-1].append(word)
        elif runs[-1]:
            runs.append([])
    spans = [" ".join(run) for run in runs if len(run) > 1]
    return spans + [word for run in runs for word in run]


def _unique(items) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)
