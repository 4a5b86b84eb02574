"""Schema compiler: one test per supported keyword, unsupported keywords, caching, masks."""

from __future__ import annotations

import random

import pytest
from jsonschema import Draft202012Validator, FormatChecker

from diffusion_engine.structured.compiler import CompileOptions, compile_schema
from diffusion_engine.structured.errors import UnsupportedSchemaError
from diffusion_engine.structured.fillers import filling_from_values, random_allowed_filling
from diffusion_engine.structured.layout import MASK, layout_for
from diffusion_engine.structured.render import render
from diffusion_engine.structured.skeleton import (
    ArrayNode, ChoiceNode, ConstNode, ObjectNode, SlotKind,
)
from diffusion_engine.structured.tiny_tokenizer import tiny_tokenizer


OVERLAP = CompileOptions(overlapping_one_of=True)


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def kinds(schema):
    return [s.kind for s in compile_schema(schema).slots]


def valid(schema, value):
    return Draft202012Validator(schema, format_checker=FormatChecker()).is_valid(value)


def test_object_required_and_optional_gates():
    sk = compile_schema({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}},
                         "required": ["a"], "additionalProperties": False})
    assert isinstance(sk.root, ObjectNode)
    a, b = sk.root.members
    assert a.gate is None and b.gate is not None and b.gate.kind is SlotKind.GATE
    assert [s.kind for s in sk.slots] == [SlotKind.STRING, SlotKind.INTEGER, SlotKind.GATE]


def test_required_without_property_uses_additional_properties():
    sk = compile_schema({"type": "object", "required": ["x"], "additionalProperties": {"type": "integer"}})
    assert sk.root.members[0].key == "x" and sk.root.members[0].node.slot.kind is SlotKind.INTEGER
    with pytest.raises(UnsupportedSchemaError, match="'x' is required"):
        compile_schema({"type": "object", "required": ["x"], "additionalProperties": False})


def test_array_bounds_give_gated_elements():
    sk = compile_schema({"type": "array", "items": {"type": "boolean"}, "minItems": 1, "maxItems": 3})
    assert isinstance(sk.root, ArrayNode)
    assert [e.gate is None for e in sk.root.elements] == [True, False, False]
    sk = compile_schema({"type": "array", "items": {"type": "integer"}}, CompileOptions(max_array_slots=5))
    assert len(sk.root.elements) == 5 and all(e.gate is not None for e in sk.root.elements)


def test_prefix_items_tuple():
    sk = compile_schema({"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}],
                         "items": False, "minItems": 2})
    assert [e.node.slot.kind for e in sk.root.elements] == [SlotKind.STRING, SlotKind.INTEGER]


def test_scalar_keywords_land_in_slot_constraints():
    slot = compile_schema({"type": "integer", "minimum": 1, "exclusiveMaximum": 10, "multipleOf": 3}).slots[0]
    assert slot.constraints == {"type": "integer", "minimum": 1, "exclusiveMaximum": 10, "multipleOf": 3}
    assert slot.budget == 3  # two digits + sign at most
    s = compile_schema({"type": "string", "pattern": "^[a-z]+$", "maxLength": 5, "minLength": 2}).slots[0]
    assert s.constraints["pattern"] == "^[a-z]+$" and s.budget == 5
    d = compile_schema({"type": "string", "format": "date"}).slots[0]
    assert d.fmt == "date" and d.budget == 10


def test_enum_const_boolean_null():
    assert isinstance(compile_schema({"const": {"k": 1}}).root, ConstNode)
    assert isinstance(compile_schema({"enum": ["only"]}).root, ConstNode)
    assert compile_schema({"enum": ["a", 1, None]}).slots[0].options == ("a", 1, None)
    assert compile_schema({"type": "boolean"}).slots[0].options == (True, False)
    assert compile_schema({"type": "null"}).root.value is None
    # enum values of the wrong type are dropped
    assert compile_schema({"type": "string", "enum": ["a", 2, "b"]}).slots[0].options == ("a", "b")


def test_anyof_is_a_choice_slot_and_nullable_collapses():
    sk = compile_schema({"anyOf": [{"type": "string"}, {"type": "object", "properties": {}}]})
    assert isinstance(sk.root, ChoiceNode) and sk.root.slot.kind is SlotKind.CHOICE
    nullable = compile_schema({"type": ["string", "null"]}).slots[0]
    assert nullable.kind is SlotKind.STRING and nullable.nullable
    multi = compile_schema({"type": ["string", "integer", "null"]})
    assert isinstance(multi.root, ChoiceNode) and len(multi.root.branches) == 3


