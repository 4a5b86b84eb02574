"""Short everyday turns: what a user's first request usually is.

The rest of the corpus was written around realistic, mostly long requests; its shortest
rows were code asks ("Write a function that…"), so the head learnt "short imperative =
code" and sent "Say hello." to the diffusion engine. These families give chat its own
short turns in every register (greetings, thanks, one-line asks and questions, one-line
creative asks, other languages, acknowledgements after any earlier task), and give code
and edit short turns too, so that length alone decides nothing.
"""

from __future__ import annotations

from router.data import vocab as V
from router.data.common import code_block, pick, user

GREETINGS = ["hi", "hello", "hey", "hey there", "good morning", "good evening", "yo", "hiya", "greetings",
             "hello again", "morning!", "hi, how are you?", "how's it going?", "what's up?", "you there?"]
THANKS = ["thanks", "thank you", "thanks, this is useful", "thanks a lot!", "perfect, thank you", "great, thanks",
          "cool", "ok", "okay thanks", "got it", "awesome", "that's all, thanks", "nice one", "much appreciated",
          "that worked, thanks", "no, that's it", "sounds good", "bye!", "see you", "lol", "ok cool"]
SMALL_TOPICS = ["the sun", "octopuses", "coffee", "Rome", "volcanoes", "honeybees", "the ocean", "jazz",
                "chess", "penguins", "the Eiffel Tower", "tea", "rainbows", "Mars", "sharks", "the Nile",
                "autumn", "dinosaurs", "Japan", "bread", "sleep", "the Olympics", "owls", "glaciers"]
SAY_WHAT = ["hey", "howdy", "something nice", "good night", "happy birthday to my mom", "something funny",
            "hello to my friend Ann", "thanks to the team", "something encouraging", "hi in a pirate voice"]
SHORT_ASKS = [
    "Say {say}.", "say {say}", "Say {say} in a few words.", "Tell me a single fact about {t}.",
    "Tell me something about {t}", "Give me a fun fact.", "Give me a fun fact about {t}.",
    "Tell me a joke.", "tell me a joke about {t}", "Name three things about {t}.", "Describe {t} briefly.",
    "Explain {t} in one sentence.", "Recommend a book.", "Suggest a name for my cat.", "Pick a number.",
    "Give me a random word.", "Cheer me up.", "Motivate me.", "Surprise me.", "Say something.",
    "Tell me about yourself.", "Give me a tip for {t}.", "One sentence about {t}, please.", "Quote of the day?",
]
SHORT_QUESTIONS = [
    "What is {t}?", "Why is the sky blue?", "How far is {t}?", "Who invented the telephone?",
    "What's 2+2?", "What is 12 times 7?", "Is {t} dangerous?", "What time is it in Tokyo?",
    "How old is {t}?", "Who are you?", "What can you do?", "Are you a robot?", "Can you help me?",
    "What should I eat tonight?", "Is it going to rain?", "What's the capital of Peru?",
    "How many legs does a spider have?", "Do you like {t}?", "what's your name", "which is bigger, {t} or Mars?",
]
SHORT_CREATIVE = ["Write a haiku.", "write a haiku about {t}", "A limerick about {t}, please.", "Make up a riddle.",
                  "Write a two-line poem about {t}.", "Tell me a short story.", "Invent a word.",
                  "Write a toast for my brother's wedding in one line.", "Give me a tongue twister."]
ONE_LINERS = {
    "fr": ["Bonjour !", "Merci beaucoup", "Dis bonjour.", "Raconte-moi une blague.", "Quelle heure est-il ?",
           "Comment ça va ?", "Un fait sur la lune ?"],
    "es": ["¡Hola!", "Gracias", "Di hola.", "Cuéntame un chiste.", "¿Qué tal?", "¿Por qué el cielo es azul?"],
    "de": ["Hallo!", "Danke!", "Sag hallo.", "Erzähl mir einen Witz.", "Wie geht's?", "Was ist die Hauptstadt von Peru?"],
    "it": ["Ciao!", "Grazie mille", "Dimmi una barzelletta.", "Come stai?"],
    "pt": ["Olá!", "Obrigado!", "Conte uma piada.", "Tudo bem?"],
    "nl": ["Hoi!", "Dank je", "Vertel een grap."],
    "ru": ["Привет!", "Спасибо", "Расскажи анекдот.", "Как дела?"],
    "ja": ["こんにちは", "ありがとう", "冗談を言って", "元気？"],
    "zh": ["你好", "谢谢", "讲个笑话", "今天天气怎么样？"],
    "ko": ["안녕하세요", "감사합니다", "농담 하나 해줘"],
    "ar": ["مرحبا", "شكرا", "احكِ لي نكتة"],
    "hi": ["नमस्ते", "धन्यवाद", "एक चुटकुला सुनाओ"],
}


