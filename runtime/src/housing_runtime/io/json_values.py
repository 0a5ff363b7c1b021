"""JSON text -> Python values, with a key given twice refused (json would keep the last
silently) and every failure one clear line. Shared by the JSON readers and the server."""

from __future__ import annotations

import json

from housing_runtime.errors import UserError, shown


def object_without_duplicates(pairs: list[tuple[str, object]]) -> dict:
    """json's object hook: a key given twice is ambiguous (json would keep the last silently)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise UserError(f"duplicate key {shown(key)} in a JSON object; each feature must appear once")
            seen.add(key)
    return obj


def parse_json(text: str, where: str):
    """json.loads with duplicate keys refused and every failure one clear line."""
    try:
        return json.loads(text, object_pairs_hook=object_without_duplicates)
    except UserError as err:
        raise UserError(f"{where}: {err}") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{where}: bad JSON ({err.msg} at line {err.lineno}, column {err.colno})") from None
    except RecursionError:
        raise UserError(f"{where}: JSON nested too deeply; expected objects of 8 numbers") from None
    except ValueError as err:  # an integer with more digits than Python converts (sys.int_info)
        raise UserError(f"{where}: bad JSON ({shown(str(err))})") from None
