"""Templates for chat and structured turns (see ``make_train``)."""

from __future__ import annotations

from router.data import vocab as V
from router.data.common import code_block, pick, quoted, subject, user


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


def chat_lang_opinion(rng):
    """Opinions and comparisons about languages and tools that want prose, not code."""
    a, b = rng.sample(list(V.LANG_NAMES.values()), 2)
    purpose = pick(rng, ["CLI tools", "web backends", "data pipelines", "a first language",
                         "game scripting", "a small startup team"])
    return "lang_opinion", user(pick(rng, [
        f"Compare {a} and {b} for {purpose}. Just your opinion, no code.",
        f"Is {a} a good choice for {purpose}?", f"Why do people like {a} so much for {purpose}?",
        f"{a} vs {b} for {purpose}: which would you pick and why?",
        f"What are the main weaknesses of {a}? Prose answer please.",
        f"Should our team move from {a} to {b}? We're five developers.",
    ]))


LIFE_HOWTOS = ["get red wine out of a carpet", "ask for a raise", "keep basil alive indoors",
               "negotiate rent", "train for a 10k", "fix a squeaky door", "make friends in a new city",
               "pick a good watermelon", "stop procrastinating", "prepare for a job interview",
               "choose a running shoe", "deal with a noisy neighbour", "get over jet lag faster"]
FACT_QUESTIONS = ["How many moons does Saturn have?", "How long does it take light to reach Earth from the Sun?",
                  "How tall is Mount Kilimanjaro?", "When was the printing press invented?",
                  "How many people live in Lagos?", "How far is the Moon?", "Who painted the Night Watch?"]


def chat_howto(rng):
    """Everyday how-tos and fact questions: counterparts of programming how-tos."""
    return "howto", user(pick(rng, [
        f"How do I {pick(rng, LIFE_HOWTOS)}?", f"What's the best way to {pick(rng, LIFE_HOWTOS)}?",
        f"Any tips on how to {pick(rng, LIFE_HOWTOS)}?", pick(rng, FACT_QUESTIONS),
        f"{pick(rng, FACT_QUESTIONS)} And why is that?",
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
