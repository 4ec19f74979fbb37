"""Job: `recsys config show | validate | schema` — the effective configuration and its schema."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from recsys.config import (
    PipelineConfig,
    config_hash,
    config_layers,
    documented_toml,
    load_config,
    value_origins,
)
from recsys.jobs.common import CONFIG_ENV, config_file

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    show = sub.add_parser(
        "show", help="the effective config: defaults < --config file < RECSYS_<SECTION>__<KEY>"
    )
    show.add_argument("--json", action="store_true", help="JSON: values, origins and hash")
    check = sub.add_parser(
        "validate", help="check a config file and the environment; exit 1 if bad"
    )
    check.add_argument("--json", action="store_true", help="print the result as JSON")
    for cmd in (show, check):
        cmd.add_argument(
            "--config",
            type=Path,
            default=None,
            help=f"pipeline config (TOML; default ${CONFIG_ENV})",
        )
    sub.add_parser("schema", help="JSON Schema of the config file (for editors' completion)")


def schema() -> dict:
    """JSON Schema (2020-12) of the TOML config file, every key described."""
    out = {"$schema": SCHEMA_DIALECT, **PipelineConfig.model_json_schema()}
    out["title"] = "recsys pipeline configuration"
    return out


def run(args: argparse.Namespace) -> int:
    if args.config_command == "schema":
        print(json.dumps(schema(), indent=2))
        return 0
    path = config_file(args)
    config = load_config(path)  # a bad file or variable raises ConfigError: one line, exit 1
    origins = value_origins(config_layers(path))
    if args.config_command == "validate":
        result = {"ok": True, "config": str(path) if path else None, "hash": config_hash(config)}
        print(json.dumps(result) if args.json else f"ok: config hash {result['hash']}")
        return 0
    if args.json:
        payload = {
            "config": config.model_dump(mode="json"),
            "origins": origins,
            "hash": config_hash(config),
        }
        print(json.dumps(payload, indent=2))
    else:
        print(f"# config hash {config_hash(config)}\n" + documented_toml(config, origins))
    return 0
