"""``tandem`` command line: serve the gateway, explain routing, check policy files."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Iterator, Optional

import typer

# Offline at run time, whatever the caller's environment says.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DEFAULT_POLICY = str(Path(__file__).resolve().parent.parent / "policies" / "default.yaml")

app = typer.Typer(help="Tandem: a hybrid AR/diffusion routing gateway.", no_args_is_help=True)
route_app = typer.Typer(help="Routing decisions.", no_args_is_help=True)
policy_app = typer.Typer(help="Policy files.", no_args_is_help=True)
app.add_typer(route_app, name="route")
app.add_typer(policy_app, name="policy")


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8000, help="TCP port."),
    policy: str = typer.Option(DEFAULT_POLICY, help="Routing policy YAML."),
    preload: bool = typer.Option(True, help="Load local models at start-up (else on first use)."),
    log_level: str = typer.Option("info", help="debug | info | warning | error."),
) -> None:
    """Run the OpenAI-compatible gateway."""
    import logging

    from gateway.app import create_app
    from gateway.http_server import run
    from router.policy import PolicyError

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        application = create_app(policy, preload=preload)
    except PolicyError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    run(application, host, port, application.state.gateway.holder.policy.server, log_level)


def _requests(source: str, jsonl: bool) -> Iterator[dict[str, Any]]:
    text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    if not jsonl:
        yield json.loads(text)
        return
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise typer.BadParameter(f"{source}:{number}: not JSON: {exc}") from None
        yield row["request"] if isinstance(row, dict) and isinstance(row.get("request"), dict) else row


@route_app.command("explain")
def route_explain(
    source: Optional[str] = typer.Argument(None, help="Request body JSON file, or - for stdin."),
    policy: str = typer.Option(DEFAULT_POLICY, help="Routing policy YAML."),
    jsonl: Optional[str] = typer.Option(None, "--jsonl", help="One request per line (bare or {\"request\": ...})."),
) -> None:
    """Print the routing decision for requests, without generating (loads no generation model)."""
    from router.classifier import get_classifier
    from router.policy import PolicyError, load_policy

    if (source is None) == (jsonl is None):
        raise typer.BadParameter("give exactly one of FILE|- or --jsonl FILE")
    try:
        loaded = load_policy(policy)
    except PolicyError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    classifier = get_classifier()
    for body in _requests(jsonl or source, jsonl is not None):
        typer.echo(json.dumps(explain_one(loaded, classifier, body)))


def explain_one(policy, classifier, body: dict[str, Any]) -> dict[str, Any]:
    alias = policy.alias(body.get("model", "auto"))
    if alias is None:
        return {"error": f"unknown model {body.get('model')!r}; known: {sorted(policy.models)}"}
    from router.plan import RequestPlan

    plan = RequestPlan.of(body)
    classification = classifier.classify(plan, use_content=alias.classify)
    return policy.decide(plan, classification, {}).explain()


@policy_app.command("check")
def policy_check(path: str = typer.Argument(..., help="Policy YAML to validate.")) -> None:
    """Validate a policy file; prints FILE:LINE: message per problem and exits non-zero."""
    from router.policy import check_policy_file

    problems, warnings = check_policy_file(path)
    for line in problems + warnings:
        typer.echo(line, err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"{path}: ok")


if __name__ == "__main__":
    app()
