"""The pluggable interface of the regression cases.

An implementation under test is ONE Python object (a module, a class instance, anything with
attributes), named on the command line as `--impl package.module:object` or by the environment
variable VSBENCH_IMPL. Its attributes are the *parts* of one or more *families*; each family's parts
are listed, with their contracts, in a module of this package (`pix2seq`, `qformer`, `pyramid`):

- A case that needs a part the implementation lacks FAILS, naming the part (array-api-tests style):
  the other cases still run.
- A family of which the implementation provides no part at all is skipped, with that reason: a
  Pix2Seq re-implementation is not failed for lacking a Q-Former. Part names several families declare
  (`generate`, `build`) do not by themselves make an object an implementation of a family: it must
  provide at least one part that only that family declares (`provides_family`).
- Without --impl every family runs against its reference implementation (`REFERENCE_SPEC`).
- An implementation may carry `name` (used in reports and for its expected-failures file,
  `cases/known_bad/expected_failures/<name>.txt`; `--expected-failures FILE` for your own). Only a name
  it sets itself counts: one inherited from a reference class it subclasses does not, so such an
  object is named by its spec (MODULE:OBJECT) instead of mislabelled "reference".
- Parts are read defensively: a part that raises when read (a property) counts as provided but
  broken, and fails the cases that need it; it never crashes the collection of the suite.
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
    """The name an implementation gives itself (an attribute of the object or of its own class, not one
    inherited from a class it subclasses), else its spec."""
    own = getattr(obj, "__dict__", {}).get("name")
    if own is None and not isinstance(obj, type):
        own = type(obj).__dict__.get("name")
    return str(own) if isinstance(own, str) and own else spec


def read_part(obj, name: str):
    """The attribute `name` of `obj` (None when absent); exceptions other than AttributeError propagate."""
    try:
        return getattr(obj, name)
    except AttributeError:
        return None


def provided_parts(obj, family: Family) -> set[str]:
    """Parts `obj` provides; a part that raises when read counts as provided (the cases needing it fail)."""
    found = set()
    for part in family.parts:
        try:
            if read_part(obj, part) is not None:
                found.add(part)
        except Exception:
            found.add(part)
    return found


def provides_family(obj, family: Family, every_family: dict[str, Family]) -> bool:
    """Whether `obj` implements `family`: it provides a part that no other family declares (a Pix2Seq object's
    `generate` does not make it a Q-Former)."""
    shared = {p for name, other in every_family.items() if name != family.name for p in other.parts}
    return bool(provided_parts(obj, family) - shared)
