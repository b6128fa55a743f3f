"""Where the settings come from (files, environment) and how a wrong one is reported.

The SDK can read both, but a wrong value then ends in a traceback (``int('abc')`` for
``TAP_MARKETO_ACTIVITIES_PAGE_SIZE=abc``), a list of ids written the way people write
them (``1,6``) is refused, and a schema error prints the value itself, which for a
``client_secret`` given as an object is the secret. Here every value is parsed or
refused naming the setting, and a schema error names the setting and what it must be,
never the value.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import os
import re
import sys
import typing as t
from pathlib import Path, PurePath

import jsonschema
from dotenv import dotenv_values, find_dotenv
from singer_sdk.exceptions import ConfigValidationError

from tap_marketo_activities.records import parse_datetime

ENV_PREFIX = "TAP_MARKETO_ACTIVITIES_"
TRUTHY = frozenset({"true", "1", "yes", "on"})
FALSY = frozenset({"false", "0", "no", "off", ""})

_TYPE_WORDS = {
    "string": "text (a JSON string)",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "an object",
}


def refuse(message: str) -> t.NoReturn:
    """Stop with one line (the SDK's command line prints it and exits 1)."""
    raise ConfigValidationError(message, errors=[message])


def read_config(config: t.Any) -> dict[str, t.Any]:
    """The settings from a dict, a file path, or several paths (later files win)."""
    if not config:
        return {}
    if isinstance(config, dict):
        return dict(config)
    paths = [config] if isinstance(config, (str, PurePath)) else list(config)
    merged: dict[str, t.Any] = {}
    for path in paths:
        merged.update(read_config_file(path))
    return merged


def read_option_file(path: str | PurePath, option: str) -> str:
    """The text of a --config, --state or --catalog file, or one line naming what is wrong.

    Each line starts with the file's name, as ``cat`` and compilers say it, then the option
    and the problem: ``c.json: The --config file does not exist.``

    Read here rather than by the command line library: it refused a missing --state or
    --catalog file with a three-line usage message (exit 2), and an unreadable one ended
    in a traceback. ``-`` is standard input, as it was.
    """
    try:
        if str(path) == "-":
            return sys.stdin.read()
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        refuse(f"{path}: The {option} file does not exist.")
    except UnicodeDecodeError as exc:
        refuse(
            f"{path}: The {option} file is not UTF-8 text (byte {exc.start} cannot be read); "
            "save it as UTF-8 JSON."
        )
    except OSError as exc:
        refuse(f"{path}: The {option} file cannot be read ({exc.strerror}).")


def parse_json_text(text: str, path: str | PurePath, option: str, advice: str = "") -> t.Any:
    """The JSON in a file's text; refused naming the file, the line and the column."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        refuse(
            f"{path}: The {option} file is not valid JSON: {exc.msg} at line {exc.lineno}, "
            f"column {exc.colno}.{advice}"
        )
    except (ValueError, RecursionError) as exc:
        refuse(f"{path}: The {option} file is not valid JSON ({exc}).{advice}")


def read_config_file(path: str | PurePath) -> dict[str, t.Any]:
    """One --config file's settings; refused in one line naming the file and the problem."""
    value = parse_json_text(read_option_file(path, "--config"), path, "--config")
    if not isinstance(value, dict):
        refuse(f"{path}: The --config file must hold a JSON object of settings.")
    return value


def _items(text: str) -> list[str]:
    """A list written as JSON (``[1, 6]``) or comma-separated (``1,6``)."""
    stripped = text.strip()
    if stripped.startswith("["):
        value = json.loads(stripped)
        if not isinstance(value, list):
            raise ValueError(stripped)
        return [str(item) if not isinstance(item, str) else item for item in value]
    return [item.strip() for item in stripped.split(",") if item.strip()]


def _parse(name: str, variable: str, text: str, schema: dict[str, t.Any]) -> t.Any:
    kinds = schema.get("type", "string")
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    try:
        if "integer" in kinds:
            return int(text.strip())
        if "number" in kinds:
            return float(text.strip())
        if "boolean" in kinds:
            word = text.strip().lower()
            if word not in TRUTHY | FALSY:
                raise ValueError(word)
            return word in TRUTHY
        if "array" in kinds:
            item_kinds = (schema.get("items") or {}).get("type", "string")
            items = _items(text)
            if "integer" in item_kinds:
                return [int(item) for item in items]
            return items
        if "object" in kinds:
            value = json.loads(text)
            if not isinstance(value, dict):
                raise ValueError(text)
            return value
    except ValueError:
        refuse(
            f"{name} from the environment ({variable}) must be "
            f"{_env_shape(kinds, schema)}; fix or unset {variable}."
        )
    return text


def _env_shape(kinds: list[str], schema: dict[str, t.Any]) -> str:
    if "array" in kinds:
        item_kinds = (schema.get("items") or {}).get("type", "string")
        what = "whole numbers" if "integer" in item_kinds else "values"
        return f"{what} separated by commas (1,6) or a JSON list ([1, 6])"
    if "boolean" in kinds:
        return "true or false"
    return next((_TYPE_WORDS[k] for k in kinds if k in _TYPE_WORDS), "text")


def env_settings(schema: dict[str, t.Any]) -> dict[str, t.Any]:
    """Settings from ``TAP_MARKETO_ACTIVITIES_<NAME>`` variables (and a ``.env`` in the cwd).

    Variables already in the environment win over the ``.env`` file.
    """
    found = find_dotenv(usecwd=True)
    dotenv = {k: v for k, v in dotenv_values(found).items() if v is not None} if found else {}
    environment = {**dotenv, **os.environ}
    result: dict[str, t.Any] = {}
    for name, property_schema in schema.get("properties", {}).items():
        variable = ENV_PREFIX + name.upper().replace("-", "_")
        if variable in environment:
            result[name] = _parse(name, variable, environment[variable], property_schema)
    return result


def _describe(error: jsonschema.ValidationError, schema: dict[str, t.Any]) -> str:
    """One line naming the setting and what it must be; never the value (it may be a secret)."""
    path = [str(p) for p in error.absolute_path]
    name = path[0] if path else "the config"
    where = name if len(path) <= 1 else f"every item of {name}"
    validator, limit = error.validator, error.validator_value
    if validator == "type":
        kinds = [limit] if isinstance(limit, str) else list(limit)
        words = " or ".join(_TYPE_WORDS.get(k, k) for k in kinds if k != "null")
        return f"{where} must be {words}."
    if validator == "minimum":
        return f"{where} must be at least {limit}."
    if validator == "maximum":
        return f"{where} must be at most {limit}."
    if validator in {"minItems", "minLength"}:
        return f"{where} must not be empty."
    if validator == "required":
        return f"{error.message.split(' ', 1)[0].strip(chr(39))} is required."
    description = schema.get("properties", {}).get(name, {}).get("description", "")
    return f"{where} is not valid ({validator}). {description}".strip()


def schema_errors(schema: dict[str, t.Any], config: t.Mapping[str, t.Any]) -> list[str]:
    """Every way ``config`` breaks ``schema``, one line each, setting names only."""
    validator = jsonschema.Draft7Validator(schema)
    lines: dict[str, str] = {}  # the first problem of each setting is enough to fix it
    for error in validator.iter_errors(dict(config)):
        name = str(error.absolute_path[0]) if error.absolute_path else ""
        lines.setdefault(name, _describe(error, schema))
    return [lines[name] for name in sorted(lines)]


def unknown_settings(schema: dict[str, t.Any], config: t.Mapping[str, t.Any]) -> list[str]:
    """One line per setting the tap does not know, naming the closest one it does.

    A misspelled setting (``lookback_minute``) would otherwise be ignored and the run
    go on with the default. Keys starting with ``_`` are Meltano's own extras (``_select``,
    ``_metadata``...), never read by the tap, and are let through; the SDK's built-in
    settings (stream maps, flattening, batch) are in the schema the tap checks against.
    """
    known = sorted(schema.get("properties", {}))
    lines = []
    for key in sorted(str(k) for k in config):
        if key in known or key.startswith("_"):
            continue
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}?" if close else "the README lists every setting."
        lines.append(f"Unknown setting {key!r}: {hint}")
    return lines


