"""C++ text shared by the per-layer kernel emitters (block-sparse dense, SST, LSTM)."""

from __future__ import annotations


def sum_tree(terms: list[str], typ: str) -> str:
    """A balanced sum, each partial sum back in ``typ`` (modular: exact whatever the order)."""
    while len(terms) > 1:
        terms = [f'{typ}({terms[k]} + {terms[k + 1]})' if k + 1 < len(terms) else terms[k] for k in range(0, len(terms), 2)]
    return terms[0]


def case_selects(eng, var: str, src: str, typ: str) -> list[str]:
    """Each select of a static structure (``eng.selects``) as a ``switch (t)`` of constant legs over
    ``src``, or a constant read when it has one input: ``<typ> <var><g>``."""
    c = []
    for g, sel in enumerate(eng.selects):
        if not sel.legs:
            c.append(f'        const {typ} {var}{g} = {src}[{sel.default}];')
            continue
        c += [f'        {typ} {var}{g};', '        switch (t) {']
        for ts, i in sel.legs:
            c.append(f"        {' '.join(f'case {t}:' for t in ts)} {var}{g} = {src}[{i}]; break;")
        c += [f'        default: {var}{g} = {src}[{sel.default}]; break;', '        }']
    return c


def check_kernel(name: str, node, code_attr: str, want: str, kernel: str, differs: str) -> None:
    """The kernel C++ hls4ml will write for ``node`` (its ``code_attr``) must be ``want``, the one
    emitted from the reference layer's own structure; ``kernel`` and ``differs`` word the refusal."""
    from .errors import ConversionMismatch

    if str(node.get_attr(code_attr, '')) != want:
        raise ConversionMismatch(f"layer '{name}': hls4ml's generated {kernel} is not the one of the reference's {differs}")
