"""`vsbench adapter FAMILY > my_impl.py`: write a template implementation object for the regression cases
(bench/adapter.py): every part of the family stubbed, its contract as the docstring."""

from __future__ import annotations

import sys

from bench.registry import register_command


def configure_cli(parser) -> None:
    from bench.adapter import family_contracts

    try:  # the checkout's cases/interface; an installed vsbench without a checkout has none
        names = ", ".join(sorted(family_contracts()))
    except (FileNotFoundError, ImportError):
        names = "those of the checkout's cases/interface"
    parser.add_argument("family", help=f"the family to write a template for ({names})")
    parser.add_argument("--object", default="IMPL", help="name of the module-level object (default IMPL)")
    parser.add_argument("--name", default="my-impl", help="the implementation's name in reports (default my-impl)")


@register_command("adapter", help="print a template implementation of a case family: "
                  "`vsbench adapter pix2seq > my_impl.py`, then `pytest cases/ --impl my_impl:IMPL`",
                  configure=configure_cli)
def adapter_command(args) -> int:
    from bench.adapter import template

    try:
        source = template(args.family, args.object, args.name)
    except (ValueError, FileNotFoundError) as err:
        print(f"vsbench adapter: {err}", file=sys.stderr)
        return 2
    sys.stdout.write(source)
    return 0
