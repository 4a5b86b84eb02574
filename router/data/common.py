"""Helpers shared by the corpus templates: random picks, quoting, code blocks."""

from __future__ import annotations

import random
from typing import Callable

from router.data import vocab as V

Gen = Callable[[random.Random], tuple[str, list[dict]]]


def pick(rng: random.Random, items):
    return rng.choice(items)


def subject(rng: random.Random) -> str:
    return pick(rng, V.SUBJECTS[pick(rng, list(V.SUBJECTS))])


def quoted(rng: random.Random, text: str) -> str:
    style = rng.random()
    if style < 0.4:
        return f'"{text}"'
    if style < 0.6:
        return f"---\n{text}\n---"
    return text


def code_block(rng: random.Random, lang: str | None = None) -> tuple[str, str]:
    lang = lang or pick(rng, list(V.CODE))
    fn = pick(rng, V.FN_NAMES)
    var = pick(rng, V.VAR_NAMES)
    cap = "".join(w.title() for w in fn.split("_"))
    body = pick(rng, V.CODE[lang]).format(fn=fn, var=var, Fn=cap, Var=var.title())
    tag = V.FENCE_TAGS.get(lang, lang) if rng.random() < 0.8 else ""
    return lang, f"```{tag}\n{body}```" if rng.random() < 0.85 else body


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]
