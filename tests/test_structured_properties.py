"""Property: every filling the slot masks allow renders (with repair) to schema-valid JSON,
and fillings of unconstrained-value slots need no repair at all."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker

from diffusion_engine.structured.compiler import CompileOptions
from diffusion_engine.structured.errors import UnsupportedSchemaError
from diffusion_engine.structured.fillers import random_allowed_filling
from diffusion_engine.structured.layout import layout_for
from diffusion_engine.structured.render import render
from diffusion_engine.structured.tiny_tokenizer import tiny_tokenizer

TOK = tiny_tokenizer()
OPTIONS = CompileOptions(max_array_slots=2, string_budget=6, open_object_slots=2)
#: open-map extras hold "any" values, whose number branch can need repair
STRUCTURAL = CompileOptions(max_array_slots=2, string_budget=6, open_object_slots=0)

names = st.sampled_from(["a", "b", "id", "x_y", "name", "k-2"])
patterns = st.sampled_from(["^[a-c]+$", "^[A-C]{2}-[0-9]{3}$", "^\\d+$", "^(x|y)z?$", "b"])
formats = st.sampled_from(["date", "date-time", "time", "email", "uuid", "ipv4"])
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-50, 50), st.text("abc", max_size=3))


@st.composite
def numeric(draw):
    schema = {"type": draw(st.sampled_from(["integer", "number"]))}
    lo = draw(st.none() | st.integers(-20, 20))
    hi = draw(st.none() | st.integers(-20, 40))
    if lo is not None:
        schema[draw(st.sampled_from(["minimum", "exclusiveMinimum"]))] = lo
    if hi is not None and (lo is None or hi > lo + 2):
        schema[draw(st.sampled_from(["maximum", "exclusiveMaximum"]))] = hi
    if draw(st.booleans()):
        schema["multipleOf"] = draw(st.sampled_from([2, 5, 0.5] if schema["type"] == "number" else [2, 3]))
    return schema


@st.composite
def stringy(draw):
    schema: dict = {"type": "string"}
    choice = draw(st.sampled_from(["plain", "length", "pattern", "format"]))
    if choice == "length":
        lo = draw(st.integers(0, 3))
        schema.update(minLength=lo, maxLength=lo + draw(st.integers(0, 4)))
    elif choice == "pattern":
        schema["pattern"] = draw(patterns)
    elif choice == "format":
        schema["format"] = draw(formats)
    if draw(st.booleans()):
        schema["type"] = ["string", "null"]
    return schema


leaves = st.one_of(
    numeric(), stringy(),
    st.just({"type": "boolean"}), st.just({"type": "null"}),
    st.lists(json_scalars, min_size=1, max_size=4, unique_by=repr).map(lambda v: {"enum": v}),
    json_scalars.map(lambda v: {"const": v}),
)


def containers(children):
    obj = st.builds(
        lambda props, req, closed: {
            "type": "object", "properties": props, "required": [k for k in props if k in req],
            **({"additionalProperties": False} if closed else {})},
        st.dictionaries(names, children, max_size=3), st.sets(names), st.booleans())
    arr = st.builds(
        lambda item, lo, extra, uniq: {"type": "array", "items": item, "minItems": lo, "maxItems": lo + extra},
        children, st.integers(0, 1), st.integers(0, 2), st.just(False))
    any_of = st.lists(children, min_size=2, max_size=3).map(lambda bs: {"anyOf": bs})
    return st.one_of(obj, arr, any_of)


schemas = st.recursive(leaves, containers, max_leaves=8)


def validator(schema):
    return Draft202012Validator(schema, format_checker=FormatChecker())


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=schemas, seed=st.integers(0, 2**16))
def test_any_allowed_filling_renders_valid_json(schema, seed):
    try:
        layout = layout_for(schema, TOK, options=OPTIONS)
    except UnsupportedSchemaError:
        return  # e.g. an unsatisfiable required member; refusal is allowed, invalid output is not
    rng = random.Random(seed)
    for _ in range(3):
        filled = random_allowed_filling(layout, rng, pad_bias=rng.random())
        value = render(layout, filled, repair=True).value
        assert validator(schema).is_valid(value), (schema, value)


structural = st.recursive(
    st.one_of(st.just({"type": "boolean"}), st.just({"type": "null"}),
              st.just({"type": "string"}), st.just({"type": ["string", "null"]}),
              st.lists(json_scalars, min_size=2, max_size=4, unique_by=repr).map(lambda v: {"enum": v})),
    containers, max_leaves=6)


@settings(max_examples=60, deadline=None)
@given(schema=structural, seed=st.integers(0, 2**16))
def test_structure_only_fillings_need_no_repair(schema, seed):
    """Gates, choices, enums, nullable and plain strings are fully decided by token masks."""
    try:
        layout = layout_for(schema, TOK, options=STRUCTURAL)
    except UnsupportedSchemaError:
        return
    rng = random.Random(seed)
    rendered = render(layout, random_allowed_filling(layout, rng, pad_bias=rng.random()))
    assert rendered.issues == []
    assert validator(schema).is_valid(rendered.value), (schema, rendered.value)


def test_strategy_reaches_every_slot_kind():
    layout = layout_for({"type": "object", "properties": {
        "a": {"anyOf": [{"type": "integer"}, {"type": "number"}]}, "b": {"type": "string"},
        "c": {"type": "array", "items": {"type": "boolean"}}}}, TOK, options=OPTIONS)
    kinds = {s.kind.value for s in layout.skeleton.slots}
    assert kinds == {"gate", "choice", "integer", "number", "string", "enum"}
