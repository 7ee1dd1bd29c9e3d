"""Throw hostile input at `recipe lint/show/plan/preview` and count what breaks.

    python tools/fuzz_inputs.py                      # 2,000 cases per property
    python tools/fuzz_inputs.py --cases 20000 --seed 7

Properties (hypothesis strategies, shared with tests/test_hostile_input.py, which runs a
few dozen of each in CI):
- recipes: the shipped recipes with one to three random mutations (a value replaced by a
  huge number, NaN, unicode, a tag, an alias, deep nesting; a line deleted, doubled or
  cut; random characters inserted);
- documents: random YAML documents, alias bombs, deep nesting, tags, random text;
- overrides: random `--set` arguments (YAML snippets, bytes that are not UTF-8);
- data: the demo recipe with random train data (bytes, encodings, malformed JSON lines,
  odd rows, CSV).

A case fails when a command exits with anything but 0 or 1, exits 1 without a
diagnostic, prints a traceback, raises, takes over TIME_LIMIT_S or allocates over
MEMORY_LIMIT_MB (Python allocations, measured with tracemalloc). Prints, per property,
the cases tried and failed, the slowest case and the largest allocation, then the first
failures in full.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

TIME_LIMIT_S = 5.0
MEMORY_LIMIT_MB = 300
DIAGNOSTIC = re.compile(
    r"(^|: )error(\[[a-z0-9-]+\])?: ", re.M
)  # `error: ...`, `...: error[rule]: ...`


def shipped_recipes() -> dict[str, str]:
    from runner import RECIPES_DIR

    return {p.stem: p.read_text(encoding="utf-8") for p in sorted(RECIPES_DIR.glob("*.yaml"))}


# --- strategies ---------------------------------------------------------------------

HOSTILE_SNIPPETS = [
    "1e400", "-1e400", ".nan", ".inf", "-.Inf", "0", "-1", "-3", "1.5", "2.5",
    "9" * 30, "1" + "0" * 5000, "0x" + "f" * 40, "0o777", "1_000", "!foo 42", "!!set {a}",
    "!!python/object:os.system x", "!!binary aGk=", "*undefined", "&a 1", "&a [*a]",
    "[" * 300 + "]" * 300, "{a: " * 60 + "1" + "}" * 60, "'unterminated", '"\\x00"',
    "|\n  block", "? complex key", "- a\n- b", "{}", "[]", "null", "~", "yes", "no", "on",
    "2024-01-01", "2024-01-01 10:00:00", "<<: *x", "\t", "\ufeff", "é", "\U0001f600" * 50,
    "a" * 10000, '"a\\0b"', '"\\x00"', "%YAML 1.1", "---", "...", '"\\ud83d"', '"\\ud83d\\ude00"', '"\\udcff x"',
]  # fmt: skip
LONE_SURROGATES = st.sampled_from(["\ud83d", "\udcff", "a\udfffb"])
scalars = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=30),
)


def yaml_value() -> st.SearchStrategy[str]:
    """A value as YAML text: a hostile snippet, or random data written as JSON (which
    YAML reads)."""
    data = st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=12,
    )
    as_json = data.map(lambda v: json.dumps(v, ensure_ascii=False, allow_nan=True))
    return st.one_of(st.sampled_from(HOSTILE_SNIPPETS), as_json, st.text(max_size=40))


KEY_LINE = re.compile(r"^(\s*(?:- )?)([\w.-]+):(\s*)(.*)$")


@st.composite
def mutated_recipe(draw: st.DrawFn) -> tuple[str, str]:
    """(recipe name, text): a shipped recipe with one to three mutations."""
    recipes = shipped_recipes()
    name = draw(st.sampled_from(sorted(recipes)))
    lines = recipes[name].splitlines()
    for _ in range(draw(st.integers(1, 3))):
        index = draw(st.integers(0, len(lines) - 1))
        operation = draw(
            st.sampled_from(
                ["value", "value", "value", "delete", "double", "insert", "chars", "cut"]
            )
        )
        match = KEY_LINE.match(lines[index])
        if operation == "value" and match:
            value = draw(yaml_value()).replace("\n", " ")
            lines[index] = f"{match.group(1)}{match.group(2)}: {value}"
        elif operation == "delete" and len(lines) > 1:
            del lines[index]
        elif operation == "double":
            lines.insert(index, lines[index])
        elif operation == "insert":
            indent = " " * draw(st.sampled_from([0, 2, 4]))
            key = draw(st.text(min_size=1, max_size=12).filter(lambda k: "\n" not in k))
            lines.insert(index, f"{indent}{json.dumps(key)}: {draw(yaml_value())}")
        elif operation == "chars":
            line = lines[index]
            at = draw(st.integers(0, len(line)))
            lines[index] = line[:at] + draw(st.text(min_size=1, max_size=5)) + line[at:]
        elif operation == "cut":
            lines = lines[: index + 1]
            lines[-1] = lines[-1][: draw(st.integers(0, len(lines[-1])))]
    return name, "\n".join(lines) + "\n"


@st.composite
def alias_bomb(draw: st.DrawFn) -> str:
    width, depth = draw(st.integers(2, 12)), draw(st.integers(2, 12))
    lines = ["schema_version: 1", "description:", f"  - &l0 [{', '.join(['lol'] * width)}]"]
    for level in range(1, depth):
        lines.append(f"  - &l{level} [{', '.join([f'*l{level - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


@st.composite
def deep_nesting(draw: st.DrawFn) -> str:
    depth = draw(st.integers(1, 3000))
    if draw(st.booleans()):
        return "schema_version: 1\nx: " + "[" * depth + "]" * depth + "\n"
    return "schema_version: 1\n" + "".join(" " * i + f"k{i}:\n" for i in range(min(depth, 400)))


def override() -> st.SearchStrategy[str]:
    """A `--set` argument: random key and value, YAML snippets, bytes the terminal could
    not decode (kept by Python as surrogates in argv)."""
    key = st.one_of(
        st.sampled_from(["training.seed", "data.train.0.source", "lora.r", "name", "x.0.y"]),
        st.text(max_size=15),
    )
    value = st.one_of(yaml_value(), LONE_SURROGATES)
    return st.tuples(key, st.sampled_from(["=", "", "=="]), value).map(lambda t: "".join(t))


def yaml_document() -> st.SearchStrategy[str]:
    """Random documents: data written as YAML, alias bombs, deep nesting, tags, text."""
    data = st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
        ),
        max_leaves=30,
    ).map(lambda v: json.dumps(v, ensure_ascii=False, allow_nan=True))
    recipe_like = st.tuples(data, yaml_value()).map(
        lambda pair: f"schema_version: 1\nname: x\nmodel: {pair[0]}\ntraining: {pair[1]}\n"
    )
    tags = st.text(min_size=1, max_size=20).map(lambda t: f"schema_version: 1\nseed: !{t} 42\n")
    return st.one_of(data, recipe_like, alias_bomb(), deep_nesting(), tags, st.text(max_size=500))


@st.composite
def data_file(draw: st.DrawFn) -> tuple[str, bytes]:
    """(suffix, content) of a train data file for the demo recipe."""
    kind = draw(st.sampled_from(["rows", "rows", "rows", "bytes", "csv"]))
    if kind == "bytes":
        return ".jsonl", draw(st.binary(max_size=3000))
    if kind == "csv":
        cells = st.text(alphabet=st.characters(), max_size=12)
        rows = draw(st.lists(st.lists(cells, min_size=1, max_size=4), max_size=30))
        header = draw(st.sampled_from(["prompt,completion", "a,b", "", "prompt"]))
        text = header + "\n" + "\n".join(",".join(r) for r in rows)
        return ".csv", text.encode("utf-8", "surrogatepass")
    good = st.fixed_dictionaries(
        {"prompt": st.text(max_size=40), "completion": st.text(max_size=20)}
    )
    odd = st.dictionaries(
        st.sampled_from(["prompt", "completion", "x"]), scalars | LONE_SURROGATES, max_size=3
    )
    rows = draw(
        st.lists(st.one_of(good, good, odd, scalars, st.lists(scalars, max_size=3)), max_size=40)
    )
    ascii_only = draw(st.booleans())  # \uXXXX escapes (a lone surrogate among them) or not
    lines = [json.dumps(r, ensure_ascii=ascii_only) for r in rows]
    if lines and draw(st.booleans()):
        at = draw(st.integers(0, len(lines) - 1))
        lines[at] = lines[at][: draw(st.integers(0, len(lines[at])))]  # a cut line
    separator = draw(st.sampled_from(["\n", "\n", "\r\n", "\n\n"]))
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "utf-16", "latin-1"]))
    return ".jsonl", separator.join(lines).encode(encoding, "replace")


# --- running one case ---------------------------------------------------------------


@dataclass
class Outcome:
    """One command on one case: what went wrong (None: nothing), seconds, peak MB."""

    problem: str | None
    seconds: float
    peak_mb: float
    command: list[str]
    output: str


def run_command(args: list[str], cwd: Path) -> Outcome:
    """Run `recipe ARGS` in this process and judge the result."""
    from click.testing import CliRunner

    from runner.cli import main

    tracemalloc.start()
    started = time.perf_counter()
    previous = Path.cwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(main, args, catch_exceptions=True)
    finally:
        os.chdir(previous)
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    output = result.output
    problem = None
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        problem = f"raised {type(result.exception).__name__}: {result.exception}"
    elif "Traceback (most recent call last)" in output:
        problem = "printed a traceback"
    elif result.exit_code not in (0, 1):
        problem = f"exit code {result.exit_code}"
    elif result.exit_code == 1 and not _has_diagnostic(args, result):
        problem = "exit 1 without a diagnostic"
    elif peak > MEMORY_LIMIT_MB:
        problem = f"allocated {peak:.0f} MB"
    return Outcome(problem, seconds, peak, args, output)


def _has_diagnostic(args: list[str], result) -> bool:
    """An error diagnostic: a `... error[RULE]: ...` / `error: ...` line, for
    `--format json` an error among the JSON diagnostics, or plan's "DOES NOT FIT"."""
    if args[0] == "plan" and "DOES NOT FIT" in result.output:
        return True  # plan's verdict, exit 1 by design
    if "json" not in args:
        return bool(DIAGNOSTIC.search(result.output))
    try:
        files = json.loads(result.stdout)["files"]
    except (ValueError, KeyError, TypeError):
        return False
    return any(d["severity"] == "error" for f in files for d in f["diagnostics"])


