"""Skeleton-format training data: the adapter learns the canvases the structured engine fills."""

from __future__ import annotations

import random
from pathlib import Path

import jsonschema
import pytest
import torch

from diffusion_engine.structured.fillers import FIXED, IGNORED, TARGET, filling_for_value
from diffusion_engine.structured.layout import layout_for
from diffusion_engine.structured.render import render
from diffusion_engine.structured.skeleton import SlotKind
from diffusion_engine.structured.tiny_tokenizer import tiny_tokenizer
from diffusion_engine.training.data import skeleton_rows
from diffusion_engine.training.layout import Example, pack
from diffusion_engine.training.records import extraction_task

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"}, "age": {"type": "integer"}, "tier": {"type": "string", "enum": ["gold", "basic"]},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
        "note": {"type": ["string", "null"]}, "nick": {"type": "string"},
    },
    "required": ["name", "age", "tier", "tags", "note"],
    "additionalProperties": False,
}
MASK, PAD = 5, 0


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def chat_tok(tok):
    """The tiny tokenizer with special tokens and a chat template, as skeleton_rows needs; <extra>
    is the terminator choose_terminator picks when the pad token is an EOS id."""
    chat = tok.__class__(tokenizer_object=tok.backend_tokenizer, pad_token="<pad>", eos_token="<eos>",
                         bos_token="<bos>", additional_special_tokens=["<extra>"])
    chat.chat_template = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
    return chat


def positions(layout, pointer, kind):
    return [p for s in layout.skeleton.slots if s.pointer == pointer and s.kind is kind
            for p in layout.slot_positions[s.index]]


def test_gold_filling_renders_the_value_with_roles(tok):
    layout = layout_for(SCHEMA, tok, pad_id=PAD)
    value = {"name": "ada", "age": 36, "tier": "gold", "tags": ["x1", "y"], "note": None}
    ids, roles = filling_for_value(layout, value)
    assert render(layout, ids).value == value
    assert [r == FIXED for r in roles] == layout.fixed
    assert all(ids[p] == t for p, t in enumerate(layout.token_ids) if layout.fixed[p])
    # the absent optional member: its gate is a target (pad = absent), its value asks nothing
    gate = positions(layout, "/properties/nick", SlotKind.GATE)
    assert gate and all(roles[p] == TARGET and ids[p] == PAD for p in gate)
    assert all(roles[p] == IGNORED and ids[p] == PAD for p in positions(layout, "/properties/nick", SlotKind.STRING))
    # two tags: the third element's gate says absent, its string is ignored
    tag_strings = positions(layout, "/properties/tags/items", SlotKind.STRING)
    assert [roles[p] for p in tag_strings].count(IGNORED) == len(tag_strings) // 3
    # a short value is padded, and the pads are targets
    name = positions(layout, "/properties/name", SlotKind.STRING)
    assert [ids[p] for p in name[3:]] == [PAD] * (len(name) - 3) and all(roles[p] == TARGET for p in name)


@pytest.mark.parametrize("value", [
    {"name": "a" * 40, "age": 1, "tier": "gold", "tags": [], "note": None},  # longer than its slot
    {"name": "a", "age": 1, "tier": "silver", "tags": [], "note": None},  # not an enum option
    {"name": "a", "age": 1, "tier": "gold", "tags": [], "note": None, "extra": 1},  # undeclared key
    {"name": "a", "age": 1, "tier": "gold", "tags": ["p", "q", "r", "s"], "note": None},  # too many items
    {"name": "a", "tier": "gold", "tags": [], "note": None},  # required member missing
    {"name": "a", "age": 1.5, "tier": "gold", "tags": [], "note": None},  # not an integer
])
def test_values_that_do_not_fit_the_skeleton_give_none(tok, value):
    assert filling_for_value(layout_for(SCHEMA, tok, pad_id=PAD), value) is None


