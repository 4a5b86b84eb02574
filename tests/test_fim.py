"""Fill-in-the-middle conventions: every spelling editors send splits into the same prefix
and suffix, and text without sentinels is no infill."""

from __future__ import annotations

import pytest

from router.fim import has_markers, split_infill
from router.plan import RequestPlan
from router.shape import shape_rules

PREFIX, SUFFIX = "def add(a, b):\n    ", "\n\nprint(add(1, 2))\n"


@pytest.mark.parametrize("text,convention", [
    (f"<|fim_prefix|>{PREFIX}<|fim_suffix|>{SUFFIX}<|fim_middle|>", "fim-psm"),
    (f"<fim_prefix>{PREFIX}<fim_suffix>{SUFFIX}<fim_middle>", "fim-psm"),
    (f"<fim-prefix>{PREFIX}<fim-suffix>{SUFFIX}<fim-middle>", "fim-psm"),
    (f"<|fim_suffix|>{SUFFIX}<|fim_prefix|>{PREFIX}<|fim_middle|>", "fim-spm"),
    (f"<PRE> {PREFIX} <SUF>{SUFFIX} <MID>", "code-llama"),
    (f"<｜fim▁begin｜>{PREFIX}<｜fim▁hole｜>{SUFFIX}<｜fim▁end｜>", "deepseek"),
    (f"PREFIX:\n{PREFIX}\nSUFFIX:\n{SUFFIX}", "plain"),
])
def test_each_convention_splits_into_prefix_and_suffix(text, convention):
    infill = split_infill(text)
    assert infill is not None and infill.convention == convention
    assert (infill.prefix, infill.suffix) == (PREFIX, SUFFIX)
    assert split_infill(infill.prompt()) == type(infill)(PREFIX, SUFFIX, "fim-psm")


def test_editor_header_before_the_sentinels_is_not_code():
    infill = split_infill(f"<filename>app.py\n<|fim_prefix|>{PREFIX}<|fim_suffix|>{SUFFIX}<|fim_middle|>")
    assert infill.prefix == PREFIX


@pytest.mark.parametrize("text", ["Fill in the blank: the sky is ___.", "def f(): pass", "prefix: suffix"])
def test_text_without_sentinels_is_no_infill(text):
    assert not has_markers(text) and split_infill(text) is None


def test_router_calls_any_convention_code():
    for text in (f"<PRE> {PREFIX} <SUF>{SUFFIX} <MID>", f"<｜fim▁begin｜>{PREFIX}<｜fim▁hole｜>{SUFFIX}<｜fim▁end｜>"):
        verdict = shape_rules(RequestPlan.of({"messages": [{"role": "user", "content": text}]}))
        assert verdict.task == "code" and "fill-in-the-middle" in verdict.reasons[-1]


@pytest.mark.parametrize("text", ["\n" * 100_000, "<PRE>" * 20_000, "<|fim_prefix|>" * 8_000, "PREFIX:\n" * 12_000,
                                  " \t\n" * 30_000, "<fim_suffix>" * 8_000])
def test_reading_a_huge_adversarial_prompt_is_linear(text):
    import time

    start = time.perf_counter()
    has_markers(text)
    split_infill(text)
    assert time.perf_counter() - start < 0.5  # a quadratic search took seconds to minutes here