RECIPE_COMMANDS = (["lint"], ["lint", "--format", "json"], ["show"], ["plan"])


def check_recipe_text(text: str, preview: bool = False) -> list[Outcome]:
    """Every recipe command on a recipe file with this text (next to the demo's data)."""
    from runner import RECIPES_DIR

    with tempfile.TemporaryDirectory() as folder:
        where = Path(folder)
        shutil.copytree(RECIPES_DIR / "data", where / "data")
        train = where / "data" / "uppercase-train.jsonl"  # 100 rows: preview in a second
        train.write_text("".join(train.read_text(encoding="utf-8").splitlines(True)[:100]))
        path = where / "recipe.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        commands = [*RECIPE_COMMANDS, ["preview", "-n", "1"]] if preview else RECIPE_COMMANDS
        return [run_command([*c, str(path)], where) for c in commands]


def check_overrides(arguments: list[str]) -> list[Outcome]:
    """lint, show and plan of the demo recipe with these `--set` arguments."""
    from runner import RECIPES_DIR

    recipe = str(RECIPES_DIR / "demo-uppercase.yaml")
    extra = [part for argument in arguments for part in ("--set", argument)]
    with tempfile.TemporaryDirectory() as folder:
        return [run_command([c, recipe, *extra], Path(folder)) for c in ("lint", "show", "plan")]


