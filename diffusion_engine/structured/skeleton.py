"""Tokenizer-free intermediate representation of a compiled schema.

A ``Skeleton`` is a tree of fixed structure (objects, arrays, constants) whose holes are
typed ``Slot``s. Every decision a left-to-right parser would make is itself a slot, so a
diffusion model can settle all of them jointly on one canvas:

* ``GATE``   -- one position; the pad token means "absent" (optional property, array
  element beyond ``minItems``), the gate's own marker token means "present".
* ``CHOICE`` -- one position picking an ``anyOf`` branch / a type of a multi-type schema.
* ``STRING`` / ``INTEGER`` / ``NUMBER`` -- ``budget`` value positions; pads after the value
  keep it compact and are stripped when rendering. A ``nullable`` value slot may collapse
  to ``null`` through its first position.
* ``ENUM``   -- whole alternatives (also booleans): the filled tokens select one option.

``layout.py`` turns a skeleton into canvas positions for one tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Iterator, Union


class SlotKind(str, Enum):
    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    ENUM = "enum"
    GATE = "gate"
    CHOICE = "choice"


@dataclass(eq=False)
class Slot:
    index: int
    kind: SlotKind
    #: JSON pointer of the schema node this slot answers (errors, stats, repair messages)
    pointer: str
    #: the scalar keywords the value must satisfy (checked per slot before whole-document validation)
    constraints: dict[str, Any] = field(default_factory=dict)
    #: value positions for STRING/INTEGER/NUMBER
    budget: int = 1
    #: ENUM: the JSON values; CHOICE: one label per branch
    options: tuple[Any, ...] = ()
    nullable: bool = False
    #: string ``format`` (selects a narrower character set and a repair value)
    fmt: str | None = None
    #: GATE: text of the "present" marker token (the pad token means absent)
    marker: str = ","


@dataclass(eq=False)
class ValueNode:
    slot: Slot


@dataclass(eq=False)
class ConstNode:
    value: Any


@dataclass(eq=False)
class Member:
    key: str
    node: "Node"
    #: None for required properties
    gate: Slot | None


@dataclass(eq=False)
class ExtraMember:
    """A model-named property of an open object: gate, key (a STRING slot), value."""

    key: Slot
    node: "Node"
    gate: Slot


@dataclass(eq=False)
class ObjectNode:
    members: list[Member]
    #: open objects without declared properties (maps, ``json_object``): model-named keys
    extras: list[ExtraMember] = field(default_factory=list)


@dataclass(eq=False)
class Element:
    node: "Node"
    #: None for the first ``minItems`` elements
    gate: Slot | None


@dataclass(eq=False)
class ArrayNode:
    elements: list[Element]
    unique: bool = False
    min_items: int = 0


@dataclass(eq=False)
class ChoiceNode:
    slot: Slot
    branches: list["Node"]
    #: oneOf whose branches may overlap: the rendered value must match exactly one of
    #: ``branch_schemas`` (all branches, pruned ones included), checked when rendering
    exclusive: bool = False
    branch_schemas: tuple[Any, ...] = ()


Node = Union[ValueNode, ConstNode, ObjectNode, ArrayNode, ChoiceNode]


@dataclass(eq=False)
class Skeleton:
    root: Node
    slots: list[Slot]
    #: the original schema (whole-document validation)
    schema: Any
    digest: str

    def walk(self) -> Iterator[Node]:
        stack: list[Node] = [self.root]
        while stack:
            node = stack.pop()
            yield node
            if isinstance(node, ObjectNode):
                stack.extend(x.node for x in reversed(node.extras))
                stack.extend(m.node for m in reversed(node.members))
            elif isinstance(node, ArrayNode):
                stack.extend(e.node for e in reversed(node.elements))
            elif isinstance(node, ChoiceNode):
                stack.extend(reversed(node.branches))
