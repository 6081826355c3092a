"""A profile's world and its params files, for the Makefile, with the standard library only.

`python3 lib/src/paradox/profile_world.py PROFILE` prints `WORLD FILE...`: the world (`toy` or
`real`), then `params/base.yaml`, the profiles PROFILE extends (most general first) and PROFILE's
own file, as `python -m paradox.params --world PROFILE` prints them. The Makefile runs it with the
system python3 because it must know the stages before `.venv` (and PyYAML) exists: on a fresh
checkout a real-world profile has no stage 00 to schedule. It reads only two top-level keys,
`world:` and `extends:`, written as plain or quoted scalars; anything else it cannot read for
sure is an error (exit 2), never a guess. `make check-params` compares its answer with
`paradox.params` before any stage runs, and tests/test_profile_world.py checks every profile.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

KEYS = ("world", "extends")
# A profile name becomes a path (params/<name>.yaml, runs/<name>/): the pattern of paradox.params.NAME.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
WORLDS = ("toy", "real")
# `key: value`, `key: "value"` or `key: 'value'`, then an optional comment; at column 0 (top level).
LINE = re.compile(
    r"""^(?P<key>[A-Za-z_][\w.-]*)\s*:(?:\s+(?P<value>"[^"]*"|'[^']*'|[^\s#'"][^#]*?))?\s*(?:#.*)?$"""
)


class ProfileError(ValueError):
    """A params file this reader cannot read for sure."""


def top_level(path: Path) -> dict[str, str]:
    """The `world` and `extends` values set at the top level of one params file."""
    if not path.is_file():
        raise ProfileError(f"{path}: params file not found")
    found: dict[str, str] = {}
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.rstrip()
        if not line or line[0] in " \t#" or line in ("---", "..."):
            continue  # blank, nested, comment, document marker
        if line[0] in "{[":
            raise ProfileError(f"{path}:{n}: a flow-style top level; write one 'key: value' per line")
        m = LINE.match(line)
        key = m.group("key") if m else line.split(":", 1)[0].strip()
        if key not in KEYS:
            continue
        value = m.group("value") if m else None
        if not value or value[0] in "|>&*!":
            raise ProfileError(f"{path}:{n}: key '{key}' must be a plain one-line value, got {raw!r}")
        found[key] = value[1:-1] if value[0] in "\"'" else value
    return found


def world_and_files(profile: str, params_dir: Path) -> tuple[str, list[Path]]:
    """(world, [base.yaml, ancestors..., the profile's file]), as `paradox.params` layers them."""
    chain: list[Path] = []
    world: str | None = None
    name: str | None = profile
    while name is not None:
        if not NAME.fullmatch(name) or ".." in name:
            where = f"{chain[-1]}: key 'extends'" if chain else "PROFILE"
            raise ProfileError(
                f"{where}: {name!r} is not a profile name (letters, digits, '.', '_', '-'; no '..')"
            )
        path = params_dir / f"{name}.yaml"
        if path in chain:
            raise ProfileError(f"{chain[-1]}: key 'extends': profiles extend each other in a cycle ({name})")
        keys = top_level(path)
        chain.append(path)
        world = world or keys.get("world")  # the most specific file that sets it wins
        name = keys.get("extends")
        if name == "base":
            raise ProfileError(f"{path}: key 'extends' must name another profile (base.yaml is always first)")
    base = params_dir / "base.yaml"
    world = world or top_level(base).get("world")
    if world not in WORLDS:
        raise ProfileError(f"profile {profile}: world is {world!r}, expected one of {list(WORLDS)}")
    return world, [base, *chain[::-1]]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python3 profile_world.py PROFILE", file=sys.stderr)
        return 2
    params_dir = Path("params")  # the Makefile runs from the project root
    try:
        world, files = world_and_files(args[0], params_dir)
    except ProfileError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(" ".join([world, *(str(f) for f in files)]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
