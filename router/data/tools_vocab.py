"""Synthetic tool sets with user turns that need them and turns that don't.

Used to calibrate the tool-relevance check that runs when tools are offered with
``tool_choice`` auto (or absent): a turn that clearly relates to no offered tool is
left to the content stage.
"""

from __future__ import annotations

# (name, description, parameter names, turns that need the tool)
TOOLS: list[tuple[str, str, list[str], list[str]]] = [
    ("get_weather", "Get the current weather and forecast for a city.", ["city", "units"],
     ["Do I need sunglasses in Madrid this afternoon?", "What's the temperature in Oslo right now?",
      "Will it snow in Denver tomorrow?", "how windy is it at the coast today"]),
    ("search_products", "Search the product catalogue by keyword, price and category.",
     ["query", "max_price", "category"],
     ["Show me waterproof hiking boots under $120.", "Do you have any red wool scarves?",
      "I need a laptop bag that fits 16 inch, what have you got?"]),
    ("get_order_status", "Look up the status and tracking of an existing order.", ["order_id"],
     ["Where is order 55120? It was due Monday.", "has my package #B-9912 shipped yet",
      "Can you check what happened to my last order, number 88231?"]),
    ("create_calendar_event", "Create an event in the user's calendar.",
     ["title", "start", "duration_minutes", "attendees"],
     ["Put a dentist appointment on Friday at 9.", "Schedule a 1:1 with Omar next Tuesday 3pm.",
      "Block two hours tomorrow morning for deep work."]),
    ("send_email", "Send an email to a contact.", ["to", "subject", "body"],
     ["Tell Hannah the budget review moved to 4pm.", "Email the team that I'm sick today.",
      "Let Raj know by email that the contract is signed."]),
    ("set_thermostat", "Set the target temperature of the home thermostat.", ["celsius"],
     ["it's too cold in here, make it 21", "turn the heating down a bit please",
      "Set the house to 19 degrees overnight."]),
    ("book_table", "Reserve a table at a restaurant.", ["restaurant", "party_size", "time"],
     ["Book us a table for 6 at Luigi's on Saturday at 8.", "Can I get a table for two tonight at 7?"]),
    ("run_sql", "Run a read-only SQL query against the analytics warehouse.", ["query"],
     ["How many orders did we ship last week?", "What was revenue by region in March?",
      "Which customers churned this quarter?"]),
    ("get_stock_price", "Get the latest stock quote for a ticker symbol.", ["ticker"],
     ["How is Apple trading today?", "what's NVDA at right now", "Did Tesla stock go up today?"]),
    ("convert_currency", "Convert an amount between currencies at the current rate.",
     ["amount", "from", "to"], ["How much is 250 euros in yen today?", "convert 80 GBP to USD"]),
    ("add_todo", "Add an item to the user's to-do list.", ["text", "due"],
     ["Remind me to renew my passport next month.", "add 'call the plumber' to my list"]),
    ("search_flights", "Search flights between two airports on a date.", ["origin", "destination", "date"],
     ["Any flights from Paris to Rome next Friday?", "Find me a cheap flight to Lisbon in June."]),
    ("web_search", "Search the web for recent information.", ["query"],
     ["Who won the match last night?", "What's the latest news about the rail strike?"]),
    ("roll_dice", "Roll dice for the tabletop game, e.g. 1d20+3.", ["expression"],
     ["I attack the orc with my axe!", "I try to pick the lock.", "Roll for initiative."]),
    ("create_ticket", "Open a support ticket in the helpdesk.", ["title", "priority", "description"],
     ["The VPN keeps dropping every ten minutes, please log this.", "My laptop screen is cracked, I need a repair."]),
    ("run_command", "Run a shell command in the project workspace.", ["command"],
     ["Run the linter and show me the errors.", "What files changed in the last commit?"]),
    ("get_account_balance", "Return the balance of the user's bank account.", ["account_id"],
     ["How much money is left in my checking account?", "what's my balance"]),
    ("translate_document", "Translate an uploaded document by id into a target language.",
     ["document_id", "language"], ["Translate document 4411 into Spanish."]),
]

# Turns that relate to none of the tools above (general knowledge, opinions, small talk,
# questions answered from a stated policy).
UNRELATED_TURNS: list[str] = [
    "Thanks, that's all for now!",
    "What's the difference between a latte and a flat white?",
    "Can you explain how compound interest works?",
    "Write me a short poem about autumn.",
    "Hi! What can you help me with?",
    "Do you offer gift wrapping?",
    "What are your opening hours on Sundays?",
    "Is it rude to recline my seat on a plane?",
    "Give me three tips for a job interview.",
    "Why is the ocean salty?",
    "How long is your return window?",
    "Do you have a loyalty programme, and how does it work?",
    "What's a good name for a golden retriever?",
    "Explain the rules of chess castling.",
    "Are your products vegan?",
    "How do I politely decline a wedding invitation?",
]