def _topic(rng) -> str:
    return pick(rng, SMALL_TOPICS)


def _cased(rng, text: str) -> str:
    """Users type carelessly: lower case, no final stop, or a capital and a stop."""
    roll = rng.random()
    if roll < 0.25:
        return text.lower()
    if roll < 0.45:
        return text.rstrip(".!?")
    if roll < 0.6:
        return text[:1].upper() + text[1:]
    return text


def chat_greeting(rng):
    return "short_greeting", user(_cased(rng, pick(rng, GREETINGS + THANKS)))


def chat_short_ask(rng):
    text = pick(rng, SHORT_ASKS + SHORT_QUESTIONS).format(t=_topic(rng), say=pick(rng, SAY_WHAT))
    return "short_ask", user(_cased(rng, text))


def chat_short_creative(rng):
    return "short_creative", user(_cased(rng, pick(rng, SHORT_CREATIVE).format(t=_topic(rng))))


def chat_short_multilingual(rng):
    return "short_multilingual", user(pick(rng, ONE_LINERS[pick(rng, list(ONE_LINERS))]))


def chat_short_ack(rng):
    """A short acknowledgement or small-talk turn after any earlier task: still chat."""
    lang, block = code_block(rng)
    earlier = pick(rng, [
        [{"role": "user", "content": f"Write {pick(rng, V.CODE_TASKS)}."},
         {"role": "assistant", "content": f"Here you go:\n\n{block}"}],
        [{"role": "user", "content": f"Rewrite this to sound friendlier:\n\n{V.short_message(rng)}"},
         {"role": "assistant", "content": V.short_message(rng)}],
        [{"role": "user", "content": f"What is {_topic(rng)}?"},
         {"role": "assistant", "content": "It is a well-known subject; here are the basics."}],
    ])
    last = pick(rng, THANKS + ["Great, that's exactly it.", "Cool, have a nice day!",
                               "Who made you?", "How are you today?", "Tell me a joke now."])
    return "short_ack", [*earlier, {"role": "user", "content": _cased(rng, last)}]


def code_short(rng):
    """Short turns that do ask for code: length is not the signal."""
    lang = V.LANG_NAMES.get(pick(rng, list(V.LANG_NAMES)), "Python")
    return "short_code", user(_cased(rng, pick(rng, [
        f"{lang} hello world", f"Reverse a string in {lang}.", f"fizzbuzz in {lang}", f"Regex for an email address.",
        f"Sort a list in {lang}?", f"{lang}: read a file line by line", "SQL to count rows per day",
        f"Write a {lang} function that adds two numbers.", "bash: find large files", "Fix: prnt('hi')",
    ])))


def edit_short(rng):
    """Short turns that ask for a rewrite of given text."""
    return "short_edit", user(pick(rng, [
        "Fix the typo: teh cat sat on teh mat", "Make this formal: hey whats up", "Shorten: I am writing to let you know that I will be late.",
        "Translate to French: good morning", "Correct this: their going to the store", "Make it friendlier: Send the file.",
        "Rephrase: the meeting is cancelled", "Proofread: i has a apple", "Translate to German: thank you very much",
    ]))


REWRITES = [("Translate to Spanish: {m}", ["and in Swedish?", "now in German", "and in Italian please", "same in Portuguese"]),
            ("Rewrite this to sound friendlier:\n\n{m}", ["even friendlier", "shorter please", "more formal now",
                                                             "again, but more casual", "one more version"]),
            ("Fix the grammar: {m}", ["and this one: me and him was late", "now make it formal", "shorter?"]),
            ("Make this more concise:\n\n{m}", ["even shorter", "now as one sentence", "less stiff please"])]
QUESTIONS = [("What is the capital of {p}?", ["and of Chile?", "why?", "really?", "tell me more", "and in winter?",
                                              "how big is it?", "is it safe?"]),
             ("Who was Ada Lovelace?", ["and Alan Turing?", "interesting, more?", "when did she live?"])]


def edit_short_followup(rng):
    """A short follow-up to a rewrite asks for another rewrite."""
    ask, follow = pick(rng, REWRITES)
    message = V.short_message(rng)
    return "short_edit_followup", [{"role": "user", "content": ask.format(m=message)},
                                   {"role": "assistant", "content": V.short_message(rng)},
                                   {"role": "user", "content": _cased(rng, pick(rng, follow))}]


def chat_short_followup(rng):
    """A short follow-up to a question is another question."""
    ask, follow = pick(rng, QUESTIONS)
    return "short_chat_followup", [{"role": "user", "content": ask.format(p=pick(rng, V.PLACES))},
                                   {"role": "assistant", "content": "Here is a short answer with the main facts."},
                                   {"role": "user", "content": _cased(rng, pick(rng, follow))}]
