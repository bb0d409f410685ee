"""Evaluate the subset of GitHub Actions expressions that the workflows use in ``if:`` and
``concurrency:``, so tests can ask what a condition decides in a given situation.

The semantics follow GitHub's "Evaluate expressions in workflows and actions" reference:
``&&`` and ``||`` return one of their operands (so ``a && b || c`` reads as a choice), ``!``
negates truthiness, ``==``/``!=`` compare strings case-insensitively, and a missing property is
``null``. Status functions (``cancelled()``, ``always()``, ...) are given by the caller. Anything
outside the subset raises ValueError, so a test never passes by misreading an expression.
"""

import re

TOKEN = re.compile(r"""\s*(?:
    (?P<string>'(?:[^']|'')*')
  | (?P<number>\d+(?:\.\d+)?)
  | (?P<op>&&|\|\||==|!=|!|\(|\))
  | (?P<call>[A-Za-z_][\w-]*)\(\)
  | (?P<path>[A-Za-z_][\w-]*(?:\.[A-Za-z_*][\w-]*)*)
)""", re.VERBOSE)

LITERALS = {"true": True, "false": False, "null": None}


def tokens(expression):
    """Split an expression into (kind, text) tokens; raise ValueError on anything else."""
    found, position = [], 0
    text = expression.strip()
    while position < len(text):
        match = TOKEN.match(text, position)
        if not match or match.end() == position:
            raise ValueError(f"cannot read {text[position:]!r} in {expression!r}")
        kind = match.lastgroup
        found.append((kind, match[kind]))
        position = match.end()
    return found


def strip_braces(value):
    """Return the expression inside ``${{ }}``, or the value itself for a bare ``if:``."""
    value = str(value).strip()
    if value.startswith("${{") and value.endswith("}}"):
        return value[3:-2]
    return value


def truthy(value):
    """GitHub's truthiness: false, 0, '', null are false."""
    return value not in (False, 0, "", None)


def equal(left, right):
    """``==``: strings compare without regard to case."""
    if isinstance(left, str) and isinstance(right, str):
        return left.lower() == right.lower()
    return left == right


def evaluate(expression, contexts, functions=None):
    """Return the value of ``expression`` (with or without ``${{ }}``).

    ``contexts`` maps a context name (``needs``, ``github``) to nested dicts; ``functions``
    maps a status function name to its result.
    """
    functions = {"always": True, "cancelled": False, "success": True, "failure": False,
                 **(functions or {})}
    stream = tokens(strip_braces(expression))
    position = 0

    def peek():
        return stream[position] if position < len(stream) else (None, None)

    def take(text=None):
        nonlocal position
        kind, value = peek()
        if kind is None or (text is not None and value != text):
            raise ValueError(f"expected {text!r} in {expression!r}")
        position += 1
        return kind, value

    def primary():
        kind, value = take()
        if kind == "string":
            return value[1:-1].replace("''", "'")
        if kind == "number":
            return float(value)
        if kind == "call":
            if value not in functions:
                raise ValueError(f"unknown function {value}() in {expression!r}")
            return functions[value]
        if kind == "path":
            if value in LITERALS:
                return LITERALS[value]
            name, *keys = value.split(".")
            if name not in contexts:
                raise ValueError(f"unknown context {name!r} in {expression!r}")
            current = contexts[name]
            for key in keys:
                current = current.get(key) if isinstance(current, dict) else None
            return current
        if value == "(":
            inner = disjunction()
            take(")")
            return inner
        if value == "!":
            return not truthy(primary())
        raise ValueError(f"unexpected {value!r} in {expression!r}")

    def comparison():
        left = primary()
        while peek()[1] in ("==", "!="):
            _, op = take()
            right = primary()
            left = equal(left, right) if op == "==" else not equal(left, right)
        return left

    def conjunction():
        left = comparison()
        while peek()[1] == "&&":
            take("&&")
            right = comparison()
            left = right if truthy(left) else left
        return left

    def disjunction():
        left = conjunction()
        while peek()[1] == "||":
            take("||")
            right = conjunction()
            left = left if truthy(left) else right
        return left

    result = disjunction()
    if position != len(stream):
        raise ValueError(f"trailing tokens in {expression!r}")
    return result


def interpolate(template, contexts):
    """Replace each ``${{ expression }}`` in a string (a concurrency group) by its value."""
    return re.sub(r"\$\{\{(.*?)\}\}", lambda m: str(evaluate(m[1], contexts)), str(template))


def concurrency_of(workflow, event_name, ref, sha):
    """Return (group, cancel-in-progress) of a workflow's run for one event of ``github``."""
    github = {"event_name": event_name, "ref": ref, "sha": sha}
    concurrency = workflow["concurrency"]
    cancel = concurrency.get("cancel-in-progress", False)
    if isinstance(cancel, str):
        cancel = bool(evaluate(cancel, {"github": github}))
    return interpolate(concurrency["group"], {"github": github}), cancel
