"""Vocabularies for the synthetic routing corpus: subjects, passages, code snippets.

Everything here is written for this corpus (not taken from the evaluation set); the
generator in ``make_train.py`` combines these pieces with task templates.
"""

from __future__ import annotations

import random

# (domain, list of subjects that a question can be about)
SUBJECTS: dict[str, list[str]] = {
    "finance": ["index funds", "a Roth IRA", "compound interest", "a variable-rate mortgage",
                "bond yields", "dollar-cost averaging", "an emergency fund", "capital gains tax"],
    "cooking": ["sourdough starter", "braising", "the Maillard reaction", "brining a turkey",
                "tempering chocolate", "a roux", "cast iron seasoning", "proofing yeast"],
    "health": ["intermittent fasting", "REM sleep", "creatine", "shin splints",
               "vitamin D deficiency", "interval training", "a standing desk", "caffeine tolerance"],
    "law": ["a non-compete clause", "fair use", "a power of attorney", "small claims court",
            "tenant deposit rules", "an LLC versus a sole proprietorship", "probate", "GDPR consent"],
    "travel": ["a rail pass in Europe", "travel insurance", "jet lag", "a layover in Istanbul",
               "visiting Kyoto in autumn", "renting a car in Iceland", "hostels versus hotels"],
    "science": ["black holes", "photosynthesis", "plate tectonics", "quantum entanglement",
                "the greenhouse effect", "CRISPR", "tides", "antibiotic resistance", "entropy"],
    "history": ["the fall of Rome", "the printing press", "the Marshall Plan",
                "the Silk Road", "the Meiji Restoration", "the Hanseatic League"],
    "tech_concepts": ["JSON Schema", "OAuth 2.0", "eventual consistency", "a CDN", "Docker layers",
                      "garbage collection", "TCP slow start", "YAML anchors", "REST versus GraphQL",
                      "database indexes", "Kubernetes", "the CAP theorem", "git merge versus rebase",
                      "microservices", "WebSockets", "unit tests versus integration tests",
                      "semantic versioning", "Python's GIL", "a message queue"],
    "business": ["OKRs", "net promoter score", "a go-to-market plan", "churn", "unit economics",
                 "a SWOT analysis", "incoterms", "just-in-time inventory", "a pricing page"],
    "parenting": ["screen time for toddlers", "sleep training", "picky eating", "allowances"],
    "gardening": ["tomato blight", "companion planting", "composting", "pruning roses",
                  "raised beds", "overwintering dahlias"],
    "sports": ["the offside rule", "VO2 max", "a zone defence", "tapering before a marathon",
               "tennis tiebreaks", "cricket's follow-on rule"],
    "games": ["speedrunning", "deck building in Slay the Spire", "chess openings",
              "min-maxing a Dark Souls build", "tabletop initiative rules"],
    "music": ["the circle of fifths", "sidechain compression", "modes", "tuning a guitar by ear"],
    "home": ["a heat pump", "mould on window frames", "a tankless water heater", "radon"],
    "pets": ["crate training a puppy", "a cat that scratches furniture", "aquarium cycling"],
}

PAIRS = [("baking soda", "baking powder"), ("a Roth IRA", "a traditional IRA"),
         ("TCP", "UDP"), ("weather", "climate"), ("a virus", "a bacterium"),
         ("an LLC", "an S corp"), ("HIIT", "steady-state cardio"), ("espresso", "ristretto"),
         ("a lease", "a licence"), ("SQL", "NoSQL databases"), ("Kafka", "RabbitMQ"),
         ("stocks", "bonds"), ("a psychologist", "a psychiatrist"), ("latitude", "longitude"),
         ("JSON", "YAML"), ("a merge", "a rebase"), ("HTTP/1.1", "HTTP/2"),
         ("fixed-term contracts", "permanent contracts"), ("FOB", "CIF shipping terms"),
         ("sunscreen SPF 30", "SPF 50"), ("crocs", "alligators"), ("affect", "effect")]

CREATIVE_FORMS = ["a haiku", "a limerick", "a short poem", "a sonnet", "a two-sentence horror story",
                  "a 200-word short story", "a toast for a wedding", "song lyrics", "a riddle",
                  "a bedtime story", "a motivational speech", "a tongue twister"]
