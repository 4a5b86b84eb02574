"""Synthetic records for skeleton-format extraction data: a schema, a prose text, the gold value.

Each domain draws a record field by field; every field knows its JSON Schema, its value
and how prose states it. A task keeps a subset of the fields, makes some optional (an
optional field may go unmentioned, and is then absent from the gold value) or nullable
(unmentioned: ``null``), and states the kept ones in a shuffled order, sometimes with a
distractor sentence. The variety (enums, booleans, dates, arrays, nested objects,
optional and nullable members) is what the skeleton compiler lays out at inference.
Domains and wording are written here; nothing comes from ``shared/eval/``.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any, Callable

FIRST = ["Alice", "Bob", "Carmen", "Deepak", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemi", "Liam",
         "Maya", "Noor", "Oscar", "Priya", "Quinn", "Rosa", "Sven", "Tariq", "Uma", "Viktor", "Wen", "Yara"]
LAST = ["Smith", "Garcia", "Okafor", "Tanaka", "Muller", "Rossi", "Nguyen", "Kowalski", "Silva", "Haddad",
        "Brennan", "Dubois", "Ivanova", "Lindqvist", "Mensah", "Park", "Quispe", "Sato", "Varga", "Zhou"]
CITIES = ["Lisbon", "Toronto", "Nairobi", "Osaka", "Berlin", "Lima", "Austin", "Seoul", "Oslo", "Pune",
          "Porto", "Leeds", "Denver", "Accra", "Krakow", "Hobart", "Tucson", "Ghent", "Bergen", "Cusco"]
STREETS = ["Elm Road", "Harbor Lane", "Pine Street", "Canal Walk", "Mill Avenue", "Orchard Way", "Station Road"]
WORDS = ["Blue", "Iron", "Cedar", "North", "Silver", "Quick", "Bright", "Stone", "River", "Golden", "Oak", "Summit"]
NOUNS = ["Works", "Labs", "Supply", "Studio", "Partners", "Foods", "Systems", "Garage", "Books", "Outfitters"]
COLORS = ["red", "navy", "olive", "white", "black", "sand", "teal", "plum", "charcoal", "mustard"]
TAGS = ["urgent", "billing", "login", "mobile", "refund", "shipping", "bug", "feature", "account", "security"]


@dataclass
class Field:
    key: str
    schema: dict
    value: Any
    #: sentences stating the value; one is chosen
    phrases: list[str]


def _date(rng: random.Random) -> str:
    return f"{rng.randint(2023, 2027)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def _name(rng: random.Random) -> str:
    return f"{rng.choice(FIRST)} {rng.choice(LAST)}"


def _company(rng: random.Random) -> str:
    return f"{rng.choice(WORDS)} {rng.choice(NOUNS)}"


def _money(rng: random.Random, low: float, high: float) -> float | int:
    if rng.random() < 0.3:
        return rng.randint(int(low), int(high))
    return round(rng.uniform(low, high), 2)


def _enum(rng: random.Random, options: list[str]) -> tuple[dict, str]:
    return {"type": "string", "enum": options}, rng.choice(options)


def _list_text(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def contact(rng: random.Random) -> tuple[str, list[Field]]:
    name, city = _name(rng), rng.choice(CITIES)
    age, email = rng.randint(19, 79), f"{name.split()[0].lower()}.{rng.randint(1, 99)}@example.org"
    role_schema, role = _enum(rng, ["customer", "supplier", "partner", "press"])
    return "a contact card", [
        Field("full_name", {"type": "string"}, name, [f"The contact is {name}.", f"Name: {name}."]),
        Field("age", {"type": "integer"}, age, [f"{name.split()[0]} is {age} years old.", f"Age: {age}."]),
        Field("city", {"type": "string"}, city, [f"They live in {city}.", f"Based in {city}."]),
        Field("email", {"type": "string"}, email, [f"Email: {email}.", f"Write to {email}."]),
        Field("relationship", role_schema, role, [f"Relationship: {role}.", f"They are a {role} of ours."]),
        Field("newsletter", {"type": "boolean"}, rng.random() < 0.5, []),
    ]


def order(rng: random.Random) -> tuple[str, list[Field]]:
    number = f"ORD-{rng.randint(10000, 99999)}"
    qty, total = rng.randint(1, 40), _money(rng, 5, 2500)
    status_schema, status = _enum(rng, ["pending", "shipped", "delivered", "cancelled"])
    colors = rng.sample(COLORS, rng.randint(1, 3))
    return "an order confirmation", [
        Field("order_id", {"type": "string", "pattern": "^ORD-[0-9]{5}$"}, number,
              [f"Order {number} was received.", f"Reference: {number}."]),
        Field("buyer", {"type": "string"}, _name(rng), []),
        Field("order_date", {"type": "string", "format": "date"}, _date(rng), []),
        Field("quantity", {"type": "integer", "minimum": 1}, qty, [f"Quantity: {qty} units.", f"{qty} items in total."]),
        Field("total_usd", {"type": "number"}, total, [f"The total comes to ${total}.", f"Amount charged: {total} USD."]),
        Field("status", status_schema, status, [f"Current status: {status}.", f"The order is {status}."]),
        Field("colors", {"type": "array", "items": {"type": "string"}, "maxItems": 4}, colors,
              [f"Colours chosen: {_list_text(colors)}.", f"It comes in {_list_text(colors)}."]),
        Field("gift_wrap", {"type": "boolean"}, rng.random() < 0.3, []),
    ]


def booking(rng: random.Random) -> tuple[str, list[Field]]:
    guests, nights = rng.randint(1, 8), rng.randint(1, 14)
    room_schema, room = _enum(rng, ["single", "double", "suite", "dorm"])
    return "a hotel booking", [
        Field("guest", {"type": "string"}, _name(rng), []),
        Field("hotel", {"type": "string"}, f"{rng.choice(WORDS)} {rng.choice(['Inn', 'Hotel', 'Lodge'])}", []),
        Field("city", {"type": "string"}, rng.choice(CITIES), []),
        Field("check_in", {"type": "string", "format": "date"}, _date(rng), []),
        Field("nights", {"type": "integer", "minimum": 1}, nights, [f"The stay lasts {nights} nights.", f"Nights: {nights}."]),
        Field("guests", {"type": "integer"}, guests, [f"Party of {guests}.", f"{guests} guests are expected."]),
        Field("room_type", room_schema, room, [f"Room: {room}.", f"They booked a {room} room."]),
        Field("breakfast_included", {"type": "boolean"}, rng.random() < 0.5, []),
        Field("price_per_night", {"type": "number"}, _money(rng, 40, 600), []),
    ]


def ticket(rng: random.Random) -> tuple[str, list[Field]]:
    ticket_id = rng.randint(1000, 99999)
    prio_schema, prio = _enum(rng, ["low", "medium", "high", "critical"])
    tags = rng.sample(TAGS, rng.randint(1, 3))
    product = f"{rng.choice(WORDS)} {rng.choice(['App', 'Cloud', 'Router', 'Watch', 'Desk'])}"
    return "a support ticket", [
        Field("ticket_number", {"type": "integer"}, ticket_id, [f"Ticket #{ticket_id} was opened.", f"Case {ticket_id}."]),
        Field("customer", {"type": "string"}, _name(rng), []),
        Field("product", {"type": "string"}, product, [f"It concerns the {product}.", f"Product affected: {product}."]),
        Field("priority", prio_schema, prio, [f"Priority is {prio}.", f"Marked as {prio} priority."]),
        Field("tags", {"type": "array", "items": {"type": "string"}, "maxItems": 5}, tags,
              [f"Tags: {', '.join(tags)}.", f"Labelled {_list_text(tags)}."]),
        Field("opened_on", {"type": "string", "format": "date"}, _date(rng), []),
        Field("escalated", {"type": "boolean"}, rng.random() < 0.3, []),
    ]


def company(rng: random.Random) -> tuple[str, list[Field]]:
    name, street = _company(rng), f"{rng.randint(1, 240)} {rng.choice(STREETS)}"
    city, zipcode = rng.choice(CITIES), f"{rng.randint(10000, 99999)}"
    staff, founded = rng.randint(2, 5000), rng.randint(1950, 2024)
    address = {"street": street, "city": city, "postal_code": zipcode}
    address_schema = {"type": "object", "properties": {"street": {"type": "string"}, "city": {"type": "string"},
                                                        "postal_code": {"type": "string"}},
                      "required": ["street", "city", "postal_code"], "additionalProperties": False}
    return "a company profile", [
        Field("company_name", {"type": "string"}, name, [f"{name} is the company.", f"Company: {name}."]),
        Field("founded_year", {"type": "integer"}, founded, [f"It was founded in {founded}.", f"Founded: {founded}."]),
        Field("employees", {"type": "integer", "minimum": 0}, staff, [f"It employs {staff} people.", f"Staff: {staff}."]),
        Field("address", address_schema, address, [f"The office is at {street}, {city} {zipcode}.",
                                                   f"Address: {street}, {city}, postal code {zipcode}."]),
        Field("ceo", {"type": "string"}, _name(rng), []),
        Field("public", {"type": "boolean"}, rng.random() < 0.3, []),
    ]


def _default_phrases(f: Field) -> list[str]:
    label = f.key.replace("_", " ")
    if isinstance(f.value, bool):
        return [f"{label.capitalize()}: {'yes' if f.value else 'no'}.",
                f"{label.capitalize()}: {'true' if f.value else 'false'}."]
    return [f"{label.capitalize()}: {f.value}.", f"The {label} is {f.value}."]


DOMAINS: list[Callable[[random.Random], tuple[str, list[Field]]]] = [contact, order, booking, ticket, company]
DISTRACTORS = ["Please keep this for your records.", "Thank you for your business.",
               "Reply to this message if anything is wrong.", "This note was generated automatically."]


@dataclass
class ExtractionTask:
    messages: list[dict]
    schema: dict
    gold: dict


def extraction_task(rng: random.Random) -> ExtractionTask:
    """One synthetic extraction request: chat messages, a strict-ish schema, the gold value."""
    what, fields = rng.choice(DOMAINS)(rng)
    keep = [f for f in fields if rng.random() < 0.8] or fields[:2]
    props, required, gold, sentences = {}, [], {}, []
    for f in keep:
        schema = dict(f.schema)
        mode = rng.random()
        if mode < 0.12 and schema.get("type") in ("string", "integer", "number") and "enum" not in schema:
            schema["type"] = [schema["type"], "null"]  # nullable: unmentioned means null
            required.append(f.key)
            if rng.random() < 0.5:
                gold[f.key] = None
                props[f.key] = schema
                continue
        elif mode < 0.24:  # optional: may be left out of the text and then of the answer
            if rng.random() < 0.5:
                props[f.key] = schema
                continue
        else:
            required.append(f.key)
        props[f.key] = schema
        gold[f.key] = f.value
        sentences.append(rng.choice(f.phrases or _default_phrases(f)))
    rng.shuffle(sentences)
    if rng.random() < 0.3:
        sentences.insert(rng.randint(0, len(sentences)), rng.choice(DISTRACTORS))
    schema = {"type": "object", "properties": props, "required": required, "additionalProperties": False}
    text = " ".join(sentences)
    ask = rng.choice([f"Extract the fields of {what} from this text.", f"Turn this {what.split(' ', 1)[1]} into JSON.",
                      "Read the text and fill in the JSON object.", f"Here is {what}. Give me the structured data."])
    user = f"{ask}\n\n{text}"
    if rng.random() < 0.3:
        user += f"\n\nSchema: {json.dumps(schema)}"
    messages = [{"role": "user", "content": user}]
    if rng.random() < 0.6:
        messages.insert(0, {"role": "system", "content": rng.choice([
            "You extract data into JSON that follows the given schema. Output JSON only.",
            "You are a data-entry assistant. Answer with one JSON object.",
            "Reply with valid JSON matching the schema and nothing else."])})
    return ExtractionTask(messages, schema, gold)
