"""The serialized program of a ``.pt2`` archive (``models/*.json``) holds code torch runs.

``torch.export.load`` and ``ExportedProgram.module()`` turn four kinds of strings from
that JSON into code, none of them a pickle:

* every ``expr_str`` (symbolic sizes, strides, ``range_constraints`` keys) goes through
  ``sympy.sympify``, which ``eval``\\ s it at load time: ``Integer.__new__.__globals__``
  reaches ``__import__``;
* every ``guards_code`` entry is pasted into a function that ``module()`` ``exec``\\ s and
  each forward call runs;
* a node ``target`` is resolved by ``getattr`` from ``torch``, ``operator`` or ``math``;
* graph input names become the parameters of the ``forward`` torch.fx generates and
  ``exec``-s while loading (``x=__import__('os').system(...)`` is a default value).

So these strings are judged by an allowlist of syntax (:mod:`ast`): sympy expressions may
only call torch's and sympy's arithmetic constructors on numbers, names and the symbol
names in ``Symbol('s0', ...)``; guards may only read sizes of inputs (``L['x'].size()[0]``)
and compare arithmetic on them; targets may only name attribute paths without dunders
under ``torch.ops``, ``operator``/``_operator``, ``math`` or ``torch.sym_*``.

Example::

    problems = check_program(json.loads(archive.read("m/models/model.json")))
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from typing import Any

#: Callables a sympy ``expr_str`` may name: sympy's ``srepr`` constructors and torch's
#: own sympy functions (``torch.utils._sympy.functions.__all__``).
_SYMPY_CALLS = frozenset({
    "Symbol", "Integer", "Rational", "Float", "Add", "Mul", "Pow", "Mod", "Max", "Min",
    "Abs", "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "StrictLessThan", "StrictGreaterThan",
    "LessThan", "GreaterThan", "Equality", "Unequality", "And", "Or", "Not", "floor",
    "ceiling", "sqrt", "Piecewise", "ExprCondPair", "ITE", "BooleanTrue", "BooleanFalse",
    "Half", "NegativeOne", "One", "Zero", "Infinity", "NegativeInfinity",
    "FloorDiv", "ModularIndexing", "Where", "PythonMod", "CleanDiv", "CeilToInt",
    "FloorToInt", "CeilDiv", "IntTrueDiv", "FloatTrueDiv", "LShift", "RShift",
    "IsNonOverlappingAndDenseIndicator", "TruncToFloat", "TruncToInt", "RoundToInt",
    "RoundDecimal", "ToFloat", "FloatPow", "PowByNatural", "Identity",
})
#: Methods a guard may call on an input (``L['x'].size()``) and ``math`` functions.
_GUARD_METHODS = frozenset({"size", "stride", "storage_offset", "dim", "numel"})
_GUARD_MATH = frozenset({"floor", "ceil", "trunc", "sqrt", "log2", "pow", "fabs"})
_GUARD_NAMES = frozenset({"L", "args", "math", "torch", "True", "False", "None"})
_WORD = re.compile(r"^[A-Za-z0-9_.]*$")
_TARGET = re.compile(r"^(torch\.ops|_operator|operator|math|torch\.sym_\w+|torch\._sym_\w+)"
                     r"(\.[A-Za-z_]\w*)*$|^#\w+:[\w.]+$")
_ARITH = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.IfExp,
          ast.operator, ast.unaryop, ast.boolop, ast.cmpop, ast.Load, ast.Tuple)
_MAX_TEXT = 10_000
_MAX_INT = 2**64
_POWERS = frozenset({"Pow", "FloatPow", "PowByNatural", "LShift"})
#: Keys whose values torch uses as Python identifiers (graph inputs become parameters).
_IDENTIFIER_KEYS = frozenset({"name", "as_name", "forward_arg_names"})


def _number_or_word(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and (
        isinstance(node.value, bool | int | float) or node.value is None or
        (isinstance(node.value, str) and bool(_WORD.match(node.value))))


def sympy_problem(text: str) -> str | None:
    """Why ``text`` is not a plain sympy expression (``None`` when it is one)."""
    tree = _parse(text)
    if isinstance(tree, str):
        return tree
    for node in ast.walk(tree):
        if isinstance(node, _ARITH) or _number_or_word(node):
            continue
        if isinstance(node, ast.Name) and not node.id.startswith("_"):
            continue
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                node.func.id in _SYMPY_CALLS:
            continue
        if isinstance(node, ast.keyword) and node.arg and not node.arg.startswith("_") \
                and _number_or_word(node.value):
            continue
        return f"{type(node).__name__} {ast.unparse(node)[:60]!r} is not sympy arithmetic"
    return None


def guard_problem(text: str) -> str | None:
    """Why ``text`` is not a plain shape guard (``None`` when it is one)."""
    tree = _parse(text)
    if isinstance(tree, str):
        return tree
    for node in ast.walk(tree):
        if isinstance(node, (*_ARITH, ast.Subscript, ast.Slice)) or _number_or_word(node):
            continue
        if isinstance(node, ast.Name) and node.id in _GUARD_NAMES:
            continue
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load) and (
                node.attr in _GUARD_METHODS or _math_or_sym(node)):
            continue
        if isinstance(node, ast.Call) and not node.keywords and (
                (isinstance(node.func, ast.Attribute) and (
                    node.func.attr in _GUARD_METHODS or _math_or_sym(node.func))) or
                (isinstance(node.func, ast.Name) and node.func.id in _SYMPY_CALLS)):
            continue
        return f"{type(node).__name__} {ast.unparse(node)[:60]!r} is not a shape guard"
    return None


def _math_or_sym(node: ast.Attribute) -> bool:
    """``math.floor`` … or ``torch.sym_max`` …, named directly."""
    if not isinstance(node.value, ast.Name):
        return False
    if node.value.id == "math":
        return node.attr in _GUARD_MATH
    return node.value.id == "torch" and node.attr.startswith("sym_")


def _parse(text: str) -> ast.Expression | str:
    if len(text) > _MAX_TEXT:
        return f"{len(text)} characters long"
    if "__" in text:
        return "names a dunder attribute"
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError) as exc:
        return f"not a Python expression ({exc.__class__.__name__})"
    return _unbounded(tree) or tree


def _unbounded(tree: ast.Expression) -> str | None:
    """Arithmetic whose evaluation alone exhausts time or memory (``2**10**10``,
    ``Pow(10, 10**9)``, ``1 << 10**9``): integers past 64 bits or exponents and shifts
    past 64, which no shape needs."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, int) and \
                not isinstance(node.value, bool) and abs(node.value) > _MAX_INT:
            return f"integer {str(node.value)[:20]}... wider than 64 bits"
        exponent = None
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow | ast.LShift):
            exponent = node.right
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                node.func.id in _POWERS and len(node.args) > 1:
            exponent = node.args[1]
        if exponent is not None and not _small_constant(exponent):
            return f"{ast.unparse(node)[:60]!r}: an exponent or shift that is not a " \
                "constant up to 64"
    return None