CREATIVE_THEMES = ["a lonely lighthouse", "a cat who hates Mondays", "JSON parsing errors",
                   "a failing CI pipeline", "the first day of spring", "a retired astronaut",
                   "a merge conflict", "YAML indentation", "a sourdough starter named Bob",
                   "a null pointer", "a rainy train station", "an overworked barista",
                   "Kubernetes pods restarting", "a regex that matches everything",
                   "Python decorators", "a bash script that never finishes", "SQL joins",
                   "JavaScript's this keyword", "Rust's borrow checker", "a Dockerfile that grew too big",
                   "a junior dev's first pull request", "a function with no tests", "legacy Java code",
                   "a CSV file with a missing comma", "an API that returns 500", "Go's gofmt"]

PEOPLE = ["Maya", "Tom", "Priya", "Jonas", "Aisha", "Lukas", "Chen", "Sofia", "Diego", "Hannah",
          "Kwame", "Elena", "Raj", "Ingrid", "Omar", "Yuki"]
ORGS = ["Brightline Logistics", "Cedar Health", "Northpeak Bank", "Fernwood Studio",
        "Kestrel Analytics", "Harbor Foods", "Quillon Labs", "Bluewater Realty", "Oakridge School"]
PLACES = ["Lisbon", "Denver", "Osaka", "Leeds", "Nairobi", "Montreal", "Krakow", "Austin",
          "Melbourne", "Valencia", "Rotterdam", "Seattle"]
PRODUCTS = ["wireless earbuds", "a ceramic frying pan", "a standing desk", "a hiking backpack",
            "a robot vacuum", "a linen shirt", "a smart thermostat", "an espresso grinder"]


def passage(rng: random.Random) -> str:
    """A short prose text of a random genre, with invented names and numbers."""
    p, q = rng.sample(PEOPLE, 2)
    org, place, prod = rng.choice(ORGS), rng.choice(PLACES), rng.choice(PRODUCTS)
    n, m = rng.randint(2, 90), rng.randint(100, 9000)
    genres = [
        f"Hi team, quick update from {p}. The {place} office move is delayed by {n} days because "
        f"the landlord has not finished the electrical work. Please keep working remotely until "
        f"further notice and send any equipment requests to {q} by Friday.",
        f"{org} announced on Monday that it will open a new site in {place}, creating about {m} "
        f"jobs over the next {n % 7 + 2} years. Local officials welcomed the news, although some "
        f"residents worry about traffic and rising rents near the site.",
        f"I bought {prod} last month. Setup was easy and it works well most days, but after about "
        f"{n} minutes it gets noisy and the app keeps logging me out. Support took {n % 9 + 2} days "
        f"to answer my email.",
        f"Dear {p}, thank you for your application for the coordinator role at {org}. We were "
        f"impressed by your experience, however we have decided to move forward with other "
        f"candidates at this time. We will keep your details on file.",
        f"Meeting notes: {p} will own the budget review. {q} raised concerns about the {place} "
        f"vendor contract, which renews in {n} days. Decision: pause hiring until Q{n % 4 + 1}. "
        f"Open question: who signs off on the new pricing?",
        f"Our {prod} is designed for everyday use. It weighs only {n * 10} grams, lasts up to "
        f"{n % 30 + 6} hours on one charge and comes with a {n % 3 + 1}-year warranty. Available "
        f"in three colours.",
        f"The study followed {m} adults in {place} for {n} weeks. Participants who walked after "
        f"dinner showed lower blood sugar peaks than those who rested, although the effect was "
        f"smaller in people over 60.",
        f"INTERVIEWER: so when did you start the business\n{p.upper()}: well it was {2000 + n % 24} "
        f"i think, me and {q} had no money at all, we sold stuff out of a garage in {place}",
        f"Due to scheduled maintenance, the {place} branch of {org} will be closed on Saturday. "
        f"Customers are kindly requested to use online services during this period. We apologise "
        f"for any inconvenience caused.",
        f"Ingredients: {n % 5 + 2} eggs, 200 g flour, a pinch of salt, 300 ml milk. Whisk "
        f"everything, rest the batter for {n % 40 + 10} minutes, then fry thin pancakes in butter "
        f"over medium heat.",
        f"Position: Senior Analyst at {org}, {place}. You will build dashboards, work with "
        f"finance on forecasting and mentor {n % 5 + 1} junior analysts. Salary from {m * 10} "
        f"per year, hybrid work possible.",
        f"Invoice {m}-{n} from {org}, dated 2024-0{n % 9 + 1}-1{n % 9}. Consulting services "
        f"{n} hours at 120.00 EUR, travel costs 340.50 EUR. Total due: {n * 120 + 340.5:.2f} EUR "
        f"within 30 days.",
        f"hey so i wanted to let u know the delivery to {place} was late again and the box was "
        f"damaged, the customer {p} is really upset and wants a refund or a replacement asap",
    ]
    return rng.choice(genres)