def test_fixed_text_stays_clean_and_only_targets_are_supervised():
    ex = Example(prompt_ids=(7, 8, 9), answer_ids=(10, 11, 12, 13, 14, 15),
                 roles=(FIXED, TARGET, TARGET, FIXED, IGNORED, TARGET))
    batch = pack([ex], 4, MASK, PAD, torch.Generator(), copy1_masks=[torch.ones(8, dtype=torch.bool)])
    ids = batch.input_ids[0].tolist()
    clean, copy1, copy2 = ids[3:11], ids[11:19], ids[19:27]
    assert clean == [10, 11, 12, 13, 14, 15, PAD, PAD]  # committed context holds what the answer holds
    assert copy1 == [10, MASK, MASK, 13, MASK, MASK, MASK, MASK]  # fixed text shown even at t=1
    assert copy2 == [10, 11, 12, 13, MASK, 15, MASK, MASK]  # ignored positions never shown
    assert batch.targets.tolist() == [11, 12, 15]
    for seed in range(20):  # complementary masks: each target exactly once, whatever the ratio
        b = pack([ex], 4, MASK, PAD, torch.Generator().manual_seed(seed))
        assert sorted(b.targets.tolist()) == [11, 12, 15]
    with pytest.raises(ValueError, match="roles"):
        pack([Example((7,), (10, 11), roles=(FIXED,))], 4, MASK, PAD, torch.Generator())


def test_skeleton_data_needs_the_engines_terminator():
    from diffusion_engine.training.data import build_dataset

    with pytest.raises(ValueError, match="slot_pad_id"):
        build_dataset(None, None, {"skeleton": 4}, 0, Path("/nonexistent"))


def test_synthetic_extraction_tasks_are_valid_and_grounded():
    for seed in range(200):
        a, b = extraction_task(random.Random(seed)), extraction_task(random.Random(seed))
        assert a == b
        jsonschema.validate(a.gold, a.schema)
        text = a.messages[-1]["content"]
        for value in a.gold.values():  # every stated value is in the text
            if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                assert str(value) in text


def test_skeleton_rows_are_prompts_plus_filled_canvases(chat_tok):
    tok = chat_tok
    terminator = tok.convert_tokens_to_ids("<extra>")  # as choose_terminator picks for a pad that is EOS
    rows = skeleton_rows(30, random.Random(0), tok, len(tok), terminator)
    assert rows  # the character tokenizer cannot spell every name; those records are skipped
    for row in rows:
        assert len(row["roles"]) == len(row["answer"]) and TARGET in row["roles"]
        assert tok.decode(row["answer"][:1]) == "{"
        targets = [t for t, r in zip(row["answer"], row["roles"]) if r == TARGET]
        assert terminator in targets and PAD not in row["answer"]  # slots end with the engine's terminator


def test_reuse_replays_several_configs_with_their_roles(chat_tok, tmp_path: Path):
    """``data.reuse`` takes one {config, n} or a list of them; replayed canvases keep their roles,
    and the terminator is part of the replaying config's cache key (its rows hold canvases)."""
    from types import SimpleNamespace

    import yaml

    from diffusion_engine.training.data import build_dataset

    tok = chat_tok
    model = SimpleNamespace(config=SimpleNamespace(vocab_size=len(tok)))
    base = {"distill": 0, "distill_max_new_tokens": 0, "distill_batch": 1, "json": 0, "code": 0, "edit": 0,
            "max_prompt_tokens": 4096, "max_answer_tokens": 4096}
    for name, seed in (("a", 1), ("b", 2)):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump({"seed": seed, "data": base | {"skeleton": 40}}))
    terminator = tok.convert_tokens_to_ids("<extra>")
    cache = tmp_path / "cache"
    listed = base | {"reuse": [{"config": str(tmp_path / "a.yaml"), "n": 3},
                               {"config": str(tmp_path / "b.yaml"), "n": 4}]}
    rows = build_dataset(model, tok, listed, 0, cache, terminator)
    assert len(rows) == 7 and all(r.roles is not None and len(r.roles) == len(r.answer_ids) for r in rows)
    single = base | {"reuse": {"config": str(tmp_path / "a.yaml"), "n": 3}}
    assert len(build_dataset(model, tok, single, 0, cache, terminator)) == 3
    before = set(cache.glob("examples-*.jsonl"))
    build_dataset(model, tok, listed, 0, cache, tok.convert_tokens_to_ids("<pad>"))
    assert len(set(cache.glob("examples-*.jsonl")) - before) == 3  # a, b and the list, each re-keyed
