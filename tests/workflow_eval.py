"""GitHub Actions' job conditions, evaluated the way the service does, for tests of the workflows' failure paths.

    evaluate(expression, contexts, status)   one `if:` (with or without `${{ }}`)
    simulate(workflow, event, inputs, outputs, outcomes)   which jobs of a run run, and their results

The expression language subset the workflows use: literals ('…', numbers, true/false/null), context
properties (`needs.plan.outputs.x`), `!`, `==`, `!=`, `&&`, `||`, parentheses and the functions
success/failure/cancelled/always/contains/fromJSON. Anything else is an error, so a condition this does
not understand fails the test instead of being guessed. Semantics (docs.github.com, "Expressions" and
"Workflow syntax: jobs.<job_id>.if"): `&&`/`||` return an operand; falsy are false, 0, '', null; `==`
between strings ignores case, between other types compares as numbers; a job `if:` without a status
function is `success() && (if)`; at job level success() is true only when every job it needs, directly
or not, succeeded (a skip travels down the chain), failure() when one of them failed, cancelled() when the
run was cancelled.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<op>&&|\|\||==|!=|[!(),])"
                   r"|(?P<name>[A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z_*][A-Za-z0-9_-]*)*))")
STATUS_FUNCTIONS = ("success", "failure", "cancelled", "always")


@dataclass
class Status:
    """What the status functions of one job see."""

    ancestors: list[str] = field(default_factory=list)  # results of every job it needs, directly or not
    cancelled: bool = False


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ValueError(f"cannot read {text[pos:]!r} in {text!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


def truthy(value: Any) -> bool:
    if isinstance(value, float) and math.isnan(value):
        return False
    return value not in (False, 0, "", None)


def _number(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip()) if value.strip() else 0.0
        except ValueError:
            return math.nan
    return math.nan  # objects and arrays equal only themselves


def equal(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.lower() == b.lower()
    if type(a) is type(b) and not isinstance(a, int | float):
        return a is b or a == b
    x, y = _number(a), _number(b)
    return not (math.isnan(x) or math.isnan(y)) and x == y


class _Parser:
    def __init__(self, text: str, contexts: Mapping[str, Any], status: Status) -> None:
        self.tokens = _tokens(text)
        self.i = 0
        self.contexts = contexts
        self.status = status
        self.text = text

    def peek(self) -> str | None:
        return self.tokens[self.i][1] if self.i < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        if self.i >= len(self.tokens):
            raise ValueError(f"unexpected end of {self.text!r}")
        tok = self.tokens[self.i]
        if expected is not None and tok[1] != expected:
            raise ValueError(f"expected {expected!r}, found {tok[1]!r} in {self.text!r}")
        self.i += 1
        return tok

    def parse(self) -> Any:
        value = self.or_()
        if self.i != len(self.tokens):
            raise ValueError(f"unexpected {self.tokens[self.i][1]!r} in {self.text!r}")
        return value

    # Both operands are parsed, as in the service, but only the value the operator picks counts.
    def or_(self) -> Any:
        value = self.and_()
        while self.peek() == "||":
            self.take()
            right = self.and_()
            value = value if truthy(value) else right
        return value

    def and_(self) -> Any:
        value = self.comparison()
        while self.peek() == "&&":
            self.take()
            right = self.comparison()
            value = right if truthy(value) else value
        return value

    def comparison(self) -> Any:
        value = self.unary()
        while self.peek() in ("==", "!="):
            op = self.take()[1]
            right = self.unary()
            value = equal(value, right) if op == "==" else not equal(value, right)
        return value

    def unary(self) -> Any:
        if self.peek() == "!":
            self.take()
            return not truthy(self.unary())
        return self.primary()

    def primary(self) -> Any:
        kind, text = self.take()
        if text == "(":
            value = self.or_()
            self.take(")")
            return value
        if kind == "str":
            return text[1:-1].replace("''", "'")
        if kind == "num":
            return float(text)
        if kind != "name":
            raise ValueError(f"unexpected {text!r} in {self.text!r}")
        if text in ("true", "false"):
            return text == "true"
        if text == "null":
            return None
        if self.peek() == "(":
            self.take("(")
            args: list[Any] = []
            while self.peek() != ")":
                args.append(self.or_())
                if self.peek() == ",":
                    self.take()
            self.take(")")
            return self.call(text, args)
        return self.lookup(text)

    def lookup(self, path: str) -> Any:
        head, *rest = path.split(".")
        if head not in self.contexts:
            raise ValueError(f"unknown context {head!r} in {self.text!r}")
        value: Any = self.contexts[head]
        for part in rest:
            value = value.get(part) if isinstance(value, Mapping) else None
        return value

    def call(self, name: str, args: list[Any]) -> Any:
        s = self.status
        if name == "success":
            return all(r == "success" for r in s.ancestors) and not s.cancelled
        if name == "failure":
            return any(r == "failure" for r in s.ancestors)
        if name == "cancelled":
            return s.cancelled
        if name == "always":
            return True
        if name == "fromJSON":
            return json.loads(args[0])
        if name == "contains":
            haystack, needle = args
            if isinstance(haystack, list):
                return any(equal(item, needle) for item in haystack)
            return str(needle).lower() in str(haystack).lower()
        raise ValueError(f"unknown function {name}() in {self.text!r}")


def strip(condition: str) -> str:
    """The expression of an `if:` (GitHub reads it as an expression with or without `${{ }}`)."""
    text = condition.strip()
    if text.startswith("${{"):
        if not text.endswith("}}") or text.count("${{") != 1:
            raise ValueError(f"{condition!r}: text outside ${{{{ }}}} makes a condition always true")
        text = text[3:-2]
    return text.strip()


def evaluate(condition: str, contexts: Mapping[str, Any], status: Status | None = None) -> Any:
    return _Parser(strip(condition), contexts, status or Status()).parse()


def job_condition(job: Mapping[str, Any]) -> str:
    """A job's `if:` as the service runs it: `success()` when absent, `success() && (…)` when it calls no
    status function."""
    condition = strip(str(job.get("if", "success()")))
    if not any(re.search(rf"\b{f}\s*\(", condition) for f in STATUS_FUNCTIONS):
        condition = f"success() && ({condition})"
    return condition


def needs_of(job: Mapping[str, Any]) -> list[str]:
    needs = job.get("needs", [])
    return [needs] if isinstance(needs, str) else list(needs)


@dataclass
class Run:
    results: dict[str, str]  # job → success | failure | cancelled | skipped
    ran: list[str]  # in the order they started

    def __getitem__(self, job: str) -> str:
        return self.results[job]


def simulate(workflow: Mapping[str, Any], *, event: str, inputs: Mapping[str, Any] | None = None,
             outputs: Mapping[str, Mapping[str, str]] | None = None,
             outcomes: Mapping[str, str] | None = None, variables: Mapping[str, str] | None = None) -> Run:
    """One run of the workflow: each job's condition evaluated when its needs are done, in dependency order.

    outputs: what each job sets when it succeeds; outcomes: the result of a job that runs (default success;
    "cancelled" also cancels the run from then on)."""
    jobs: Mapping[str, Any] = workflow["jobs"]
    outputs = outputs or {}
    outcomes = outcomes or {}
    results: dict[str, str] = {}
    ran: list[str] = []
    cancelled = False
    pending = list(jobs)
    while pending:
        ready = [j for j in pending if all(n in results for n in needs_of(jobs[j]))]
        if not ready:
            raise ValueError(f"a cycle or an unknown job in the needs of {pending}")
        for name in ready:
            pending.remove(name)
            job = jobs[name]
            ancestors: set[str] = set()
            stack = needs_of(job)
            while stack:
                n = stack.pop()
                if n not in ancestors:
                    ancestors.add(n)
                    stack += needs_of(jobs[n])
            contexts = {
                "github": {"event_name": event},
                "inputs": dict(inputs or {}),
                "vars": dict(variables or {}),
                "needs": {n: {"result": results[n],
                              "outputs": dict(outputs.get(n, {})) if results[n] == "success" else {}}
                          for n in needs_of(job)},
            }
            status = Status([results[a] for a in sorted(ancestors)], cancelled)
            if truthy(evaluate(job_condition(job), contexts, status)):
                results[name] = outcomes.get(name, "success")
                ran.append(name)
                cancelled = cancelled or results[name] == "cancelled"
            else:
                results[name] = "skipped"
    return Run(results, ran)