def short_message(rng: random.Random) -> str:
    """A one- or two-sentence message to be rewritten."""
    p, place = rng.choice(PEOPLE), rng.choice(PLACES)
    return rng.choice([
        f"I am writing to inform you that your request has been received and will be processed "
        f"in due course.",
        f"pls send me the report by tmrw, its urgent, {p} is asking",
        f"We regret to inform you that the event in {place} is cancelled.",
        f"The meeting are moved to tuesday becuase of the holliday.",
        f"Kindly be advised that payment must be remitted prior to shipment.",
        f"hey team the server was down last nite but its fixed now i think",
        f"Thank you for your email. I am currently out of office until Monday.",
        f"Our new app helps you track expenses and it is very good and useful for everyone.",
    ])


# Code snippets per language. ``{fn}`` and ``{var}`` are filled with invented names.
CODE: dict[str, list[str]] = {
    "python": [
        "def {fn}(items):\n    total = 0\n    for i in range(len(items)):\n        total += items[i]['price'] * items[i]['qty']\n    return total / len(items)\n",
        "import requests\n\ndef {fn}(url):\n    r = requests.get(url)\n    data = r.json()\n    return [x['{var}'] for x in data['results']]\n",
        "class {Fn}:\n    def __init__(self, path):\n        self.path = path\n        self.cache = {{}}\n\n    def get(self, key):\n        if key in self.cache:\n            return self.cache[key]\n        with open(self.path) as f:\n            for line in f:\n                k, v = line.split(',')\n                self.cache[k] = v\n        return self.cache[key]\n",
    ],
    "javascript": [
        "function {fn}(list) {{\n  let out = [];\n  for (var i = 0; i <= list.length; i++) {{\n    if (list[i].{var}) out.push(list[i]);\n  }}\n  return out;\n}}\n",
        "app.get('/api/{var}', async (req, res) => {{\n  const rows = await db.query('SELECT * FROM {var} WHERE id = ' + req.query.id);\n  res.json(rows);\n}});\n",
    ],
    "typescript": [
        "export async function {fn}(id: string): Promise<User> {{\n  const res = await fetch(`/users/${{id}}`);\n  return res.json() as User;\n}}\n",
        "interface {Fn}Props {{\n  {var}: string;\n  onSave: () => void;\n}}\n\nexport const {Fn} = ({{ {var}, onSave }}: {Fn}Props) => {{\n  const [value, setValue] = useState({var});\n  return <input value={{value}} onChange={{e => setValue(e.target.value)}} />;\n}};\n",
    ],
    "java": [
        "public class {Fn} {{\n    private final Map<String, Integer> {var} = new HashMap<>();\n\n    public int get(String key) {{\n        return {var}.get(key);\n    }}\n}}\n",
        "public List<Order> {fn}(List<Order> orders) {{\n    List<Order> result = new ArrayList<>();\n    for (Order o : orders) {{\n        if (o.getStatus() == \"PAID\") {{\n            result.add(o);\n        }}\n    }}\n    return result;\n}}\n",
    ],
    "go": [
        "func {fn}(path string) (map[string]int, error) {{\n\tf, _ := os.Open(path)\n\tscanner := bufio.NewScanner(f)\n\tcounts := map[string]int{{}}\n\tfor scanner.Scan() {{\n\t\tcounts[scanner.Text()]++\n\t}}\n\treturn counts, nil\n}}\n",
    ],
    "rust": [
        "fn {fn}(v: &Vec<i32>) -> i32 {{\n    let mut best = v[0];\n    for x in v.iter() {{\n        if *x > best {{ best = *x; }}\n    }}\n    best\n}}\n",
    ],
    "sql": [
        "SELECT c.name, SUM(o.total) AS revenue\nFROM customers c\nJOIN orders o ON o.customer_id = c.id\nWHERE o.created_at > '2024-01-01'\nGROUP BY c.id\nORDER BY revenue DESC;\n",
        "UPDATE {var} SET status = 'archived'\nWHERE updated_at < NOW() - INTERVAL '90 days';\n",
    ],
    "bash": [
        "#!/bin/bash\nfor f in $(ls *.csv); do\n  cat $f | grep -v '^#' > clean_$f\ndone\necho done\n",
    ],
    "csharp": [
        "public async Task<IActionResult> {Fn}(int id)\n{{\n    var item = await _db.Items.FindAsync(id);\n    return Ok(item.{Var}.ToString());\n}}\n",
    ],
    "kotlin": [
        "fun {fn}(users: List<User>): Map<String, Int> {{\n    val result = mutableMapOf<String, Int>()\n    users.forEach {{ result[it.city] = (result[it.city] ?: 0) + 1 }}\n    return result\n}}\n",
    ],
    "cpp": [
        "int {fn}(std::vector<int>& v) {{\n    int sum = 0;\n    for (int i = 0; i <= v.size(); i++) {{\n        sum += v[i];\n    }}\n    return sum;\n}}\n",
    ],
    "ruby": [
        "def {fn}(records)\n  records.map {{ |r| r[:{var}] }}.compact.uniq\nend\n",
    ],
    "php": [
        "function {fn}($id) {{\n    $row = mysqli_query($conn, \"SELECT * FROM users WHERE id = $id\");\n    return mysqli_fetch_assoc($row);\n}}\n",
    ],
}
LANG_NAMES = {"python": "Python", "javascript": "JavaScript", "typescript": "TypeScript",
              "java": "Java", "go": "Go", "rust": "Rust", "sql": "SQL", "bash": "Bash",
              "csharp": "C#", "kotlin": "Kotlin", "cpp": "C++", "ruby": "Ruby", "php": "PHP"}