def test_oneof_checks_exclusivity_only_when_branches_overlap():
    assert not compile_schema({"oneOf": [{"type": "string"}, {"type": "integer"}]}).root.exclusive
    assert not compile_schema({"oneOf": [{"const": "a"}, {"const": "b"}]}).root.exclusive
    overlapping_schema = {"oneOf": [{"type": "string"}, {"type": "string", "maxLength": 3}]}
    with pytest.raises(UnsupportedSchemaError, match="'oneOf' at /: branches may match the same value"):
        compile_schema(overlapping_schema)
    overlapping = compile_schema(overlapping_schema, OVERLAP).root
    assert overlapping.exclusive and len(overlapping.branch_schemas) == 2


def test_overlapping_oneof_renders_exactly_one_match(tok):
    schema = {"oneOf": [
        {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
        {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}},
         "required": ["a", "b"]}]}
    layout = layout_for(schema, tok, options=OVERLAP)
    rng = random.Random(0)
    flagged = 0
    for _ in range(40):
        filled = random_allowed_filling(layout, rng)
        flagged += any(i.slot.kind is SlotKind.CHOICE for i in render(layout, filled).issues)
        assert valid(schema, render(layout, filled, repair=True).value)
    # {"a": 1, "b": "x"} from branch 1 also matches the open branch 0: reported for refill,
    # and repair falls back to branch 0, whose {"a": 1} matches only branch 0
    assert flagged > 0