def check_data_file(suffix: str, content: bytes) -> list[Outcome]:
    """`lint --data` and `preview` on the demo recipe with this train file."""
    from runner import RECIPES_DIR

    with tempfile.TemporaryDirectory() as folder:
        where = Path(folder)
        shutil.copytree(RECIPES_DIR / "data", where / "data")
        name = f"train{suffix}"
        (where / "data" / name).write_bytes(content)
        text = (RECIPES_DIR / "demo-uppercase.yaml").read_text(encoding="utf-8")
        text = text.replace("data/uppercase-train.jsonl", f"data/{name}")
        path = where / "recipe.yaml"
        path.write_text(text, encoding="utf-8")
        return [
            run_command(["lint", "--data", str(path)], where),
            run_command(["preview", "-n", "1", str(path)], where),
        ]


# --- the script ---------------------------------------------------------------------


@dataclass
class Tally:
    tried: int = 0
    failed: int = 0
    slowest: float = 0.0
    largest: float = 0.0

    def add(self, outcomes: list[Outcome], failures: list[tuple[str, Outcome]], name: str) -> None:
        self.tried += 1
        bad = [o for o in outcomes if o.problem or o.seconds > TIME_LIMIT_S]
        self.failed += bool(bad)
        self.slowest = max([self.slowest, *(o.seconds for o in outcomes)])
        self.largest = max([self.largest, *(o.peak_mb for o in outcomes)])
        failures += [(name, o) for o in bad][:1]


