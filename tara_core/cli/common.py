"""What every subcommand shares: consoles, user errors, parsing of --param/--rho/--tasks, output writers, and
the progress bar of a data-driven run. Heavy libraries are imported inside the functions that need them, so
``--help`` answers without loading torch."""
from __future__ import annotations

import contextlib
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

# markup off: paths and values are printed literally ("[v2]" in a folder name stays "[v2]"); styles are
# given as style= where wanted
console = Console(stderr=True, soft_wrap=True, markup=False, highlight=False)
out = Console(markup=False, highlight=False)


class UsageError(ValueError):
    pass


def add_command(sub, name: str, summary: str, description: str, examples: list[str]):
    """A subcommand whose --help shows its description, every option's default and runnable examples."""
    import argparse

    class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
        pass

    import textwrap

    text = textwrap.fill(description, 100) + "\n\nexamples:\n" + "\n".join(f"  tara-studio {e}" for e in examples)
    return sub.add_parser(name, help=summary, description=text, formatter_class=Formatter)


def positive_int(text: str) -> int:
    """argparse type: an integer ≥ 1."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_params(items: list[str] | None) -> dict:
    params = {}
    for item in items or []:
        if "=" not in item:
            raise UsageError(f"--param expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        params[key.strip()] = value.strip()
    return params


def parse_rho(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"--rho expects comma-separated numbers, got {text!r}") from None


def method_list(text: str) -> list[str]:
    from ..methods import get_method

    methods = [m.strip() for m in text.split(",") if m.strip()]
    for m in methods:
        get_method(m)
    return methods


def method_params(items: list[str] | None, methods: list[str]) -> dict[str, dict]:
    """--param METHOD.key=value (or key=value for every method that has it) → {method: params}."""
    from ..methods import get_method

    per: dict[str, dict] = {m: {} for m in methods}
    for key, value in parse_params(items).items():
        if "." in key:
            method, name = key.split(".", 1)
            if method not in per:
                raise UsageError(f"--param {key}: {method!r} is not one of the evaluated methods")
            per[method][name] = value
        else:
            hits = [m for m in methods if any(p.name == key for p in get_method(m).params)]
            if not hits:
                raise UsageError(f"--param {key}: none of the methods takes it")
            for m in hits:
                per[m][key] = value
    return per


def task_indices(zoo, text: str | None) -> list[int] | None:
    if not text:
        return None
    names = [t.strip() for t in text.split(",") if t.strip()]
    missing = [n for n in names if n not in zoo.task_names]
    if missing:
        raise UsageError(f"unknown task(s) {', '.join(missing)}; {zoo.name} has {', '.join(zoo.task_names)}")
    return [zoo.task_names.index(n) for n in names]


def write_json(path: str | None, payload) -> None:
    if path:
        from ..export import atomic_file_write

        atomic_file_write(Path(path), json.dumps(payload, indent=2, default=str))


def write_table(df, json_path: str | None, csv_path: str | None) -> None:
    from ..export import atomic_file_write

    if json_path:
        atomic_file_write(Path(json_path), df.to_json(orient="records", indent=2))
    if csv_path:
        atomic_file_write(Path(csv_path), df.to_csv(index=False))


def write_frame_to(df, path: str) -> None:
    """Write a frame to ``path`` as CSV (``.csv``) or JSON records (anything else)."""
    p = Path(path)
    write_table(df, None if p.suffix == ".csv" else str(p), str(p) if p.suffix == ".csv" else None)
    console.print(f"wrote {p}")


def print_frame(df, title: str) -> None:
    table = Table(title=title)
    for col in df.columns:
        table.add_column(str(col), justify="right" if df[col].dtype.kind in "fi" else "left")
    for row in df.itertuples(index=False):
        table.add_row(*[f"{v:.3g}" if isinstance(v, float) else str(v) for v in row])
    if out.is_terminal:
        out.print(table)  # fitted to the window
    else:  # a pipe or file has no width to fit: never truncate a header or a value
        from rich.measure import Measurement

        saved = out.width
        out.width = max(saved, Measurement.get(out, out.options.update(max_width=100_000), table).maximum)
        try:
            out.print(table)
        finally:
            out.width = saved


@contextlib.contextmanager
def fit_progress(method: str, params: dict):
    """A rich progress bar for a data-driven run (optimization steps, or a preference model's one-time fit);
    yields the library's progress callback."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from ..methods import get_method

    spec = get_method(method)
    what = "fit steps (once, then cached)" if spec.preference_of else "steps"
    with Progress(TextColumn(f"{method}"), BarColumn(), TextColumn("{task.completed}/{task.total} " + what),
                  TextColumn("loss {task.fields[loss]:.4f}"), TimeRemainingColumn(), console=console,
                  transient=bool(spec.preference_of)) as bar:
        job = bar.add_task(method, total=spec.resolve(params)["steps"], loss=float("nan"))
        yield lambda s, t, losses: bar.update(job, completed=s, total=t, loss=losses["loss"])


@contextlib.contextmanager
def progress_bar(label: str, unit: str = "steps"):
    """A rich progress bar on stderr; yields the library's ``progress(done, total)`` callback."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn(unit), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        job = bar.add_task(label, total=None)
        yield lambda done, total, *_: bar.update(job, completed=done, total=total)


def run_learned(zoo, method: str, params: dict, rho, tasks=None):
    """A data-driven method on a zoo with a progress bar."""
    from ..run import run_method

    with fit_progress(method, params) as progress:
        return run_method(zoo, method, params, rho, tasks, progress=progress)
