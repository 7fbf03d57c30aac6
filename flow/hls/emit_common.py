"""C++ text shared by the per-layer kernel emitters (block-sparse dense, SST, LSTM)."""

from __future__ import annotations


def sum_tree(terms: list[str], typ: str) -> str:
    """A balanced sum, each partial sum back in ``typ`` (modular: exact whatever the order)."""
    while len(terms) > 1:
        terms = [f'{typ}({terms[k]} + {terms[k + 1]})' if k + 1 < len(terms) else terms[k] for k in range(0, len(terms), 2)]
    return terms[0]


def case_selects(eng, var: str, src: str, typ: str) -> list[str]:
    """Each select of a static structure (``eng.selects``) as a ``switch (t)`` of constant legs over
    ``src``, or a constant read when it has one input: ``<typ> <var><g>``. Factored selects
    (``eng.group`` > 1) read the shared row selects ``<var>z<q>`` (a ``switch (t & (group - 1))``
    over ``src``) through a ``switch (t >> log2(group))`` of the window: bit slices of the loop
    counter, as the Verilog's ``cnt[..]``."""
    g = eng.group
    k = g.bit_length() - 1
    c = []
    for q in eng.rows():
        c += [f'        {typ} {var}z{q};', f'        switch (t & {g - 1}) {{']
        c += [f'        case {j}: {var}z{q} = {src}[{q * g + j}]; break;' for j in range(g - 1)]
        c += [f'        default: {var}z{q} = {src}[{q * g + g - 1}]; break;', '        }']
    for s, sel in enumerate(eng.selects):
        if sel.legs and g > 1:
            read, key, sel = (lambda q: f'{var}z{q}'), f't >> {k}', eng.factored(sel)
        else:
            read, key = (lambda i: f'{src}[{i}]'), 't'
        if not sel.legs:
            c.append(f'        const {typ} {var}{s} = {read(sel.default)};')
            continue
        c += [f'        {typ} {var}{s};', f'        switch ({key}) {{']
        for ts, i in sel.legs:
            c.append(f"        {' '.join(f'case {t}:' for t in ts)} {var}{s} = {read(i)}; break;")
        c += [f'        default: {var}{s} = {read(sel.default)}; break;', '        }']
    return c


def check_kernel(name: str, node, code_attr: str, want: str, kernel: str, differs: str) -> None:
    """The kernel C++ hls4ml will write for ``node`` (its ``code_attr``) must be ``want``, the one
    emitted from the reference layer's own structure; ``kernel`` and ``differs`` word the refusal."""
    from .errors import ConversionMismatch

    if str(node.get_attr(code_attr, '')) != want:
        raise ConversionMismatch(f"layer '{name}': hls4ml's generated {kernel} is not the one of the reference's {differs}")