def warm_up() -> None:
    """One untimed round of every command on the demo, so no case pays for the first
    import of transformers and friends (several seconds)."""
    check_recipe_text(shipped_recipes()["demo-uppercase"], preview=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2000, help="cases per property")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--preview-every", type=int, default=20, help="also preview every Nth recipe"
    )
    args = parser.parse_args(argv)
    failures: list[tuple[str, Outcome]] = []
    tallies = {"recipes": Tally(), "documents": Tally(), "overrides": Tally(), "data": Tally()}
    options = settings(
        max_examples=args.cases,
        deadline=None,
        database=None,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
    )

    @options
    @given(case=mutated_recipe())
    def recipes(case: tuple[str, str]) -> None:
        tally = tallies["recipes"]
        preview = case[0] == "demo-uppercase" and tally.tried % args.preview_every == 0
        tally.add(check_recipe_text(case[1], preview), failures, "recipes")

    @options
    @given(text=yaml_document())
    def documents(text: str) -> None:
        tallies["documents"].add(check_recipe_text(text), failures, "documents")

    @options
    @given(arguments=st.lists(override(), min_size=1, max_size=3))
    def overrides(arguments: list[str]) -> None:
        tallies["overrides"].add(check_overrides(arguments), failures, "overrides")

    @options
    @given(case=data_file())
    def data(case: tuple[str, bytes]) -> None:
        tallies["data"].add(check_data_file(*case), failures, "data")

    warm_up()
    started = time.perf_counter()
    properties = [("recipes", recipes), ("documents", documents), ("overrides", overrides)]
    for name, prop in [*properties, ("data", data)]:
        begun = time.perf_counter()
        seed(args.seed)(prop)()  # the same cases for the same --seed
        tally = tallies[name]
        print(
            f"{name:10} tried {tally.tried:6,}  failed {tally.failed:4,}  slowest "
            f"{tally.slowest:5.2f} s  largest {tally.largest:6.1f} MB  "
            f"({time.perf_counter() - begun:,.0f} s)",
            flush=True,
        )
    total = sum(t.tried for t in tallies.values())
    failed = sum(t.failed for t in tallies.values())
    print(
        f"{'all':10} tried {total:6,}  failed {failed:4,}  in {time.perf_counter() - started:,.0f} s"
    )
    for name, outcome in failures[:5]:
        problem = outcome.problem or f"took {outcome.seconds:.1f} s"
        print(
            f"\n--- {name}: recipe {' '.join(outcome.command)}: {problem}\n{outcome.output[-2000:]}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