def test_ref_recursion_is_bounded():
    tree = {"$defs": {"node": {"type": "object", "properties": {
        "name": {"type": "string"}, "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
        "required": ["name"]}}, "$ref": "#/$defs/node"}
    shallow = compile_schema(tree, CompileOptions(recursion_depth=1))
    deep = compile_schema(tree, CompileOptions(recursion_depth=2))
    assert len(deep.slots) > len(shallow.slots)
    # depth 1: the children array exists but its elements were pruned
    children = shallow.root.members[1].node
    assert isinstance(children, ArrayNode) and children.elements == []
    with pytest.raises(UnsupportedSchemaError, match="recursion"):
        compile_schema({"$defs": {"n": {"type": "object", "properties": {"n": {"$ref": "#/$defs/n"}},
                                        "required": ["n"]}}, "$ref": "#/$defs/n"})


def test_allof_merges_objects():
    sk = compile_schema({"allOf": [
        {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
        {"properties": {"b": {"type": "integer"}}, "required": ["b"]}]})
    assert [m.key for m in sk.root.members] == ["a", "b"] and all(m.gate is None for m in sk.root.members)


@pytest.mark.parametrize("schema,keyword,pointer", [
    ({"type": "object", "properties": {"tags": {"type": "object", "propertyNames": {"maxLength": 3}}}},
     "propertyNames", "/properties/tags"),
    ({"type": "object", "properties": {"tags": {"type": "object", "dependencies": {"a": {"required": ["b"]}}}}},
     "dependencies", "/properties/tags"),
    ({"type": "array", "items": {"not": {"type": "string"}}}, "not", "/items"),
    ({"anyOf": [{"type": "string"}, {"if": {"type": "string"}}]}, "if", "/anyOf/1"),
    ({"$ref": "other.json#/x"}, "$ref", "/"),
    ({"type": "number", "exclusiveMinimum": True}, "exclusiveMinimum", "/"),
])
def test_unsupported_keyword_names_keyword_and_pointer(schema, keyword, pointer):
    with pytest.raises(UnsupportedSchemaError) as info:
        compile_schema(schema)
    assert info.value.keyword == keyword and info.value.pointer == pointer
    assert str(info.value).startswith(f"unsupported keyword '{keyword}' at {pointer}")


def test_pattern_properties_constrain_matching_declared_keys(tok):
    schema = {"type": "object", "properties": {"n_count": {"type": "integer"}, "label": {"type": "string"}},
              "patternProperties": {"^n_": {"maximum": 5}}, "required": ["n_count", "n_extra"]}
    sk = compile_schema(schema)
    assert [m.key for m in sk.root.members] == ["n_count", "label", "n_extra"]
    assert sk.root.members[0].node.slot.constraints["maximum"] == 5
    layout = layout_for(schema, tok)
    rng = random.Random(2)
    for _ in range(20):
        assert valid(schema, render(layout, random_allowed_filling(layout, rng), repair=True).value)


def test_dependent_required_members_are_always_present():
    sk = compile_schema({"type": "object", "properties": {"card": {"type": "string"}, "cvv": {"type": "string"},
                                                           "note": {"type": "string"}},
                         "dependentRequired": {"card": ["cvv"]}, "dependencies": {"note": ["card"]}})
    gates = {m.key: m.gate is not None for m in sk.root.members}
    assert gates == {"card": False, "cvv": False, "note": True}


def test_open_maps_get_model_named_members(tok):
    schema = {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}, "maxProperties": 2}
    sk = compile_schema(schema)
    assert sk.root.members == [] and len(sk.root.extras) == 2
    assert compile_schema({"type": "object", "properties": {"a": {}}}).root.extras == []
    layout = layout_for(schema, tok)
    rng = random.Random(5)
    sizes = set()
    for _ in range(30):
        value = render(layout, random_allowed_filling(layout, rng), repair=True).value
        sizes.add(len(value))
        assert valid(schema, value), value
    assert sizes == {0, 1, 2}
    # json_object mode: any object, with model-chosen keys and scalar values
    assert len(compile_schema({"type": "object"}).root.extras) == 3


def test_unsatisfiable_scalars_are_refused_or_pruned():
    impossible = {"type": "string", "pattern": "/^[0-9]{4}$/", "minLength": 4, "maxLength": 4}
    with pytest.raises(UnsupportedSchemaError, match="'pattern' at /"):
        compile_schema(impossible)
    with pytest.raises(UnsupportedSchemaError, match="'minimum' at /"):
        compile_schema({"type": "integer", "minimum": 5, "maximum": 4})
    sk = compile_schema({"type": "object", "properties": {"year": impossible, "ok": {"type": "boolean"}}})
    assert [m.key for m in sk.root.members] == ["ok"]


def test_oneof_of_untyped_branches_counts_as_overlapping():
    schema = {"oneOf": [{"type": "string"}, {"properties": {"a": {"type": "integer"}}}]}
    with pytest.raises(UnsupportedSchemaError, match="'oneOf'"):
        compile_schema(schema)  # the second branch accepts strings too


def test_malformed_schema_is_a_client_error():
    with pytest.raises(UnsupportedSchemaError, match="malformed schema"):
        compile_schema({"type": "object", "properties": {"a": {"type": "string"}}, "minProperties": "2"})


def test_compiled_skeletons_are_cached():
    schema = {"type": "object", "properties": {"q": {"type": "string"}}}
    assert compile_schema(schema) is compile_schema(dict(schema))


def test_layout_masks_are_shared_and_cached(tok):
    schema = {"type": "object", "properties": {"a": {"type": "string", "maxLength": 6},
                                                "b": {"type": "string", "maxLength": 4}}}
    layout = layout_for(schema, tok)
    assert layout is layout_for(schema, tok)
    masks = [m for m in layout.allowed if m is not None]
    assert len(masks) >= 10 and len({id(m) for m in masks}) <= 3
    for tid, m in zip(layout.token_ids, layout.allowed):
        assert (tid == MASK) == (m is not None)
    string_mask = masks[1]
    for forbidden in ['"', "\\", "<eos>"]:
        tid = tok.convert_tokens_to_ids(forbidden)
        assert not bool(string_mask[tid]), forbidden


def test_number_masks_allow_digits_and_sign_only(tok):
    layout = layout_for({"type": "integer", "minimum": 0, "maximum": 999}, tok)
    first = layout.allowed[layout.slot_positions[0][0]]
    allowed = {tok.decode([i]) for i in first.nonzero().flatten().tolist()}
    assert allowed == set("0123456789")  # no '-' when the minimum is >= 0, no pad first
    layout = layout_for({"type": "number"}, tok)
    later = layout.allowed[layout.slot_positions[0][1]]
    allowed = {tok.decode([i]) for i in later.nonzero().flatten().tolist()}
    assert allowed == set("0123456789.") | {"<pad>"}


def test_gates_collapse_members_and_elements(tok):
    schema = {"type": "object", "properties": {"a": {"type": "boolean"}, "xs": {
        "type": "array", "items": {"enum": ["p", "q"]}, "maxItems": 3}}, "additionalProperties": False}
    layout = layout_for(schema, tok)
    pad = layout.vocab.pad_id
    gates = {s.index for s in layout.skeleton.slots if s.kind is SlotKind.GATE}
    gate_positions = {layout.slot_positions[i][0] for i in gates}
    all_absent = filling_from_values(layout, lambda pos, ids: pad if pos in gate_positions else ids[0])
    assert render(layout, all_absent).value == {}
    all_present = filling_from_values(layout, lambda pos, ids: next(i for i in ids if i != pad))
    value = render(layout, all_present).value
    assert set(value) == {"a", "xs"} and len(value["xs"]) == 3 and valid(schema, value)


def test_random_fillings_render_valid_documents(tok):
    schema = {"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 8}, "n": {"type": ["integer", "null"], "maximum": 50},
        "kind": {"enum": ["x", "y", 3]}, "either": {"anyOf": [{"type": "boolean"}, {"type": "null"}]},
        "list": {"type": "array", "items": {"type": "number", "minimum": 0}, "maxItems": 2}},
        "required": ["name", "kind"], "additionalProperties": False}
    layout = layout_for(schema, tok)
    rng = random.Random(1)
    for _ in range(50):
        value = render(layout, random_allowed_filling(layout, rng), repair=True).value
        assert valid(schema, value), value