FENCE_TAGS = {"csharp": "cs", "cpp": "cpp"}
FN_NAMES = ["parse_rows", "load_config", "merge_users", "compute_total", "fetch_items",
            "normalize_email", "retry_request", "build_index", "count_words", "sync_orders"]
VAR_NAMES = ["email", "price", "status", "tags", "owner", "created", "score", "region"]

# Things a user may ask code for (language chosen separately).
CODE_TASKS = [
    "a function that checks whether a string is a valid IBAN",
    "a script that renames all .jpeg files in a folder to .jpg",
    "a function that merges two sorted lists",
    "a class for an LRU cache with get and put",
    "a CLI tool that counts lines of code per file extension",
    "a function that parses ISO 8601 durations like PT1H30M",
    "a rate limiter using a token bucket",
    "a unit test for a function that splits a full name into first and last name",
    "a REST endpoint that returns paginated products",
    "a function that retries an HTTP call with exponential backoff",
    "a binary search over a sorted array of timestamps",
    "a function that deduplicates customer records by email",
    "a web scraper that collects article titles from a page",
    "a function that converts Roman numerals to integers",
    "a producer-consumer queue with two worker threads",
    "a function that validates a password against a policy",
    "a migration that adds a nullable column and backfills it",
    "a GitHub Actions workflow that runs the tests on every push",
    "a Dockerfile for a small Flask app",
    "a regex that matches UK postcodes",
    "a React component that shows a countdown timer",
    "a query that returns the top 5 products by revenue per month",
    "a cron job that backs up a Postgres database every night",
    "a function that flattens a nested dictionary",
]

# Config-as-code and build files: asking for these is asking for code.
CONFIG_TASKS = [
    "a Makefile with build, test and clean targets for a Go project",
    "an nginx config that proxies /api to port 8080 and serves static files",
    "a Terraform module for an S3 bucket with versioning",
    "a docker-compose file with Postgres, Redis and the web app",
    "a Kubernetes Deployment and Service manifest for a small API",
    "a systemd unit that restarts my worker on failure",
    "a .gitignore for a Node and Python monorepo",
    "a GitLab CI pipeline that lints, tests and builds an image",
    "a pre-commit config with black, ruff and mypy",
    "an Ansible playbook that installs and starts nginx",
]

# Programming tasks for "how do I ..." questions whose answer is code.
HOWTO_TASKS = [
    "read a large JSON file line by line without loading it all", "parse command-line flags",
    "retry a failed HTTP request with backoff", "sort a list of objects by two fields",
    "stream a file upload to S3", "hash a password securely", "read environment variables with defaults",
    "group a list by a key and count", "format a date as ISO 8601 in UTC", "deep-copy a nested object",
    "run a function every 5 minutes", "validate an email address", "merge two dictionaries",
    "compute a 7-day rolling average", "write rows to a CSV file", "mock a database call in a unit test",
    "paginate results from a REST API", "limit concurrency to 5 workers",
]
SHELL_TASKS = [
    "list the 20 biggest files under this directory", "find files changed in the last day",
    "count lines in all .py files", "replace foo with bar in every .txt file", "show which process uses port 8080",
    "tar and gzip a folder excluding node_modules", "watch a log file for errors", "delete merged git branches",
    "print disk usage per folder, human readable", "download a file and verify its sha256",
]
