"""Offline training data shaped like Tandem's routes; cached under ``runs/data/``.

Four sources, all generated on this machine, none from ``shared/eval/``:

* ``distill``: instructions built from templates x topics, answered by
  SmolLM2-135M-Instruct itself (greedy, batched). The denoiser learns the AR model's
  own distribution, which is what "fluency = AR perplexity" measures.
* ``json``: synthetic records described in prose, to be extracted against a schema.
* ``code``: Python functions from the local stdlib with a span of lines cut out;
  the answer is the missing span.
* ``edit``: deterministic text edits (replace / delete a word, case changes, typo fixes)
  applied to sentences of the distilled answers.
* ``skeleton``: synthetic extraction requests (``records.py``) whose answer is the exact
  canvas the structured-output engine fills: the schema's skeleton with every value
  written into its slot and padded. Skeleton text is given (never masked, never a
  target); slot tokens, pads after short values and gates are targets.
* ``reuse``: ``{config: other.yaml, n: N}`` (or a list of them) takes N examples of another
  config's data set (built, or loaded from its cache), so a later phase replays earlier data.

Every example is ``(prompt_ids, answer_ids)`` where the prompt is the chat template with
the generation header and the answer ends with ``<|im_end|>`` (skeleton answers end with
the canvas, as at inference, and carry a role per token).
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import random
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from diffusion_engine.structured.errors import UnsupportedSchemaError
from diffusion_engine.structured.fillers import filling_for_value
from diffusion_engine.structured.layout import layout_for
from diffusion_engine.training.layout import Example
from diffusion_engine.training.records import extraction_task

log = logging.getLogger(__name__)

STDLIB = Path("/root/.pyenv/versions/3.11.7/lib/python3.11")

TOPICS = [
    "photosynthesis", "the water cycle", "compound interest", "black holes", "the French Revolution",
    "machine learning", "volcanoes", "the human heart", "recycling", "time management", "bread baking",
    "electric cars", "the moon landing", "honey bees", "cloud computing", "meditation", "earthquakes",
    "the Roman Empire", "solar panels", "vaccines", "chess openings", "rainforests", "the stock market",
    "public speaking", "coffee brewing", "DNA", "plate tectonics", "password security", "gardening",
    "the printing press", "ocean tides", "renewable energy", "sleep hygiene", "the internet",
    "climate change", "learning a new language", "budgeting", "dinosaurs", "the immune system",
    "3D printing", "rainbows", "marathon training", "the Great Wall of China", "composting",
    "quantum computers", "healthy breakfasts", "job interviews", "wind turbines", "birds migrating",
    "the Renaissance", "smartphones", "friendship", "teamwork", "volunteering", "the solar system",
    "magnets", "pizza", "libraries", "bicycles", "mountain hiking", "writing a resume",
]
TEMPLATES = [
    "Explain {t} in simple terms.", "Write a short paragraph about {t}.", "Give three tips about {t}.",
    "What are the main benefits of {t}?", "Describe {t} to a ten-year-old.", "Why is {t} important?",
    "List some interesting facts about {t}.", "Write a haiku about {t}.", "Summarize the history of {t}.",
    "What are common misconceptions about {t}?", "Write a short story involving {t}.",
    "How does {t} work?", "Compare {t} with something similar.", "Write a tweet about {t}.",
    "What should a beginner know about {t}?", "Give a one-sentence definition of {t}.",
]

# Phase 3's fresh instructions: new topics with every template, and new templates with the old topics,
# so none repeats a base instruction (greedy answers to a repeated one would be duplicates).
MORE_TOPICS = [
    "glaciers", "the Olympic Games", "electricity", "coral reefs", "the Industrial Revolution", "yoga",
    "spreadsheets", "penguins", "credit scores", "the Silk Road", "robots", "wildfires", "museums",
    "hydropower", "first aid", "the periodic table", "origami", "deserts", "email etiquette", "jazz music",
    "antibiotics", "the Amazon river", "tea ceremonies", "satellites", "open source software", "owls",
    "inflation", "camping", "the pyramids of Giza", "vertical farming", "hurricanes", "typing skills",
    "board games", "the metric system", "lighthouses", "podcasts", "nutrition labels", "octopuses",
    "the Moon", "carbon footprints", "photography", "ancient Greece", "remote work", "trains",
    "fermentation", "tornadoes", "mushrooms", "the Eiffel Tower", "electric guitars", "recipes for soup",
    "coding interviews", "wolves", "batteries", "the Arctic", "minimalism", "elections", "sunscreen",
    "the Mars rovers", "kindness", "city parks",
]
MORE_TEMPLATES = [
    "What is {t}?", "Tell me about {t}.", "Write two sentences about {t}.", "Give an example of {t}.",
    "What are the pros and cons of {t}?", "Explain {t} in three steps.", "Write a short poem about {t}.",
    "What is the future of {t}?", "How can I learn more about {t}?", "Write a fun fact about {t}.",
    "Describe {t} in one paragraph.", "What are the key ideas behind {t}?",
    "Write a short email to a friend about {t}.", "What questions do people often ask about {t}?",
]
INSTRUCTION_POOLS = ("base", "fresh")

FIRST = ["Alice", "Bob", "Carmen", "Deepak", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemi", "Liam"]
LAST = ["Smith", "Garcia", "Okafor", "Tanaka", "Muller", "Rossi", "Nguyen", "Kowalski", "Silva", "Haddad"]
CITIES = ["Lisbon", "Toronto", "Nairobi", "Osaka", "Berlin", "Lima", "Austin", "Seoul", "Oslo", "Pune"]
JOBS = ["nurse", "teacher", "engineer", "baker", "pilot", "designer", "chemist", "lawyer", "farmer"]
PRODUCTS = ["desk lamp", "water bottle", "backpack", "keyboard", "teapot", "running shoes", "headphones"]
CATEGORIES = ["home", "sports", "electronics", "kitchen", "office"]
EVENTS = ["book club", "team offsite", "charity run", "product launch", "jazz night", "code review"]
WORDS_SWAP = {"big": "large", "quick": "fast", "happy": "glad", "small": "tiny", "important": "crucial",
              "good": "great", "help": "assist", "use": "employ", "show": "display", "make": "create"}


@dataclass(frozen=True)
class TextPair:
    source: str
    instruction: str
    answer: str


def make_instructions(n: int, rng: random.Random, pool: str = "base") -> list[str]:
    """``base``: the 976 template x topic instructions of phases 1-2; ``fresh``: only combinations
    with a new topic or a new template (2,654), disjoint from ``base``."""
    if pool not in INSTRUCTION_POOLS:
        raise ValueError(f"data.distill_pool: unknown pool {pool!r}; use one of {', '.join(INSTRUCTION_POOLS)}")
    base = [tpl.format(t=t) for tpl in TEMPLATES for t in TOPICS]
    if pool == "base":
        combos = base
    else:
        seen = set(base)
        combos = [tpl.format(t=t) for tpl in TEMPLATES + MORE_TEMPLATES for t in TOPICS + MORE_TOPICS]
        combos = [c for c in combos if c not in seen]
    rng.shuffle(combos)
    return combos[:n]


def _person(rng):
    name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
    rec = {"name": name, "age": rng.randint(19, 79), "city": rng.choice(CITIES),
           "occupation": rng.choice(JOBS), "email": f"{name.split()[0].lower()}{rng.randint(1, 99)}@example.com"}
    texts = [
        f"{name} is a {rec['age']}-year-old {rec['occupation']} living in {rec['city']}. "
        f"You can reach them at {rec['email']}.",
        f"Contact: {rec['email']}. Our {rec['occupation']}, {name}, aged {rec['age']}, is based in {rec['city']}.",
        f"Meet {name} from {rec['city']}! At {rec['age']}, {name.split()[0]} works as a {rec['occupation']} "
        f"(email {rec['email']}).",
    ]
    types = {"name": "string", "age": "integer", "city": "string", "occupation": "string", "email": "string"}
    return rec, rng.choice(texts), types


def _product(rng):
    rec = {"product": rng.choice(PRODUCTS), "price": round(rng.uniform(3, 300), 2),
           "in_stock": rng.random() < 0.6, "category": rng.choice(CATEGORIES)}
    stock = "available now" if rec["in_stock"] else "currently sold out"
    texts = [
        f"The {rec['product']} in our {rec['category']} range costs ${rec['price']} and is {stock}.",
        f"{rec['category'].title()} deal: {rec['product']} for ${rec['price']} ({stock}).",
    ]
    types = {"product": "string", "price": "number", "in_stock": "boolean", "category": "string"}
    return rec, rng.choice(texts), types


def _event(rng):
    rec = {"event": rng.choice(EVENTS), "city": rng.choice(CITIES),
           "date": f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}", "attendees": rng.randint(3, 400)}
    texts = [
        f"The {rec['event']} takes place in {rec['city']} on {rec['date']}, with {rec['attendees']} people expected.",
        f"Save the date {rec['date']}: {rec['attendees']} guests will join the {rec['event']} in {rec['city']}.",
    ]
    types = {"event": "string", "city": "string", "date": "string", "attendees": "integer"}
    return rec, rng.choice(texts), types


def make_json_pairs(n: int, rng: random.Random) -> list[TextPair]:
    out = []
    for _ in range(n):
        rec, text, types = rng.choice([_person, _product, _event])(rng)
        keys = list(rec)
        if rng.random() < 0.4:  # sometimes ask for a subset of the fields
            keys = sorted(rng.sample(keys, rng.randint(2, len(keys))), key=list(rec).index)
        schema = {"type": "object", "properties": {k: {"type": types[k]} for k in keys}, "required": keys}
        instr = (f"Extract the data from the text as JSON matching this schema:\n{json.dumps(schema)}\n\n"
                 f"Text: {text}\n\nReply with the JSON only.")
        out.append(TextPair("json", instr, json.dumps({k: rec[k] for k in keys})))
    return out


def functions_in(path: Path) -> list[list[str]]:
    try:
        src = path.read_text(encoding="utf-8")
        tree = ast.parse(src)
    except (SyntaxError, UnicodeDecodeError, OSError):
        return []
    lines = src.splitlines()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno:
            body = lines[node.lineno - 1 : node.end_lineno]
            if 6 <= len(body) <= 30 and max(len(l) for l in body) <= 100:
                found.append(body)
    return found


def make_code_pairs(n: int, rng: random.Random) -> list[TextPair]:
    files = sorted(STDLIB.glob("*.py")) + sorted(STDLIB.glob("json/*.py")) + sorted(STDLIB.glob("email/*.py"))
    if not files:
        raise FileNotFoundError(f"no Python sources under {STDLIB}; set data.code to 0 in the config")
    rng.shuffle(files)
    funcs = []
    for f in files[:80]:
        funcs += functions_in(f)
    rng.shuffle(funcs)
    pairs = (infill_pair(body, rng) for body in funcs[:n])
    return [pair for pair in pairs if pair is not None]


def infill_pair(body: list[str], rng: random.Random, max_span: int = 5) -> TextPair | None:
    """The function ``body`` with 1..``max_span`` of its lines cut out and marked <MISSING>
    (the training format; ``diffusion_engine.eval --set infill`` asks the same way)."""
    start = rng.randint(1, len(body) - 2)
    span = rng.randint(1, min(max_span, len(body) - start))
    prefix, middle, suffix = body[:start], body[start : start + span], body[start + span :]
    if not "".join(middle).strip():
        return None
    code = "\n".join(prefix + ["<MISSING>"] + suffix)
    instr = ("Fill in the line(s) marked <MISSING> in this Python function. "
             f"Reply with the missing code only.\n\n```python\n{code}\n```")
    return TextPair("code", instr, "\n".join(middle))


def _typo(word: str, rng: random.Random) -> str:
    if len(word) < 4:
        return word
    i = rng.randint(1, len(word) - 3)
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


def make_edit_pairs(sentences: list[str], n: int, rng: random.Random) -> list[TextPair]:
    out = []
    sentences = [s for s in sentences if 6 <= len(s.split()) <= 40]
    for s in rng.sample(sentences, min(n, len(sentences))):
        words = s.split()
        kind = rng.choice(["replace", "delete", "upper", "typos", "swap"])
        if kind == "replace":
            w = rng.choice([w for w in words if w.isalpha()] or words)
            new = rng.choice(["blue", "quiet", "modern", "ancient", "simple"])
            instr, ans = f"Replace the word \"{w}\" with \"{new}\" in this text:\n{s}", s.replace(w, new)
        elif kind == "delete":
            w = rng.choice([w for w in words if w.isalpha()] or words)
            instr = f"Remove every occurrence of the word \"{w}\" from this text:\n{s}"
            ans = " ".join(x for x in words if x != w)
        elif kind == "upper":
            instr, ans = f"Rewrite this text in uppercase:\n{s}", s.upper()
        elif kind == "typos":
            broken = " ".join(_typo(w, rng) if rng.random() < 0.3 and w.isalpha() else w for w in words)
            if broken == s:
                continue
            instr, ans = f"Fix the spelling mistakes in this text:\n{broken}", s
        else:
            hits = [w for w in WORDS_SWAP if re.search(rf"\b{w}\b", s)]
            if not hits:
                continue
            w = hits[0]
            instr = f"Use the word \"{WORDS_SWAP[w]}\" instead of \"{w}\" in this text:\n{s}"
            ans = re.sub(rf"\b{w}\b", WORDS_SWAP[w], s)
        out.append(TextPair("edit", instr, ans))
    return out


def chat_prompt_ids(tokenizer, instruction: str) -> list[int]:
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": instruction}], tokenize=False, add_generation_prompt=True
    )
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@torch.no_grad()
def greedy_answers(model, tokenizer, prompts: list[list[int]], max_new: int, batch: int,
                   journal: Path | None = None) -> list[list[int]]:
    """Batched greedy decoding with left padding; stops each row at ``<|im_end|>``.

    Finished batches are appended to ``journal`` so an interrupted run resumes there.
    """
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    answers: list[list[int]] = []
    if journal is not None and journal.exists():
        answers = [json.loads(l) for l in journal.read_text().splitlines()][: len(prompts)]
        answers = answers[: len(answers) - len(answers) % batch] if len(answers) < len(prompts) else answers
        log.info("resuming distillation at %d/%d answers from %s", len(answers), len(prompts), journal)
    for i in range(len(answers), len(prompts), batch):
        chunk = prompts[i : i + batch]
        width = max(len(p) for p in chunk)
        ids = torch.tensor([[eos] * (width - len(p)) + p for p in chunk])
        attn = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk])
        out = model.generate(input_ids=ids, attention_mask=attn, max_new_tokens=max_new,
                             do_sample=False, eos_token_id=eos, pad_token_id=eos)
        fresh = [row[: row.index(eos) + 1] if eos in row else row for row in out[:, width:].tolist()]
        answers += fresh
        if journal is not None:
            journal.parent.mkdir(parents=True, exist_ok=True)
            with journal.open("a") as fh:
                fh.write("".join(json.dumps(a) + "\n" for a in fresh))
        log.info("distilled %d/%d answers", len(answers), len(prompts))
    return answers


def skeleton_rows(n: int, rng: random.Random, tokenizer, vocab_size: int, slot_pad_id: int) -> list[dict]:
    """``n`` extraction examples whose answers are filled canvases (with token roles), slots
    padded with ``slot_pad_id``: the terminator the structured engine uses at inference."""
    rows, attempts = [], 0
    while len(rows) < n and attempts < 3 * n:
        attempts += 1
        task = extraction_task(rng)
        try:
            layout = layout_for(task.schema, tokenizer, vocab_size=vocab_size, pad_id=slot_pad_id)
        except UnsupportedSchemaError:
            continue
        gold = filling_for_value(layout, task.gold)
        if gold is None:  # a value the skeleton cannot hold (too long for its slot...)
            continue
        prompt = list(tokenizer.apply_chat_template(task.messages, add_generation_prompt=True, tokenize=True,
                                                    return_dict=False))
        rows.append({"source": "skeleton", "prompt": prompt, "answer": gold[0], "roles": gold[1]})
    return rows


def _example(row: dict) -> Example:
    roles = row.get("roles")
    return Example(tuple(row["prompt"]), tuple(row["answer"]), tuple(roles) if roles is not None else None)


def build_dataset(model, tokenizer, cfg: dict, seed: int, cache_dir: Path,
                  slot_pad_id: int | None = None) -> list[Example]:
    """Generate (or load from ``cache_dir``) the training examples described by ``cfg``.
    ``slot_pad_id`` pads skeleton slots: the engine's terminator (``choose_terminator``), which is
    not the adapter's pad token when that token is an EOS id (SmolLM2: ``<|endoftext|>``)."""
    if cfg.get("skeleton") and slot_pad_id is None:
        raise ValueError("data.skeleton needs slot_pad_id: the terminator the structured engine pads slots with")
    # replayed data may hold skeleton canvases, so their terminator is part of the key too
    padded = cfg.get("skeleton") or cfg.get("reuse")
    keyed = {"cfg": cfg, "seed": seed, "v": 1} | ({"slot_pad_id": slot_pad_id} if padded else {})
    key = hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:12]
    path = cache_dir / f"examples-{key}.jsonl"
    if path.exists():
        rows = [json.loads(l) for l in path.read_text().splitlines()]
        log.info("loaded %d cached examples from %s", len(rows), path)
        return [_example(r) for r in rows]
    rng = random.Random(seed)
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    max_prompt, max_answer = cfg["max_prompt_tokens"], cfg["max_answer_tokens"]

    instructions = make_instructions(cfg["distill"], rng, cfg.get("distill_pool", "base"))
    prompts = [chat_prompt_ids(tokenizer, q) for q in instructions]
    journal = cache_dir / f"distill-{key}.partial.jsonl"
    answers = greedy_answers(model, tokenizer, prompts, cfg["distill_max_new_tokens"], cfg["distill_batch"], journal)
    rows = [{"source": "distill", "prompt": p, "answer": a} for p, a in zip(prompts, answers) if a]

    sentences = []
    for a in answers:
        sentences += re.split(r"(?<=[.!?])\s+", tokenizer.decode(a, skip_special_tokens=True))
    pairs = (make_json_pairs(cfg["json"], rng) + make_code_pairs(cfg["code"], rng)
             + make_edit_pairs(sentences, cfg["edit"], rng))
    for pair in pairs:
        ans = tokenizer(pair.answer, add_special_tokens=False)["input_ids"] + [eos]
        rows.append({"source": pair.source, "prompt": chat_prompt_ids(tokenizer, pair.instruction), "answer": ans})
    rows += skeleton_rows(cfg.get("skeleton", 0), rng, tokenizer, model.config.vocab_size, slot_pad_id)
    rows = [r for r in rows if len(r["prompt"]) <= max_prompt]
    for r in rows:
        r["answer"] = r["answer"][:max_answer]
        if "roles" in r:
            r["roles"] = r["roles"][:max_answer]
    reuses = cfg.get("reuse") or []
    for reuse in [reuses] if isinstance(reuses, dict) else reuses:
        other = yaml.safe_load(Path(reuse["config"]).read_text())
        earlier = build_dataset(model, tokenizer, other["data"], other["seed"], cache_dir, slot_pad_id)
        for e in rng.sample(earlier, min(reuse["n"], len(earlier))):
            row = {"source": "reuse", "prompt": list(e.prompt_ids), "answer": list(e.answer_ids)}
            rows.append(row | ({"roles": list(e.roles)} if e.roles is not None else {}))
    rng.shuffle(rows)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.rename(path)
    counts = {s: sum(r["source"] == s for r in rows) for s in ("distill", "json", "code", "edit", "skeleton", "reuse")}
    log.info("wrote %d examples to %s: %s", len(rows), path, counts)
    return [_example(r) for r in rows]
