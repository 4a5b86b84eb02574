"""Generate the synthetic routing corpus ``router/data/train.jsonl``.

    python -m router.data.make_train [--n-per-label 400] [--seed 7]

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
from typing import Callable

from router.data import vocab as V

OUT = Path(__file__).resolve().parent / "train.jsonl"
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


# ---------------------------------------------------------------- chat
def chat_explain(rng):
    a, b = pick(rng, V.PAIRS)
    s = subject(rng)
    return "explain", user(pick(rng, [
        f"What's the difference between {a} and {b}?", f"Can you explain {s} in simple terms?",
        f"How does {s} actually work?", f"Why do people keep recommending {s}?",
        f"I'm confused about {s}. What should I know before I decide anything?",
        f"ELI5: {s}", f"Give me a high-level overview of {s}, no examples needed.",
        f"{a} or {b}: which one makes more sense for a beginner, and why?",
        f"Is {s} overrated? Be honest.", f"what's the deal with {s}",
        f"Walk me through {s} step by step.", f"Explain {s} like I'm twelve.",
        f"What are the pros and cons of {s}?", f"Why is {s} such a big deal?",
    ]))


def chat_advice(rng):
    place, n = pick(rng, V.PLACES), rng.randint(2, 12)
    return "advice", user(pick(rng, [
        f"I'm moving to {place} for work in {n} weeks. Which neighbourhoods should I look at?",
        f"My team of {n} keeps missing deadlines. How do I bring it up without sounding like a jerk?",
        f"Should I pay off my student loan faster or invest the extra {n}00 a month?",
        f"I have {n} days in {place} with my parents. What's worth seeing?",
        f"How can I get better sleep? I usually go to bed around 1am.",
        f"My cat stopped eating dry food. Should I be worried?",
        f"Any tips for my first half marathon in {n} weeks?",
        f"I got two job offers, one pays more and one is remote. How should I think about it?",
    ]))


def chat_brainstorm(rng):
    n = rng.randint(3, 12)
    thing = pick(rng, ["a bakery in " + pick(rng, V.PLACES), "a podcast about urban gardening",
                       "a team offsite", "a fantasy tavern", "a budgeting app", "a charity 5k run",
                       "a window display for a bookshop", "a board game night", "a newsletter"])
    return "brainstorm", user(pick(rng, [
        f"Give me {n} ideas for {thing}.", f"Brainstorm {n} names for {thing}.",
        f"Suggest some themes for {thing}, nothing too cheesy.",
        f"I need ideas for {thing}. Budget is small.",
    ]))


def chat_creative(rng):
    return "creative", user(pick(rng, [
        f"Write {pick(rng, V.CREATIVE_FORMS)} about {pick(rng, V.CREATIVE_THEMES)}.",
        f"write {pick(rng, V.CREATIVE_FORMS)} about {pick(rng, V.CREATIVE_THEMES)}",
        f"Tell me a funny story about {pick(rng, V.CREATIVE_THEMES)}.",
        f"Compose {pick(rng, V.CREATIVE_FORMS)} about {pick(rng, V.CREATIVE_THEMES)}, please.",
        f"Could you write a blog post about {subject(rng)} for beginners?",
        f"Write a short essay on {subject(rng)}.",
    ]))


def chat_about_text(rng):
    text = quoted(rng, V.passage(rng))
    n = rng.randint(2, 5)
    return "about_text", user(pick(rng, [
        f"Summarize this in {n} bullet points:\n\n{text}",
        f"TL;DR please:\n\n{text}", f"What are the key points here?\n\n{text}",
        f"Here are my notes. What was decided and what is still open?\n\n{text}",
        f"What do you think of this? Is the tone too harsh? Not asking for a rewrite.\n\n{text}",
        f"Read this and tell me what the main risk is:\n\n{text}",
        f"{text}\n\nWhat's your take on this?",
        f"Give me the gist of this for my manager:\n\n{text}",
        f"What are the action items in this?\n\n{text}",
        f"Can you summarise the main arguments?\n\n{text}",
        f"{text}\n\nSo what does this mean for us in practice?",
        f"Which points in this are the most important, and why?\n\n{text}",
    ]))


def chat_tech_concept(rng):
    tech = pick(rng, V.SUBJECTS["tech_concepts"])
    cmd = pick(rng, ["git rebase -i", "docker compose up", "npm ci", "chmod 755", "kubectl apply",
                     "SELECT DISTINCT", "async/await", "a Python decorator"])
    return "tech_concept", user(pick(rng, [
        f"Explain {tech}. I don't need code, just the idea.",
        f"What does `{cmd}` actually do under the hood?",
        f"When should a team choose {tech}? Trying to settle an argument.",
        f"Can you give me an overview of {tech}? What changed in recent versions?",
        f"Is {tech} still relevant in 2025? Just your opinion in prose.",
        f"Why does `{cmd}` behave differently on my laptop than in CI? Just explain the concept.",
    ]))


def chat_code_question(rng):
    lang, block = code_block(rng)
    return "explain_code", user(pick(rng, [
        f"What does this code do?\n\n{block}", f"Can you explain this {V.LANG_NAMES[lang]} to me line by line? Don't change it.\n\n{block}",
        f"{block}\n\nWhy is this written this way? Just curious, it works.",
    ]))


ML_QUESTION_FRAMES = [
    "Peux-tu m'expliquer simplement comment fonctionne {s} ?", "Pourquoi parle-t-on autant de {s} ?",
    "Quelle est la différence entre {a} et {b} ?", "¿Me puedes explicar qué es {s}?",
    "¿Por qué es tan importante {s}?", "¿Cuál es la diferencia entre {a} y {b}?",
    "Kannst du mir erklären, wie {s} funktioniert?", "Was ist der Unterschied zwischen {a} und {b}?",
    "Mi spieghi in parole semplici cos'è {s}?", "Qual è la differenza tra {a} e {b}?",
    "Você pode me explicar o que é {s}?", "Qual é a diferença entre {a} e {b}?",
    "Kun je uitleggen hoe {s} werkt?", "Wat is eigenlijk het verschil tussen {a} en {b}?",
    "Объясни, пожалуйста, как работает {s}.", "Почему {s} так важно?",
    "В чём разница между {a} и {b}?",
]
ML_ADVICE = [
    "Quels sont les meilleurs quartiers pour loger à Lyon avec des enfants ?",
    "¿Qué me recomiendas visitar en Sevilla en dos días?",
    "Ich schlafe schlecht. Hast du ein paar Tipps für abends?",
    "Sto pensando di cambiare lavoro a 40 anni. Cosa dovrei considerare?",
    "Estou planejando uma viagem a Porto com meus pais. O que vale a pena ver?",
    "Ik wil beginnen met hardlopen. Hoe bouw ik dat rustig op?",
    "Посоветуй, как подготовиться к собеседованию в IT-компанию.",
    "Почему вода расширяется, когда замерзает?",
]


def chat_multilingual(rng):
    a, b = pick(rng, V.PAIRS)
    if rng.random() < 0.3:
        return "ml_chat", user(pick(rng, ML_ADVICE))
    return "ml_chat", user(pick(rng, ML_QUESTION_FRAMES).format(s=subject(rng), a=a, b=b))


def chat_followup(rng):
    """Follow-up turns that still want a prose answer, after prose, code or an edit."""
    s = subject(rng)
    lang, block = code_block(rng)
    a, b = pick(rng, V.PAIRS)
    return "followup", pick(rng, [
        [{"role": "user", "content": f"How does {s} work?"},
         {"role": "assistant", "content": f"In short, {s} depends on a few factors: cost, timing and risk."},
         {"role": "user", "content": pick(rng, [
             f"Ok that helps. So what happens if {pick(rng, ['it fails halfway', 'I skip a step', 'the deadline passes', 'both sides disagree'])}?",
             f"Ah, I don't have {pick(rng, ['a car', 'buttermilk', 'a lawyer', 'much time'])}. What can I do instead?",
             "Interesting, why is that though?", "Does that also apply in Canada?",
             f"And how is that different from {b}?", "Makes sense. Any common mistakes to avoid?"])}],
        [{"role": "user", "content": f"Write {pick(rng, V.CODE_TASKS)}."},
         {"role": "assistant", "content": f"Sure:\n\n{block}"},
         {"role": "user", "content": pick(rng, [
             f"Thanks, that works. Out of curiosity, is {a} the same thing as {b}?",
             "Why did you use a loop there instead of recursion? Just curious, no need to change it.",
             "Great. Is this approach considered good practice in general?",
             f"Works now. Conceptually, what's the difference between {a} and {b}?"])}],
        [{"role": "user", "content": f"Rewrite this to sound friendlier:\n\n{V.short_message(rng)}"},
         {"role": "assistant", "content": V.short_message(rng)},
         {"role": "user", "content": pick(rng, [
             "Thanks! Honestly, do you think it's too casual for a bank? Just your opinion, no rewrite.",
             "Perfect. Would you send this on a Friday afternoon or wait until Monday?",
             "Nice. Is it normal to cc my manager on emails like this?"])}],
    ])


def chat_formats(rng):
    """Questions that mention data formats or code topics but want prose."""
    fmt = pick(rng, ["JSON", "YAML", "CSV", "XML", "Protobuf", "Parquet", "TOML", "JSON Schema"])
    other = pick(rng, ["JSON", "YAML", "Avro", "MessagePack", "plain text", "a database"])
    return "formats", user(pick(rng, [
        f"What's the difference between {fmt} and {other}, at a high level?",
        f"What changed in recent versions of {fmt}? Just an overview, no examples needed.",
        f"Is {fmt} a good choice for config files? Pros and cons in prose please.",
        f"Why do so many APIs use {fmt}?", f"Explain {fmt} to a non-technical manager.",
        f"When would you pick {fmt} over {other} for storing logs?",
        f"Write a short poem about {fmt}.", f"Tell me a joke about {fmt} files.",
    ]))


def chat_agent_brief(rng):
    """Agent-framework prompts whose deliverable is prose."""
    s, place = subject(rng), pick(rng, V.PLACES)
    task = pick(rng, [f"Write a brief analysis (about 200 words) of how {s} affects small businesses in {place}.",
                      f"Prepare a one-page briefing on {s} for the leadership team.",
                      f"Draft a short report on the outlook for {s} next year.",
                      f"Write an overview of {s} for new employees."])
    prefix = pick(rng, ["Current Task: ", "Task: ", "Goal: ", "Objective: ", ""])
    ctx = pick(rng, ["", f"\nContext: the audience is {pick(rng, ['executives', 'students', 'customers'])}.",
                     "\nConstraints: plain prose, no bullet points."])
    return "agent_brief", user(f"{prefix}{task}{ctx}")


def chat_cjk(rng):
    return "ml_chat", user(pick(rng, [
        "요즘 스트레스가 많은데 어떻게 관리하면 좋을까요?", "서울에서 가볼 만한 곳 추천해 줄래요?",
        "東京で一人旅におすすめの場所を教えてください。", "なぜ空は青いのですか？",
        "学习编程应该从哪种语言开始？", "为什么冬天容易感冒？",
    ]))


# ---------------------------------------------------------------- structured
FIELD_SETS = [["name", "date", "amount"], ["title", "author", "year"], ["sentiment", "score", "topics"],
              ["company", "role", "start_date", "end_date"], ["city", "country", "population"],
              ["product", "price", "currency", "in_stock"], ["question", "answer"],
              ["invoice_number", "total", "due_date"], ["people", "organizations", "locations"]]


def fields(rng) -> str:
    f = pick(rng, FIELD_SETS)
    return ", ".join(f)


def struct_extract(rng):
    text = quoted(rng, V.passage(rng))
    f, fmt = fields(rng), pick(rng, ["JSON", "JSON", "JSON", "YAML", "CSV", "XML"])
    return "extract", user(pick(rng, [
        f"Extract {f} from this as {fmt}:\n\n{text}",
        f"Return only {fmt} with the keys {f}.\n\n{text}",
        f"Give me {fmt} with these fields: {f}. Nothing else.\n\n{text}",
        f"Parse the text below into {fmt} ({f}). Output {fmt} only, no commentary.\n\n{text}",
        f"{text}\n\nConvert the above into {fmt} with keys {f}.",
        f"Turn this into a {fmt} object matching {{\"{pick(rng, V.VAR_NAMES)}\": string, \"items\": [string]}} exactly:\n\n{text}",
    ]))


def struct_generate(rng):
    n = rng.randint(3, 10)
    thing = pick(rng, ["European capitals", "planets", "programming languages", "classic novels",
                       "houseplants", "national parks", "board games", "cheeses", "dog breeds"])
    return "generate", user(pick(rng, [
        f"List {n} {thing} as a JSON array of objects with keys {fields(rng)}.",
        f"Give me {n} {thing} in JSON format: an array with name and a one-line description each.",
        f"Respond only with a JSON object containing a \"{pick(rng, V.VAR_NAMES)}\" array of {n} {thing}.",
        f"Output a CSV with columns name, origin, year for {n} {thing}.",
        f"I need YAML I can paste into my config: {n} {thing}, each with name and notes.",
    ]))


def struct_classify(rng):
    text = quoted(rng, V.passage(rng))
    return "classify", user(pick(rng, [
        f"Classify this message. Answer only with JSON like {{\"category\": ..., \"urgency\": \"low|medium|high\"}}.\n\n{text}",
        f"Rate the sentiment of this review and reply with a JSON object {{\"sentiment\": string, \"score\": number}}:\n\n{text}",
        f"Tag this text with topics. Return a JSON array of strings and nothing else.\n\n{text}",
    ]))


def struct_followup(rng):
    prev = f"Here are some thoughts on {subject(rng)}: it is cheap to start, but it takes time and the results vary."
    return "followup", [{"role": "user", "content": f"What do you think about {subject(rng)}?"},
                        {"role": "assistant", "content": prev},
                        {"role": "user", "content": pick(rng, [
                            "Now put that into JSON with keys \"pros\" and \"cons\". Nothing else.",
                            "Great, give me that as a YAML list please, no extra text.",
                            "Convert your answer into a JSON object with summary and bullet_points.",
                        ])}]


def struct_multilingual(rng):
    text = quoted(rng, V.passage(rng))
    return "ml_struct", user(pick(rng, [
        f"Extrais les informations suivantes au format JSON : nom, date, montant.\n\n{text}",
        f"Devuelve solo un JSON con las claves nombre, fecha y total.\n\n{text}",
        f"Gib mir die Daten als JSON mit den Feldern name, datum, betrag zurück.\n\n{text}",
        f"Restituisci un oggetto JSON con i campi titolo, autore e anno.\n\n{text}",
    ]))


# ---------------------------------------------------------------- edit
TONES = ["more formal", "friendlier", "more concise", "less stiff", "more persuasive", "playful",
         "firm but polite", "plain language", "more confident", "warmer"]
LANGS = ["French", "Spanish", "German", "Italian", "Brazilian Portuguese", "Japanese", "Dutch", "Polish"]


def edit_rewrite(rng):
    text = quoted(rng, pick(rng, [V.passage(rng), V.short_message(rng)]))
    tone = pick(rng, TONES)
    return "rewrite", user(pick(rng, [
        f"Rewrite this to sound {tone}:\n\n{text}", f"Make this {tone}:\n\n{text}",
        f"Can you rephrase this so it's {tone}? Keep the meaning.\n\n{text}",
        f"Rewrite this in the active voice:\n\n{text}", f"Please rewrite this:\n\n{text}",
        f"Change the tone of this to {tone}, same length.\n\n{text}",
        f"Rewrite this paragraph in the second person:\n\n{text}",
        f"{text}\n\nRewrite the above so it reads {tone}.",
    ]))


def edit_fix(rng):
    text = quoted(rng, pick(rng, [V.passage(rng), V.short_message(rng)]))
    return "fix", user(pick(rng, [
        f"Fix the grammar:\n\n{text}", f"Proofread this, just typos and punctuation:\n\n{text}",
        f"Correct the spelling mistakes in this:\n\n{text}", f"clean this up:\n\n{text}",
        f"Can you fix the punctuation and capitalisation here?\n\n{text}",
        f"Correct the typos in this and give me back the result as a JSON array of sentences:\n\n{text}",
        f"Proofread my cover letter paragraph:\n\n{text}",
    ]))


def edit_length(rng):
    text = quoted(rng, V.passage(rng))
    n = rng.choice([50, 80, 100, 150, 160, 280])
    return "length", user(pick(rng, [
        f"Shorten this to {n} characters max:\n\n{text}", f"Cut this down to under {n} words:\n\n{text}",
        f"Make this shorter without losing the key facts:\n\n{text}",
        f"Tighten this to one sentence:\n\n{text}", f"Expand this into a fuller paragraph, same facts:\n\n{text}",
    ]))


def edit_transform(rng):
    text = quoted(rng, V.passage(rng))
    return "transform", user(pick(rng, [
        f"Translate this into {pick(rng, LANGS)}:\n\n{text}",
        f"Redact all personal names and contact details from this before I share it:\n\n{text}",
        f"Replace the names with Person A, Person B and so on:\n\n{text}",
        f"In this text, change every mention of Q2 to Q3 and keep everything else identical.\n\n{text}",
        f"Fill in the [BLANKS] using my notes, don't change anything else.\n\nNotes: {pick(rng, V.PEOPLE)}, {pick(rng, V.PLACES)}\n\nText: {text} [NAME] [CITY]",
        f"Apply our house style (Oxford comma, numbers under ten spelled out) to this:\n\n{text}",
    ]))


def edit_followup(rng):
    prev = V.passage(rng)
    return "followup", [{"role": "user", "content": f"Write a short caption for {pick(rng, V.PRODUCTS)}."},
                        {"role": "assistant", "content": prev},
                        {"role": "user", "content": pick(rng, [
                            "Make it shorter, two sentences max.", "Can you make that more casual?",
                            "Drop the last sentence and make it punchier.",
                            "Rewrite it without the exclamation marks.", "Make it sound less salesy.",
                        ])}]


def edit_multilingual(rng):
    text = quoted(rng, V.passage(rng))
    return "ml_edit", user(pick(rng, [
        f"Peux-tu corriger les fautes dans ce texte ?\n\n{text}",
        f"Reescribe este texto con un tono más formal:\n\n{text}",
        f"Bitte korrigiere die Rechtschreibung in diesem Text:\n\n{text}",
        f"Riscrivi questo paragrafo in modo più conciso:\n\n{text}",
        f"Traduza este texto para o inglês:\n\n{text}",
        f"Kun je deze tekst korter maken?\n\n{text}",
        f"Исправь ошибки в этом тексте:\n\n{text}",
    ]))


def edit_cjk(rng):
    msg = pick(rng, ["주문하신 상품 품절됨. 환불 다음주 됨.", "회의 내일로 바뀜. 늦지 마셈.",
                     "明日の会議はキャンセル。連絡して。", "你的快递到了，自己来拿。", V.short_message(rng)])
    return "ml_edit", user(pick(rng, [
        f"다음 문장을 더 공손하게 고쳐 주세요.\n\n\"{msg}\"", f"이 글의 맞춤법을 고쳐 주세요:\n\n{msg}",
        f"この文章をもっと丁寧に書き直してください。\n\n「{msg}」", f"请把这段话改得更正式一些：\n\n“{msg}”",
        f"请帮我修改下面这段文字的语法错误：\n\n{msg}",
    ]))


# ---------------------------------------------------------------- code
def code_write(rng):
    lang = V.LANG_NAMES[pick(rng, list(V.LANG_NAMES))]
    task = pick(rng, V.CODE_TASKS)
    return "write", user(pick(rng, [
        f"Write {task} in {lang}.", f"Can you give me {task}? {lang} please.",
        f"I need {task}. Use {lang}.", f"{lang}: {task}, with a couple of usage examples.",
        f"Implement {task} in {lang} and handle errors properly.",
        f"Write {task} in {lang}. Reply as JSON with keys \"code\" and \"explanation\".",
        f"one-liner to {pick(rng, ['find the 10 largest files here', 'count unique IPs in access.log', 'kill whatever is on port 3000', 'list git branches merged into main'])}",
        f"How do I {pick(rng, ['pivot a DataFrame by month', 'read a CSV in chunks', 'debounce an input in React', 'paginate a SQL query by cursor'])}? Show me the code.",
    ]))


def code_fix(rng):
    lang, block = code_block(rng)
    name = V.LANG_NAMES[lang]
    return "fix", user(pick(rng, [
        f"This throws an error sometimes. Can you fix it?\n\n{block}",
        f"Fix the bug in this {name}:\n\n{block}", f"Why does this crash on empty input? Please fix it.\n\n{block}",
        f"{block}\n\nThis is slow on big inputs, make it faster.",
        f"My test fails with an IndexError. Fix the function:\n\n{block}",
    ]))


def code_transform(rng):
    lang, block = code_block(rng)
    other = V.LANG_NAMES[pick(rng, [k for k in V.LANG_NAMES if k != lang])]
    return "transform", user(pick(rng, [
        f"Refactor this to be more readable:\n\n{block}", f"Port this to idiomatic {other}:\n\n{block}",
        f"Add type hints and docstrings, don't change behaviour:\n\n{block}",
        f"Rename the variables to something meaningful:\n\n{block}",
        f"Write unit tests for this:\n\n{block}", f"Add logging and error handling to this:\n\n{block}",
        f"Fill in the TODO:\n\n{block.replace('return', '# TODO: implement the rest', 1)}",
    ]))


def code_followup(rng):
    lang, block = code_block(rng)
    return "followup", pick(rng, [
        [{"role": "user", "content": f"Write a helper to {pick(rng, V.CODE_TASKS)}."},
         {"role": "assistant", "content": f"Here you go:\n\n{block}"},
         {"role": "user", "content": pick(rng, [
             "Now add retries for network errors.", "Make it async.",
             "Add a flag to skip hidden files.", "Can you also handle the empty case?",
             # rewrite-sounding turns about code are still code
             "Make it shorter.", "Make it more readable.", "Now make it ignore case as well.",
             f"Rename it to {pick(rng, V.FN_NAMES)} and add a docstring.",
             "Make it handle unicode input too.", "Simplify it, it's too clever.",
             "Translate it to TypeScript.", "Clean it up a bit, the names are bad."])}],
        [{"role": "user", "content": f"How would you approach {pick(rng, V.CODE_TASKS)}?"},
         {"role": "assistant", "content": "I'd first normalise the inputs, then compare them pairwise and keep the best match."},
         {"role": "user", "content": f"Makes sense. Write it in {V.LANG_NAMES[lang]}."}],
    ])


def code_howto(rng):
    """How-to questions whose answer is primarily code, and tasks over data files."""
    cols = ", ".join(rng.sample(["id", "email", "date", "amount", "store_id", "status", "name", "city"], 3))
    return "howto", user(pick(rng, [
        f"I have a DataFrame `df` with columns {cols}. I need the monthly total per {cols.split(', ')[0]}, with missing months filled with 0.",
        f"I have a table orders({cols}). How do I get the latest row per {cols.split(', ')[0]}?",
        f"Write a script that reads a CSV with columns {cols} and writes the duplicates to a separate file.",
        f"Input is a JSON file with a list of objects ({cols}). Write a {V.LANG_NAMES[pick(rng, ['python', 'go', 'javascript'])]} program that groups them by {cols.split(', ')[-1]}.",
        f"In React, how do I fetch data when a component mounts and cancel it on unmount?",
        f"How can I run two async tasks in parallel in {V.LANG_NAMES[pick(rng, ['python', 'javascript', 'kotlin', 'rust'])]} and wait for both?",
        f"What's the {V.LANG_NAMES[pick(rng, ['sql', 'python', 'bash'])]} for removing rows older than 30 days?",
        f"Give me a Postgres migration that adds an index on users({cols.split(', ')[0]}) without locking. Reply as JSON with keys up and down.",
    ]))


def code_multilingual(rng):
    lang = V.LANG_NAMES[pick(rng, list(V.LANG_NAMES))]
    task = pick(rng, ["valide un numéro de téléphone", "ordena una lista de diccionarios por fecha",
                      "eine CSV-Datei einliest und summiert", "calcoli il codice fiscale",
                      "leia um arquivo JSON e conte as chaves"])
    return "ml_code", user(pick(rng, [
        f"Écris une fonction en {lang} qui {task}.", f"Escribe una función en {lang} que {task}.",
        f"Schreib eine Funktion in {lang}, die {task}.", f"Scrivi una funzione in {lang} che {task}.",
        f"Escreva uma função em {lang} que {task}.",
    ]))


GENERATORS: dict[str, list[Gen]] = {
    # a generator listed twice is drawn twice as often: turns that carry a passage or
    # follow earlier turns are where chat is most easily confused with edit and code.
    "chat": [chat_explain, chat_advice, chat_brainstorm, chat_creative, chat_about_text,
             chat_about_text, chat_tech_concept, chat_code_question, chat_multilingual,
             chat_multilingual, chat_followup, chat_followup, chat_formats, chat_agent_brief,
             chat_cjk],
    "structured": [struct_extract, struct_generate, struct_classify, struct_followup, struct_multilingual],
    "edit": [edit_rewrite, edit_fix, edit_length, edit_transform, edit_followup, edit_multilingual, edit_cjk],
    "code": [code_write, code_fix, code_transform, code_followup, code_howto, code_multilingual],
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
    ap.add_argument("--n-per-label", type=int, default=400)
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