_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


def start_date_value(value: str) -> dt.datetime:
    """``start_date`` as an aware UTC time; ValueError with the line a person should read.

    A date alone means midnight UTC (Meltano declares the setting ``date_iso8601``);
    each way a value can be wrong gets its own words: not a date, no zone, in the future.
    """
    text = value.strip()
    example = "e.g. 2024-01-01T00:00:00Z, 2024-01-01T00:00:00+01:00 or 2024-01-01"
    try:
        if _DATE_ONLY.fullmatch(text):
            when = dt.datetime.combine(dt.date.fromisoformat(text), dt.time(), dt.timezone.utc)
        else:
            when = parse_datetime(text)
    except ValueError as exc:
        reason = str(exc)
        if reason.endswith("has no time zone") and from_meltano():
            msg = meltano_rewrote_start_date(value)
        elif reason.endswith("has no time zone"):
            msg = f"start_date {value!r} needs a time zone, {example}."
        else:
            msg = f"start_date {value!r} is not a date ({reason}); write it as ISO 8601, {example}."
        raise ValueError(msg) from None
    if when > dt.datetime.now(dt.timezone.utc):
        msg = (
            f"start_date {value!r} is in the future; nothing has happened there yet. Use "
            "the earliest time whose activities you want."
        )
        raise ValueError(msg)
    return when


#: Set by Meltano in the environment of every extractor it runs (its plugin info variables).
MELTANO_EXTRACTOR = "MELTANO_EXTRACTOR_NAME"


def from_meltano() -> bool:
    """True when Meltano started the tap (and so may have re-written date settings)."""
    return bool(os.environ.get(MELTANO_EXTRACTOR))


def meltano_rewrote_start_date(value: str) -> str:
    """The line for a start_date with no zone that came from Meltano.

    Meltano (4.x, setting kind ``date_iso8601``) re-writes a date before it hands it over:
    an unquoted date-time in meltano.yml loses its zone (``2024-01-01T10:00:00Z`` and
    ``2024-01-01 10:00:00+02:00`` both arrive as ``2024-01-01T10:00:00``: the offset is
    dropped, not applied), and forms it does not take for ISO 8601 (``2024-01-01 10:00``,
    ``30 days ago``) are parsed and re-written. The value the tap received is quoted as
    received and said to come from Meltano, so the person does not look for a string they
    never wrote; it is refused rather than read as UTC, which would shift a dropped offset.
    """
    name = os.environ.get(MELTANO_EXTRACTOR) or "the extractor"
    return (
        f"start_date reached the tap from Meltano ({name}) as {value!r}, with no time zone. "
        "Meltano re-writes date settings: a date-time written unquoted in meltano.yml loses "
        "its zone (an offset such as +02:00 is dropped, not applied), and other forms "
        "('2024-01-01 10:00', '30 days ago') are re-written, so this may not be what you "
        "wrote. Quote it in meltano.yml with its zone, e.g. start_date: "
        "'2024-01-01T00:00:00Z', or give a date alone (2024-01-01)."
    )