def _small_constant(node: ast.AST) -> bool:
    """A literal integer in [-64, 64], possibly wrapped as ``Integer(n)`` or negated."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        node = node.operand
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
            node.func.id == "Integer" and len(node.args) == 1:
        node = node.args[0]
    return isinstance(node, ast.Constant) and isinstance(node.value, int) and \
        abs(node.value) <= 64


#: The torch functions ``torch._export.verifier`` accepts as graph nodes besides operators.
_TORCH_NODE_FUNCTIONS = frozenset({
    "torch.autograd.grad_mode.set_grad_enabled", "torch._C._set_grad_enabled",
    "torch.amp.autocast_mode._enter_autocast", "torch.amp.autocast_mode._exit_autocast",
    "torch.fx.experimental.symbolic_shapes.cast_symbool_to_symint_guardless",
    "torch.export.custom_ops._call_custom_autograd_function_in_pre_dispatch",
})


#: aten's bitwise operators keep Python's dunder names (``torch.ops.aten.__and__.Tensor``
#: in every causal mask transformers builds); each resolves to an ``OpOverload``.
_ATEN_DUNDER = re.compile(r"^torch\.ops\.aten\.__i?(?:and|or|xor|lshift|rshift)__"
                          r"(?:\.[A-Za-z][A-Za-z0-9_]*)?$")  # overload: no dunder


def target_problem(text: str) -> str | None:
    """Why a node ``target`` may resolve to something other than an operator."""
    if _ATEN_DUNDER.match(text) and text.count("__") == 2:
        return None
    if text in _TORCH_NODE_FUNCTIONS or (text.startswith("torch._functorch.predispatch.") \
            and "__" not in text and text.count(".") == 3):
        return None
    if "__" in text or not _TARGET.match(text):
        return "is not a torch.ops / operator / math / torch.sym_* path"
    return None


def _walk(value: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair of a JSON document, depth first (iteratively)."""
    stack: list[tuple[str, Any]] = [(key, value)]
    while stack:
        key, value = stack.pop()
        yield key, value
        if isinstance(value, dict):
            stack.extend((str(k), v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((key, v) for v in value)


def check_program(doc: Any) -> list[str]:
    """Why the serialized program ``doc`` (a parsed ``models/*.json``) would run code
    when torch loads or runs it: one reason per string (empty: none found)."""
    problems: list[str] = []

    def judge(where: str, text: Any, problem_of: Any) -> None:
        why = problem_of(text) if isinstance(text, str) else "is not a string"
        if why:
            problems.append(f"{where} {str(text)[:80]!r}: {why} (torch would run it)")

    for key, value in _walk(doc):
        if key == "expr_str":
            judge("sympy expression", value, sympy_problem)
        elif key == "guards_code" and isinstance(value, str):
            judge("guard", value, guard_problem)
        elif key == "range_constraints" and isinstance(value, dict):
            for expr in value:
                judge("range constraint", expr, sympy_problem)
        elif key == "target" and isinstance(value, str):
            judge("node target", value, target_problem)
        elif key in ("in_spec", "out_spec") and isinstance(value, str) and "'" in value:
            # torch.fx pastes dict keys of the input spec between single quotes in the
            # forward it generates ({'y': y}); a quote in a key is code, never a name.
            problems.append(f"{key}: a pytree key holds a quote (torch would run it)")
        elif key in _IDENTIFIER_KEYS and isinstance(value, str):
            judge("name", value, identifier_problem)
        elif (key.endswith("_name") or key.endswith("fqn")) and isinstance(value, str):
            judge("attribute path", value, path_problem)
    return problems


def identifier_problem(text: str) -> str | None:
    """Why ``text`` is not a Python identifier: torch.fx pastes placeholder names into the
    ``def forward(self, <name>)`` it generates and ``exec``s at load time."""
    return None if text.isidentifier() else \
        "is not an identifier (torch.fx pastes names into the code it generates)"


def path_problem(text: str) -> str | None:
    """Why ``text`` is not a dotted attribute path (``enc.linear1.weight``)."""
    return None if _WORD.match(text) and "__" not in text.replace("__torch__", "") else \
        "is not a dotted attribute path"
