"""`vsbench adapter FAMILY`: a Python template of an implementation object for the regression cases.

The template holds one attribute per part of the family (cases/interface/<family>.py), its contract as
the docstring: constants are None (a missing part: the cases that need it fail naming it), methods
raise NotImplementedError naming the part. Fill them in with calls into your code, then

    pytest cases/ --impl my_impl:IMPL
"""

from __future__ import annotations

import importlib
import keyword
import re
import sys
import textwrap

from bench.plugins import repo_root

__all__ = ["family_contracts", "template"]


def family_contracts():
    """{family name: (Family, interface module docstring)} from the checkout's cases/interface."""
    root = repo_root()
    if root is None:
        raise FileNotFoundError("cases/interface not found: run from the vsbench checkout or set VSBENCH_ROOT")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from cases.interface import families

    out = {}
    for name, family in families().items():
        module = next(m for m in sys.modules.values()
                      if getattr(m, "FAMILY", None) is family and m.__name__.startswith("cases.interface."))
        out[name] = (family, importlib.import_module(module.__name__).__doc__ or "")
    return out


def _split_top_level(text: str) -> list[str]:
    """'a, b (x, y), c=[1, 2]' -> ['a', 'b (x, y)', 'c=[1, 2]']: commas outside brackets."""
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    return [p.strip() for p in parts + [current] if p.strip()]


def signature_of(part: str, contract: str) -> str | None:
    """The Python parameter list of a method part from its contract ('name(args) -> ...'), None for a
    constant part. Shapes and types in the contract are dropped; `name=default` is kept."""
    if not contract.startswith(part + "("):
        return None
    depth, end = 0, len(part)
    for end in range(len(part), len(contract)):
        depth += {"(": 1, ")": -1}.get(contract[end], 0)
        if depth == 0:
            break
    params = []
    for arg in _split_top_level(contract[len(part) + 1:end]):
        name = re.match(r"[A-Za-z_]\w*", arg)
        if name is None or keyword.iskeyword(name.group()):
            continue
        default = re.match(r"[A-Za-z_]\w*\s*=\s*([^\s,]+)", arg)
        params.append(f"{name.group()}={default.group(1)}" if default else name.group())
    return ", ".join(["self", *params])


def _docstring(text: str, indent: str) -> str:
    body = textwrap.fill(text.replace('"""', "'''").replace("\\", "\\\\"), 100 - len(indent),
                         subsequent_indent=indent, break_on_hyphens=False)
    return f'{indent}"""{body}"""'


def template(family_name: str, object_name: str = "IMPL", impl_name: str = "my-impl") -> str:
    """Python source of a stub implementation of `family_name` (every part stubbed, contracts as docstrings)."""
    contracts = family_contracts()
    if family_name not in contracts:
        raise ValueError(f"unknown family {family_name!r}; families: {', '.join(sorted(contracts))}")
    family, doc = contracts[family_name]
    class_name = "".join(w.capitalize() for w in re.split(r"\W+", family_name) if w) + "Implementation"
    lines = [
        f'"""A {family_name} implementation for the vsbench regression cases (written by `vsbench adapter {family_name}`).',
        "",
        "Fill in each part with a call into your own code; run the cases with",
        "",
        f"    pytest cases/ --impl my_impl:{object_name}        (this file saved as my_impl.py on the Python path)",
        "",
        "A constant left None and a method that raises NotImplementedError fail only the cases that need them,",
        "naming the part; each failing case also names the bug or invariant it stands for and the stage it tested.",
        f"The contracts below are those of cases/interface/{family_name}.py; the reference implementation",
        f"is {family.reference_spec}.",
        "",
        doc.strip().replace('"""', "'''"),
        '"""',
        "",
        "",
        f"class {class_name}:",
        f'    """Every part of the {family_name} family, stubbed."""',
        "",
        f'    name = "{impl_name}"  # shown in reports; cases/known_bad/expected_failures/<name>.txt lists known failures',
    ]
    constants = [(p, c) for p, c in family.parts.items() if signature_of(p, c) is None]
    methods = [(p, c) for p, c in family.parts.items() if signature_of(p, c) is not None]
    if constants:
        lines += ["", "    # constants: set each to your implementation's value (None = part missing)"]
        lines += [f"    {part} = None  # {contract}" for part, contract in constants]
    for part, contract in methods:
        lines += ["", f"    def {part}({signature_of(part, contract)}):", _docstring(contract, " " * 8),
                  f'        raise NotImplementedError("part {part!r} of the {family_name} family is not implemented")']
    lines += ["", "", f"{object_name} = {class_name}()", ""]
    source = "\n".join(lines)
    compile(source, f"<vsbench adapter {family_name}>", "exec")  # the template is valid Python
    return source
