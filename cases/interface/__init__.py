"""The pluggable interface of the regression cases.

An implementation under test is ONE Python object (a module, a class instance, anything with
attributes), named on the command line as `--impl package.module:object` or by the environment
variable VSBENCH_IMPL. Its attributes are the *parts* of one or more *families*; each family's parts
are listed, with their contracts, in a module of this package (`pix2seq`, `qformer`, `pyramid`):

- A case that needs a part the implementation lacks FAILS, naming the part (array-api-tests style):
  the other cases still run.
- A family of which the implementation provides no part at all is skipped, with that reason: a
  Pix2Seq re-implementation is not failed for lacking a Q-Former.
- Without --impl every family runs against its reference implementation (`REFERENCE_SPEC`).
- An implementation may carry `name` (used in reports and for its expected-failures file,
  `cases/known_bad/expected_failures/<name>.txt`; `--expected-failures FILE` for your own).
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass

from bench.plugins import ImplementationError, load_object as load_implementation  # noqa: F401


@dataclass(frozen=True)
class Family:
    name: str
    reference_spec: str  # MODULE:OBJECT of the reference implementation of this family
    parts: dict[str, str]  # part name -> contract (one line)


def families() -> dict[str, Family]:
    """Every family declared by a module of this package (module attribute FAMILY)."""
    found = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        family = getattr(module, "FAMILY", None)
        if isinstance(family, Family):
            found[family.name] = family
    return found


def implementation_name(obj, spec: str) -> str:
    return str(getattr(obj, "name", spec))


def provided_parts(obj, family: Family) -> set[str]:
    return {p for p in family.parts if getattr(obj, p, None) is not None}
