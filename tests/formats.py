"""Parsers for the structured files a generated project contains, by suffix."""

import json
import tomllib

import yaml


def parse_toml(text):
    """Return the data of a TOML document."""
    return tomllib.loads(text)


def parse_yaml(text):
    """Return the documents of a YAML stream, as a list."""
    return list(yaml.safe_load_all(text))


PARSERS = {
    ".json": json.loads,
    ".toml": parse_toml,
    ".yaml": parse_yaml,
    ".yml": parse_yaml,
}
"""File suffix -> function that parses the file's text (raising on bad syntax)."""
