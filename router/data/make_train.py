"""Generate the synthetic routing corpus ``router/data/train.jsonl``.

    python -m router.data.make_train [--n-per-label 500] [--seed 7]

Rows look like the evaluation rows: ``{"id", "label", "request", "source"}`` where
``request`` is an OpenAI chat-completion body. Content labels (chat, structured, edit,
code) come from templates over many domains, phrasings and a few languages, including
hard negatives (explain JSON Schema = chat, a poem about YAML = chat, summarising a text =
chat, an opinion on a text = chat, explaining what code does = chat, a JSON wrapper
around code = code, a spelling fix returned as JSON = edit). tool_call is decided by the
request shape alone, so it has no rows here.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from router.data.common import Gen, pick
from router.data.prose_templates import (chat_about_text, chat_advice, chat_agent_brief,
                                         chat_brainstorm, chat_cjk, chat_code_question,
                                         chat_creative, chat_explain, chat_followup, chat_formats, chat_howto,
                                         chat_lang_opinion,
                                         chat_multilingual, chat_tech_concept, struct_classify,
                                         struct_extract, struct_followup, struct_generate,
                                         struct_multilingual)
from router.data.short_templates import (chat_greeting, chat_short_ack, chat_short_ask, chat_short_creative,
                                         chat_short_followup, chat_short_multilingual, code_short, edit_short,
                                         edit_short_followup)
from router.data.task_templates import (code_fix, code_followup, code_how_do_i, code_howto,
                                        code_multilingual,
                                        code_transform, code_write, edit_cjk, edit_fix,
                                        edit_followup, edit_length, edit_multilingual,
                                        edit_rewrite, edit_transform)

OUT = Path(__file__).resolve().parent / "train.jsonl"

GENERATORS: dict[str, list[Gen]] = {
    # a generator listed twice is drawn twice as often: turns that carry a passage or
    # follow earlier turns are where chat is most easily confused with edit and code.
    "chat": [chat_explain, chat_advice, chat_brainstorm, chat_creative, chat_about_text,
             chat_about_text, chat_tech_concept, chat_code_question, chat_multilingual,
             chat_multilingual, chat_followup, chat_followup, chat_formats, chat_agent_brief,
             chat_cjk, chat_lang_opinion, chat_howto,
             # short everyday turns, in every register (router/data/short_templates.py)
             chat_greeting, chat_short_ask, chat_short_ask, chat_short_creative, chat_short_multilingual,
             chat_short_ack, chat_short_followup],
    "structured": [struct_extract, struct_generate, struct_classify, struct_followup, struct_multilingual],
    "edit": [edit_rewrite, edit_fix, edit_length, edit_transform, edit_followup, edit_multilingual, edit_cjk,
             edit_short, edit_short_followup],
    "code": [code_write, code_fix, code_transform, code_followup, code_howto, code_how_do_i,
             code_multilingual, code_short],
}
SYSTEMS = ["You are a helpful assistant.", "You help the staff of a small company.",
           "Answer concisely.", "You are an assistant for a newsroom.", "You are a coding assistant."]


def wrap(rng: random.Random, messages: list[dict]) -> dict:
    """Dress messages as a request body with the optional fields clients send."""
    if rng.random() < 0.5:
        messages = [{"role": "system", "content": pick(rng, SYSTEMS)}, *messages]
    req: dict = {"model": "auto", "messages": messages}
    if rng.random() < 0.4:
        req["temperature"] = round(rng.uniform(0, 1), 1)
    if rng.random() < 0.4:
        req["stream"] = True
    return req


def build(n_per_label: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows, seen = [], set()
    for label, gens in GENERATORS.items():
        made, tries = 0, 0
        while made < n_per_label and tries < n_per_label * 20:
            tries += 1
            source, messages = pick(rng, gens)(rng)
            key = json.dumps(messages)
            if key in seen:
                continue
            seen.add(key)
            rows.append({"label": label, "source": source,
                         "request": wrap(rng, messages)})
            made += 1
    for i, row in enumerate(rows):
        row["id"] = f"t{i:05d}"
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-per-label", type=int, default=500)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    rows = build(args.n_per_label, args.seed)
    with args.out.open("w") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["label"]] = counts.get(r["label"], 0) + 1
    print(f"wrote {len(rows)} rows to {args.out}: {counts}")


if __name__ == "__main__":
    main()
