"""Templates for edit and code turns (see ``make_train``)."""

from __future__ import annotations

from router.data import vocab as V
from router.data.common import code_block, pick, quoted, user


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
        f"Give me {pick(rng, V.CONFIG_TASKS)}.", f"I need {pick(rng, V.CONFIG_TASKS)}, production ready.",
        f"Can you write {pick(rng, V.CONFIG_TASKS)}? Keep it minimal.",
    ]))


def code_fix(rng):
    lang, block = code_block(rng)
    name = V.LANG_NAMES[lang]
    return "fix", user(pick(rng, [
        f"This throws an error sometimes. Can you fix it?\n\n{block}",
        f"Fix the bug in this {name}:\n\n{block}", f"Why does this crash on empty input? Please fix it.\n\n{block}",
        f"{block}\n\nThis is slow on big inputs, make it faster.",
        f"My test fails with an IndexError. Fix the function:\n\n{block}",
        f"{block}\n\nThis returns the wrong result, why? Fix it.",
        f"{block}\nWhat's wrong with this? Please fix.", f"{block}\n\nwhy does this throw?? fix pls",
        f"Getting a type error on the second line:\n{block}\nCan you correct it?",
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


def code_how_do_i(rng):
    """'How do I X in Y?' where X is a programming task: the answer is code."""
    lang = V.LANG_NAMES[pick(rng, ["python", "javascript", "typescript", "go", "java", "rust",
                                   "csharp", "kotlin", "ruby", "php"])]
    task = pick(rng, V.HOWTO_TASKS)
    return "how_do_i", user(pick(rng, [
        f"How do I {task} in {lang}?", f"What's the cleanest way to {task} in {lang}?",
        f"{lang}: how can I {task}?", f"how to {task} in {lang}", f"Quick one: {task} in {lang}?",
        f"Best way to {task}? I'm using {lang}.",
        f"{pick(rng, ['one-liner', 'command', 'shell command', 'bash one-liner'])} to {pick(rng, V.SHELL_TASKS)}",
        f"What's the command to {pick(rng, V.SHELL_TASKS)}?",
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
