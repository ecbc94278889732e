"""The command line the val-split searches share (tools/student_search.py, tools/finetune_search.py): named
settings as positional arguments, `--seed`, `--root`, `--log`, `--list` and `--report`, plus each search's own
options, and the JSON-lines log they append to."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable, Sequence


def parse(doc: str, settings: dict[str, dict[str, Any]], log: Path, report: Callable[[Path], str],
          add_options: Callable[[argparse.ArgumentParser], None] = lambda ap: None,
          argv: list[str] | None = None) -> argparse.Namespace | None:
    """Parse the arguments. `--list` (the settings) and `--report` (`report(log)`, the log as markdown) are
    printed here and give None; otherwise at least one known setting must be named."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("settings", nargs="*", help=f"settings to run: {', '.join(settings)}")
    ap.add_argument("--seed", type=int, default=0, help="run and probe seed (default 0)")
    ap.add_argument("--root", default="runs", help="runs folder (default runs/)")
    ap.add_argument("--log", default=str(log), help=f"JSON-lines log (default {log})")
    ap.add_argument("--list", action="store_true", help="list the settings and exit")
    ap.add_argument("--report", action="store_true", help="print the log as markdown and exit")
    add_options(ap)
    args = ap.parse_args(argv)
    args.error = ap.error
    if args.list:
        for name, o in settings.items():
            print(f"{name:<14} {json.dumps(o)}")
        return None
    if args.report:
        print(report(Path(args.log)))
        return None
    unknown = [s for s in args.settings if s not in settings]
    if unknown or not args.settings:
        ap.error(f"name settings from {list(settings)}" + (f"; unknown: {unknown}" if unknown else ""))
    return args


def pick(args: argparse.Namespace, option: str, allowed: Sequence[str]) -> list[str]:
    """The comma-separated values of `--option`, each one of `allowed` (an argparse error otherwise)."""
    text = getattr(args, option)
    picked = [s.strip() for s in text.split(",") if s.strip()]
    if not picked or any(s not in allowed for s in picked):
        args.error(f"--{option} takes some of {list(allowed)}, got {text!r}")
    return picked


def log_rows(log: Path) -> list[dict[str, Any]]:
    """Every entry of a JSON-lines log (none if the file does not exist yet)."""
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def append(log: Path, entry: dict[str, Any]) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as f:
        f.write(json.dumps(entry) + "\n")
