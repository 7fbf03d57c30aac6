"""HLS lint: static checks of a converted hls4ml project's C++ for patterns Vitis HLS turns into
slow or large hardware (nobody here runs Vitis HLS, so the C++ must be right by construction).

It parses ``<project>/firmware/*.cpp`` with libclang (one translation unit), pairs each
``#pragma HLS`` line with the loop or function whose body holds it, walks the call graph from the
top functions (the functions of ``firmware/*.cpp`` nobody calls) and checks every function it
reaches whose file is ours: ``firmware/*``, the ``firmware/nnet_utils`` headers hls4ml does not
ship, and ``nnet_code_gen.h``, where hls4ml writes the layers' generated kernels (hls4ml's own
headers are out of scope). Template functions are analysed once per
instantiation reached: their template arguments (the config structs of ``parameters.h``) give the
numbers (trip counts, partition factors, array sizes); where a number cannot be evaluated the rule
reports structurally and says so.

Rules (``RULES``), each finding with file:line, function and why:

- ``table-index``: in a pipelined region (a loop with ``PIPELINE``, a pipelined function, or code
  called from one), an array WRITTEN at an index computed from a value read from an array
  (directly or through local variables): every element becomes a chain of conditional updates over
  all writers; an array READ at such an index when the array is partitioned/reshaped (a mux whose
  fan-in is reported); and a sub-array ``&a[off]`` of a completely partitioned array passed at a
  runtime offset (every access in the callee is a mux over ``a``).
- ``rom-ports``: in a pipelined loop (or function, or per call of a function called from a
  pipelined region, its scalar parameters such as a cycle counter taking a few values), the reads
  per iteration of each array that is not completely partitioned, counted over the unrolled inner
  loops and mapped to the words/banks its ``ARRAY_PARTITION``/``ARRAY_RESHAPE`` (here or on the
  caller's argument) leaves: more than 2 reads of one bank per cycle (a BRAM has 2 ports) raise the II.
- ``top-pipeline``: a function-level ``PIPELINE`` (hls4ml's top when every layer is Latency) above a
  function of ours with a pipelined loop over more than one iteration (a ReuseLoop): the top
  pipeline unrolls it.
- ``partition-mismatch``: the same array partitioned/reshaped differently by a caller and by the
  callee's parameter.
- ``divider``: ``/`` or ``%`` in a pipelined region by a non-constant, or by a constant that is not
  a power of two on a value that changes every cycle (one divider per unrolled instance).

``python -m flow.stages.hls_lint <hls_dir>`` prints the findings and exits 1 when there are any.
"""

from __future__ import annotations

import glob
import itertools
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

RULES = {
    'table-index': 'array written (or a partitioned array read) at an index read from a table, in a pipelined region',
    'rom-ports': 'more than 2 reads per cycle of one bank of an array that is not completely partitioned',
    'top-pipeline': 'a function-level PIPELINE above a pipelined ReuseLoop of ours (it gets unrolled)',
    'partition-mismatch': 'an array partitioned/reshaped differently by the caller and by the callee',
    'divider': 'a divider/modulo on a per-cycle value by a non-constant or a non-power-of-two, in a pipelined region',
}

_SCALAR_TYPES = ('UINT', 'INT', 'USHORT', 'SHORT', 'ULONG', 'LONG', 'ULONGLONG', 'LONGLONG', 'UCHAR', 'CHAR_S', 'SCHAR')
GENERATED_HEADER = 'nnet_code_gen.h'  # where hls4ml writes the layers' generated code (Source attributes)
SHIM_DIR = Path(__file__).resolve().parent / 'hls_lint_shim'  # stand-ins for ap_fixed.h, hls_stream.h
HOST_SHIM_DIR = Path(__file__).resolve().parents[2] / 'hls_templates' / 'host_shim'  # ap_axi_sdata.h
MAX_INSTANCES = 1 << 14  # unrolled read instances enumerated per array and pipelined loop
MAX_ITERATIONS = 8  # values of the pipelined loop's variable tried when counting reads per cycle


@dataclass(frozen=True)
class Finding:
    rule: str
    file: str  # path as parsed (absolute)
    line: int
    function: str
    message: str

    def where(self) -> str:
        return f'{self.file}:{self.line}'


# --------------------------------------------------------------------------- libclang access


def _cindex():
    import clang.cindex as ci

    if not ci.Config.loaded:
        native = Path(ci.__file__).parent / 'native' / 'libclang.so'
        if native.exists() and not ci.Config.library_file:
            ci.Config.set_library_file(str(native))
    return ci


_SPECIALIZED = None


def _specialized_template(cursor):
    """clang_getSpecializedCursorTemplate (not in the Python bindings): the template a
    specialization was instantiated from."""
    global _SPECIALIZED
    ci = _cindex()
    if _SPECIALIZED is None:
        fn = ci.conf.lib.clang_getSpecializedCursorTemplate
        fn.argtypes = [ci.Cursor]
        fn.restype = ci.Cursor
        fn.errcheck = ci.Cursor.from_result
        _SPECIALIZED = fn
    try:
        return _SPECIALIZED(cursor)
    except Exception:
        return None


def _system_includes() -> list[str]:
    """libclang's wheel has no builtin headers (stddef.h): borrow the compiler's."""
    found = sorted(glob.glob('/usr/lib/gcc/*/*/include/stddef.h')) + sorted(
        glob.glob('/usr/lib/llvm-*/lib/clang/*/include/stddef.h'))
    return [f'-isystem{os.path.dirname(found[-1])}'] if found else []


def _stock_headers() -> set[str]:
    """The nnet_utils headers hls4ml ships (out of scope)."""
    import importlib.util

    try:  # located, not imported (importing hls4ml takes seconds)
        spec = importlib.util.find_spec('hls4ml')
        d = Path(list(spec.submodule_search_locations)[0]) / 'templates' / 'vivado' / 'nnet_utils'
        return {p.name for p in d.iterdir()}
    except Exception:
        return set()


# --------------------------------------------------------------------------- pragmas

_PRAGMA = re.compile(r'^\s*#\s*pragma\s+HLS\s+(\w+)(.*)$', re.IGNORECASE)


@dataclass
class Pragma:
    file: str
    line: int
    kind: str  # upper case: PIPELINE, UNROLL, ARRAY_PARTITION, ...
    text: str
    opts: dict  # key=value options (lower-case keys) and bare words (value True)

    def variables(self) -> list[str]:
        v = self.opts.get('variable')
        return [s.strip() for s in v.split(',')] if isinstance(v, str) else []


def _parse_pragma(file: str, line: int, kind: str, rest: str) -> Pragma:
    rest = rest.split('//')[0]
    opts = {}
    for m in re.finditer(r'(\w+)\s*=\s*([^\s]+)|(\w+)', rest):
        if m.group(1):
            opts[m.group(1).lower()] = m.group(2)
        else:
            opts[m.group(3).lower()] = True
    return Pragma(file, line, kind.upper(), f'#pragma HLS {kind}{rest.rstrip()}', opts)


def _file_pragmas(path: str, cache: dict) -> list[Pragma]:
    if path not in cache:
        out = []
        try:
            lines = Path(path).read_text(errors='replace').splitlines()
        except OSError:
            lines = []
        for i, text in enumerate(lines, 1):
            m = _PRAGMA.match(text)
            if m:
                out.append(_parse_pragma(path, i, m.group(1), m.group(2)))
        cache[path] = out
    return cache[path]


@dataclass
class Partition:
    kind: str  # 'partition' | 'reshape'
    type: str  # 'complete' | 'block' | 'cyclic'
    factor: object  # int, None (complete) or the unevaluated text
    dim: int
    pragma: Pragma

    def key(self):
        return (self.kind, self.type, self.factor if self.type != 'complete' else None, self.dim)

    def describe(self) -> str:
        f = f' factor={self.factor}' if self.type != 'complete' else ''
        return f'ARRAY_{self.kind.upper()} {self.type}{f} dim={self.dim}'


# --------------------------------------------------------------------------- expressions

STATIC, DYNAMIC, TABLE = 0, 1, 2  # how an index varies: constant after unrolling / per cycle / from a table


class Unknown(Exception):
    pass


_LOOPS = ('FOR_STMT', 'WHILE_STMT', 'DO_STMT', 'CXX_FOR_RANGE_STMT')
_WRITE_OPS = {'=', '+=', '-=', '*=', '/=', '%=', '&=', '|=', '^=', '<<=', '>>='}
_BIN_PREC = [('||',), ('&&',), ('|',), ('^',), ('&',), ('==', '!='), ('<', '<=', '>', '>='), ('<<', '>>'), ('+', '-'),
             ('*', '/', '%')]
_TYPE_WORDS = {'unsigned', 'signed', 'int', 'long', 'short', 'char', 'bool', 'const', 'size_t', 'typename', 'float',
               'double'}


def _c_div(a, b):
    if b == 0:
        raise Unknown('division by zero')
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _binop(op, a, b):
    if op == '+': return a + b
    if op == '-': return a - b
    if op == '*': return a * b
    if op == '/': return _c_div(a, b)
    if op == '%': return a - _c_div(a, b) * b
    if op == '<<': return a << b
    if op == '>>': return a >> b
    if op == '<': return int(a < b)
    if op == '<=': return int(a <= b)
    if op == '>': return int(a > b)
    if op == '>=': return int(a >= b)
    if op == '==': return int(a == b)
    if op == '!=': return int(a != b)
    if op == '&': return a & b
    if op == '|': return a | b
    if op == '^': return a ^ b
    if op == '&&': return int(bool(a) and bool(b))
    if op == '||': return int(bool(a) or bool(b))
    raise Unknown(op)


def _int_literal(text: str) -> int:
    t = text.rstrip('uUlL')
    try:
        return int(t, 0) if not re.fullmatch(r'0\d+', t) else int(t, 8)
    except ValueError:
        raise Unknown(text)


def _tokens(cursor) -> list[str]:
    return [t.spelling for t in cursor.get_tokens()]


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


# --------------------------------------------------------------------------- the project model


@dataclass
class Loop:
    cursor: object
    var: object  # the induction VAR_DECL cursor or None
    label: str
    line: int
    pragmas: list
    parent: 'Loop | None'

    @property
    def pipelined(self) -> bool:
        return any(p.kind == 'PIPELINE' and 'off' not in p.opts for p in self.pragmas)

    @property
    def unrolled(self) -> bool:
        return any(p.kind == 'UNROLL' and 'factor' not in p.opts and 'off' not in p.opts for p in self.pragmas)

    def name(self) -> str:
        return f'{self.label or "loop"} (line {self.line})'


@dataclass
class Func:
    cursor: object
    name: str
    file: str
    tparams: list  # [(name, 'type'|'value')]
    params: list  # PARM_DECL cursors
    pragmas: list  # function-level pragmas (not inside a loop)
    all_pragmas: list
    loops: dict  # loop cursor hash -> Loop
    pipelined: bool  # its own function-level PIPELINE


@dataclass
class Array:
    name: str
    decl: object
    size: object  # int or None
    part: Partition | None
    const_table: bool  # a const array with an initializer (folds at constant indices)
    origin: str = ''  # where the partition came from, for messages


@dataclass
class Inst:
    func: Func
    env: dict
    arg_arrays: dict  # parameter name -> Array of the caller (its partition, its size)
    called_pipelined: bool  # reached from a pipelined region
    label: str
    chain: tuple


class Linter:
    def __init__(self, hls_dir: Path, top: str | None = None, extra_args: tuple = ()):
        self.hls_dir = Path(hls_dir).resolve()
        self.fw = self.hls_dir / 'firmware'
        self.top = top
        self.extra_args = list(extra_args)
        self.findings: dict = {}
        self.pragma_cache: dict = {}
        self.funcs: dict = {}  # USR or cursor hash -> Func
        self.structs: dict = {}  # spelling -> STRUCT_DECL definition
        self.seen: set = set()
        stock = _stock_headers()
        self.stock = stock

    # ----- scope
    def in_scope(self, path: str | None) -> bool:
        if not path:
            return False
        p = Path(path)
        try:
            rel = p.resolve().relative_to(self.fw)
        except ValueError:
            return False
        parts = rel.parts
        if len(parts) == 1:
            return p.suffix in ('.cpp', '.h', '.hpp', '.cc')
        if parts[0] == 'nnet_utils' and len(parts) == 2:
            # nnet_code_gen.h ships with hls4ml but holds the per-layer generated kernels (ours)
            return p.name not in self.stock or p.name == GENERATED_HEADER
        return False  # ap_types, weights

    # ----- parse
    def parse(self):
        ci = _cindex()
        sources = sorted(p for p in self.fw.glob('*.cpp'))
        if not sources:
            raise FileNotFoundError(f'no firmware/*.cpp under {self.hls_dir}')
        umbrella = self.hls_dir / '.hls_lint_umbrella.cpp'
        text = ''.join(f'#include "{s}"\n' for s in sources)
        args = ['-std=c++14', '-x', 'c++', '-ferror-limit=0', '-Wno-everything', f'-I{SHIM_DIR}', f'-I{self.fw}',
                f'-I{self.fw / "nnet_utils"}', f'-I{HOST_SHIM_DIR}', f'-I{self.fw / "ap_types"}', *_system_includes(), *self.extra_args]
        self.tu = ci.Index.create().parse(str(umbrella), args=args, unsaved_files=[(str(umbrella), text)])
        self.sources = [str(s.resolve()) for s in sources]
        # errors inside our files: what the lint reads there may be incomplete (clang drops a call
        # it cannot resolve); the stand-in headers make errors elsewhere harmless
        self.parse_errors = [f'{d.location.file.name}:{d.location.line}: {d.spelling}' for d in self.tu.diagnostics
                             if d.severity >= 3 and d.location.file and self.in_scope(d.location.file.name)]
        self._index(self.tu.cursor)

    def _index(self, root):
        for c in root.walk_preorder():
            k = c.kind.name
            if k in ('STRUCT_DECL', 'CLASS_DECL') and c.is_definition():
                self.structs.setdefault(c.spelling, c)

    def func_of(self, cursor) -> Func | None:
        """The Func of a function (template) definition cursor."""
        if cursor is None:
            return None
        d = cursor.get_definition() or cursor
        if d.kind.name not in ('FUNCTION_DECL', 'FUNCTION_TEMPLATE', 'CXX_METHOD') or not d.is_definition():
            return None
        key = d.get_usr() or (d.location.file.name if d.location.file else '', d.location.offset)
        if key in self.funcs:
            return self.funcs[key]
        file = d.location.file.name if d.location.file else ''
        body = next((ch for ch in d.get_children() if ch.kind.name == 'COMPOUND_STMT'), None)
        tparams = [(ch.spelling, 'type' if ch.kind.name == 'TEMPLATE_TYPE_PARAMETER' else 'value')
                   for ch in d.get_children()
                   if ch.kind.name in ('TEMPLATE_TYPE_PARAMETER', 'TEMPLATE_NON_TYPE_PARAMETER',
                                       'TEMPLATE_TEMPLATE_PARAMETER')]
        params = [ch for ch in d.get_children() if ch.kind.name == 'PARM_DECL']
        loops = {}
        if body is not None:
            self._collect_loops(body, None, loops)
        pragmas = [p for p in _file_pragmas(file, self.pragma_cache)
                   if body is not None and body.extent.start.line <= p.line <= body.extent.end.line]
        fn_pragmas = []
        for p in pragmas:
            owner = None
            for lp in loops.values():
                b = lp.cursor.extent
                if b.start.line < p.line <= b.end.line and (owner is None or lp.cursor.extent.start.offset >
                                                              owner.cursor.extent.start.offset):
                    owner = lp
            (owner.pragmas if owner else fn_pragmas).append(p)
        f = Func(d, d.spelling, file, tparams, params, fn_pragmas, pragmas, loops,
                 any(p.kind == 'PIPELINE' and 'off' not in p.opts for p in fn_pragmas))
        self.funcs[key] = f
        return f

    def _collect_loops(self, node, parent, out, label=''):
        for ch in node.get_children():
            k = ch.kind.name
            if k == 'LABEL_STMT':
                self._collect_loops(ch, parent, out, ch.spelling)
                continue
            if k in _LOOPS:
                var = None
                if k == 'FOR_STMT':
                    first = next(ch.get_children(), None)
                    if first is not None and first.kind.name == 'DECL_STMT':
                        var = next((v for v in first.get_children() if v.kind.name == 'VAR_DECL'), None)
                lp = Loop(ch, var, label, ch.location.line, [], parent)
                out[ch.hash] = lp
                self._collect_loops(ch, lp, out)
            else:
                self._collect_loops(ch, parent, out)
            label = ''

    # ----- constant evaluation
    def struct_member(self, struct, name, seen=(), kinds=('VAR_DECL', 'FIELD_DECL', 'TYPEDEF_DECL', 'TYPE_ALIAS_DECL',
                                                          'STRUCT_DECL', 'CLASS_DECL')):
        """A static member (VAR_DECL) or member type of a struct, through its bases."""
        for ch in struct.get_children():
            if ch.spelling == name and ch.kind.name in kinds:
                return ch
        for ch in struct.get_children():
            if ch.kind.name == 'CXX_BASE_SPECIFIER':
                base = ch.type.get_declaration()
                base = base.get_definition() or base
                if base is not None and base.kind.name in ('STRUCT_DECL', 'CLASS_DECL') and base.hash not in seen:
                    m = self.struct_member(base, name, seen + (base.hash,), kinds)
                    if m is not None:
                        return m
        return None

    def resolve_qualified(self, parts: list[str], env: dict):
        """CONFIG_T::n_in, config2::n_in, n_kept (template value), config2 (struct)."""
        if not parts:
            raise Unknown('empty name')
        head = parts[0]
        if head in env:
            cur = env[head]
        elif head in self.structs:
            cur = self.structs[head]
        elif head == 'nnet' and len(parts) > 1 and parts[1] in self.structs:
            cur, parts = self.structs[parts[1]], parts[1:]
        else:
            raise Unknown(head)
        for name in parts[1:]:
            if isinstance(cur, (int, str)) or cur is None:
                raise Unknown('::'.join(parts))
            m = self.struct_member(cur, name)
            if m is None:
                raise Unknown('::'.join(parts))
            if m.kind.name == 'VAR_DECL':
                cur = self.eval_decl_init(m, {})
            elif m.kind.name in ('STRUCT_DECL', 'CLASS_DECL'):
                cur = m
            else:
                decl = m.underlying_typedef_type.get_declaration()
                cur = (decl.get_definition() or decl) if decl.kind.name in ('STRUCT_DECL', 'CLASS_DECL') else \
                    m.underlying_typedef_type.spelling
        return cur

    def eval_tokens(self, toks: list[str], env: dict) -> int:
        """A C constant expression given as tokens (template arguments, pragma factors)."""
        pos = [0]

        def peek():
            return toks[pos[0]] if pos[0] < len(toks) else None

        def take():
            pos[0] += 1
            return toks[pos[0] - 1]

        def primary():
            t = peek()
            if t is None:
                raise Unknown('end')
            if t == '(':
                # a cast (unsigned)(...) or a parenthesised expression
                j = pos[0] + 1
                depth = 1
                while j < len(toks) and depth:
                    depth += {'(': 1, ')': -1}.get(toks[j], 0)
                    j += 1
                inner = toks[pos[0] + 1:j - 1]
                if inner and all(x in _TYPE_WORDS or x == '::' or re.match(r'\w+$', x) for x in inner) and \
                        inner[0] in _TYPE_WORDS and j < len(toks) and toks[j] not in (')', ',', '?', ':') and \
                        not any(toks[j] in ops for ops in _BIN_PREC):
                    pos[0] = j
                    return unary()
                take()
                v = ternary()
                if take() != ')':
                    raise Unknown(')')
                return v
            if t in ('true', 'false'):
                take()
                return int(t == 'true')
            if re.match(r'\d', t):
                take()
                return _int_literal(t)
            if t == 'typename':
                take()
            if peek() == '::':
                take()
            if not re.match(r'[A-Za-z_]\w*$', peek() or ''):
                raise Unknown(peek())
            parts = [take()]
            while peek() == '::':
                take()
                parts.append(take())
            if peek() == '<':
                raise Unknown('template-id')
            v = self.resolve_qualified(parts, env)
            if not isinstance(v, int):
                raise Unknown('not a value')
            return v

        def unary():
            t = peek()
            if t in ('-', '+', '!', '~'):
                take()
                v = unary()
                return {'-': -v, '+': v, '!': int(not v), '~': ~v}[t]
            return primary()

        def binary(level):
            if level == len(_BIN_PREC):
                return unary()
            v = binary(level + 1)
            while peek() in _BIN_PREC[level]:
                op = take()
                v = _binop(op, v, binary(level + 1))
            return v

        def ternary():
            c = binary(0)
            if peek() == '?':
                take()
                a = ternary()
                if take() != ':':
                    raise Unknown(':')
                b = ternary()
                return a if c else b
            return c

        v = ternary()
        if pos[0] != len(toks):
            raise Unknown('trailing tokens')
        return v

    def eval_text(self, text: str, env: dict):
        toks = re.findall(r'::|<<|>>|<=|>=|==|!=|&&|\|\||\w+|[^\s\w]', text)
        try:
            return self.eval_tokens(toks, env)
        except (Unknown, RecursionError):
            return None

    def eval_decl_init(self, decl, env):
        init = _initializer(decl)
        if init is None:
            raise Unknown(f'{decl.spelling} has no initializer')
        return self.eval_expr(init, env, {})

    def eval_expr(self, c, env: dict, binds: dict, depth=0) -> int:
        """An integer expression's value; ``binds`` maps VAR_DECL hashes (loop variables) to values."""
        if depth > 60:
            raise Unknown('too deep')
        k = c.kind.name
        kids = list(c.get_children())
        if k == 'INTEGER_LITERAL':
            toks = _tokens(c)
            if toks:
                return _int_literal(toks[0])
            raise Unknown('literal')
        if k == 'CXX_BOOL_LITERAL_EXPR':
            return int(_tokens(c)[:1] == ['true'])
        if k in ('PAREN_EXPR', 'UNEXPOSED_EXPR', 'CSTYLE_CAST_EXPR', 'CXX_FUNCTIONAL_CAST_EXPR', 'CXX_STATIC_CAST_EXPR') \
                and kids:
            exprs = [x for x in kids if not x.kind.name.endswith('_REF') or x.kind.name == 'DECL_REF_EXPR']
            if k == 'UNEXPOSED_EXPR' and len(exprs) > 1:
                return self._eval_operator_call(c, kids, env, binds, depth)
            return self.eval_expr(exprs[-1] if exprs else kids[-1], env, binds, depth + 1)
        if k == 'DECL_REF_EXPR':
            ref = c.referenced
            if ref is None or ref.kind.name in ('OVERLOADED_DECL_REF',):
                toks = [t for t in _tokens(c) if t != 'typename']
                return self.eval_tokens(toks, env)
            if ref.hash in binds:
                return binds[ref.hash]
            rk = ref.kind.name
            if rk == 'TEMPLATE_NON_TYPE_PARAMETER':
                if ref.spelling in env and isinstance(env[ref.spelling], int):
                    return env[ref.spelling]
                raise Unknown(ref.spelling)
            if rk == 'ENUM_CONSTANT_DECL':
                return ref.enum_value
            if rk == 'VAR_DECL':
                init = _initializer(ref) if ref.type.is_const_qualified() else None
                if init is None:
                    raise Unknown(ref.spelling)
                return self.eval_expr(init, env, binds, depth + 1)
            raise Unknown(ref.spelling)
        if k in ('BINARY_OPERATOR', 'CALL_EXPR') and kids:
            return self._eval_operator_call(c, kids, env, binds, depth)
        if k == 'UNARY_OPERATOR' and kids:
            toks = _tokens(c)
            v = self.eval_expr(kids[0], env, binds, depth + 1)
            op = toks[0] if toks else ''
            if op == '-': return -v
            if op == '+': return v
            if op == '!': return int(not v)
            if op == '~': return ~v
            raise Unknown(op)
        if k == 'CONDITIONAL_OPERATOR' and len(kids) == 3:
            return self.eval_expr(kids[1] if self.eval_expr(kids[0], env, binds, depth + 1) else kids[2], env, binds,
                                  depth + 1)
        raise Unknown(k)

    def _eval_operator_call(self, c, kids, env, binds, depth):
        op, operands = _operator(c, kids)
        if op is None or len(operands) != 2:
            if len(operands) == 1 and op in ('-', '+', '!', '~'):
                v = self.eval_expr(operands[0], env, binds, depth + 1)
                return {'-': -v, '+': v, '!': int(not v), '~': ~v}[op]
            raise Unknown('call')
        a = self.eval_expr(operands[0], env, binds, depth + 1)
        b = self.eval_expr(operands[1], env, binds, depth + 1)
        return _binop(op, a, b)

    def try_eval(self, c, env, binds=None):
        try:
            return self.eval_expr(c, env, binds or {})
        except (Unknown, RecursionError, ValueError, AttributeError):
            return None

    # ----- findings
    def report(self, rule, file, line, function, message):
        key = (rule, file, line, function)
        prev = self.findings.get(key)
        if prev is None:
            self.findings[key] = [message]
        elif message not in prev:
            prev.append(message)

    def results(self) -> list[Finding]:
        out = [Finding(r, f, ln, fn, '; '.join(msgs)) for (r, f, ln, fn), msgs in self.findings.items()]
        return sorted(out, key=lambda x: (x.file, x.line, x.rule))

    # ----- the walk
    def roots(self) -> list[Func]:
        funcs = []
        for c in self.tu.cursor.get_children():
            if c.kind.name == 'FUNCTION_DECL' and c.is_definition() and c.location.file and \
                    str(Path(c.location.file.name).resolve()) in self.sources and c.spelling != 'main':
                f = self.func_of(c)
                if f is not None:
                    funcs.append(f)
        if self.top:
            chosen = [f for f in funcs if f.name == self.top]
            if not chosen:
                raise ValueError(f'top function {self.top!r} not defined in firmware/*.cpp')
            return chosen
        called = set()
        for f in funcs:
            for c in f.cursor.walk_preorder():
                if c.kind.name == 'CALL_EXPR' and c.referenced is not None:
                    called.add(c.referenced.spelling)
        return [f for f in funcs if f.name not in called]

    def run(self) -> list[Finding]:
        self.parse()
        for f in self.roots():
            self.visit(Inst(f, {}, {}, False, f.name, (f.name,)), [])
        return self.results()

    def visit(self, inst: Inst, pipelined_above: list):
        """Analyse one function instance and the calls it makes. ``pipelined_above``: the
        function-level PIPELINE pragmas (with their function names) above it."""
        f = inst.func
        key = (f.cursor.hash, tuple(sorted((k, _env_key(v)) for k, v in inst.env.items())), inst.called_pipelined,
               tuple(sorted((k, a.part.key() if a.part else None, a.size) for k, a in inst.arg_arrays.items())),
               tuple((p.file, p.line) for p, _ in pipelined_above))
        if key in self.seen or len(inst.chain) > 40:
            return
        self.seen.add(key)
        ours = self.in_scope(f.file)
        fa = FuncAnalysis(self, inst)
        if ours:
            fa.check()
        if f.pipelined:
            pipelined_above = pipelined_above + [(p, f.name) for p in f.pragmas if p.kind == 'PIPELINE']
        if ours and pipelined_above:
            fa.check_top_pipeline(pipelined_above)
        for call, callee, env, in_region in fa.calls():
            if not self.in_scope(callee.file):
                continue
            arg_arrays = fa.argument_arrays(call, callee)
            if ours:
                fa.check_partition_consistency(call, callee, env, arg_arrays)
            shown = [_env_label(env[n]) for n, _ in callee.tparams if n in env and (
                isinstance(env[n], int) or (not isinstance(env[n], str) and env[n] is not None and
                                            env[n].location.file and self.in_scope(env[n].location.file.name)))]
            label = f'{callee.name}<{", ".join(shown)}>' if shown else callee.name
            self.visit(Inst(callee, env, {k: v for k, v in arg_arrays.items() if v is not None},
                            inst.called_pipelined or in_region or f.pipelined, label, inst.chain + (label,)),
                       pipelined_above)


def _env_key(v):
    if isinstance(v, (int, str)) or v is None:
        return v
    return ('struct', v.spelling, v.hash)


def _env_label(v):
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return v
    return v.spelling if v is not None else '?'


def _initializer(decl):
    """The initializer expression of a VAR_DECL, or None."""
    toks = _tokens(decl)
    if '=' not in toks and not (decl.semantic_parent is not None and decl.kind.name == 'VAR_DECL' and
                                any(ch.kind.name == 'INIT_LIST_EXPR' for ch in decl.get_children())):
        return None
    kids = [ch for ch in decl.get_children()
            if not ch.kind.name.endswith('_REF') and ch.kind.name not in ('TYPE_REF', 'NAMESPACE_REF', 'TEMPLATE_REF')]
    return kids[-1] if kids else None


def _operator(c, kids):
    """(operator spelling, operand cursors) of a binary/compound/dependent operator expression."""
    k = c.kind.name
    refs = [x for x in kids if x.kind.name in ('DECL_REF_EXPR', 'UNEXPOSED_EXPR', 'OVERLOADED_DECL_REF')
            and x.spelling.startswith('operator')]
    if not refs:
        for x in kids:
            inner = next(x.get_children(), None) if x.kind.name in ('DECL_REF_EXPR', 'UNEXPOSED_EXPR') else None
            if inner is not None and inner.kind.name == 'OVERLOADED_DECL_REF' and inner.spelling.startswith('operator'):
                refs = [x]
                break
    if refs:
        name = refs[0].spelling or next(refs[0].get_children()).spelling
        operands = [x for x in kids if x is not refs[0] and x != refs[0]]
        return name[len('operator'):].strip(), operands
    if k in ('BINARY_OPERATOR', 'COMPOUND_ASSIGNMENT_OPERATOR') and len(kids) == 2:
        end = kids[0].extent.end.offset
        for t in c.get_tokens():
            if t.extent.start.offset >= end:
                return t.spelling, kids
    return None, kids


class FuncAnalysis:
    """One function instance: its arrays, the kind of every index, the pipelined regions."""

    def __init__(self, lint: Linter, inst: Inst):
        self.lint = lint
        self.inst = inst
        self.f = inst.func
        self.env = inst.env
        self.body = next((ch for ch in self.f.cursor.get_children() if ch.kind.name == 'COMPOUND_STMT'), None)
        self.loop_of_var = {lp.var.hash: lp for lp in self.f.loops.values() if lp.var is not None}
        self.arrays = self._arrays()
        self._assign = None
        self._kind_memo = {}

    # ----- arrays and their partitions
    def _partition(self, name, size) -> Partition | None:
        for p in self.f.all_pragmas:
            if p.kind not in ('ARRAY_PARTITION', 'ARRAY_RESHAPE') or name not in p.variables():
                continue
            typ = p.opts.get('type') if isinstance(p.opts.get('type'), str) else None
            if typ is None:
                typ = next((w for w in ('complete', 'block', 'cyclic') if p.opts.get(w) is True), 'complete')
            dim = p.opts.get('dim', '1')
            dim = self.lint.eval_text(dim, self.env) if isinstance(dim, str) else 1
            factor = None
            if typ != 'complete':
                ftext = p.opts.get('factor')
                factor = self.lint.eval_text(ftext, self.env) if isinstance(ftext, str) else None
                if factor is None:
                    factor = ftext
                elif isinstance(size, int) and factor >= size:
                    typ = 'complete'  # factor covering every element
            return Partition('partition' if p.kind == 'ARRAY_PARTITION' else 'reshape', typ, factor,
                             1 if dim in (0, None) else dim, p)
        return None

    def _size(self, decl):
        t = decl.type
        if t.kind.name == 'CONSTANTARRAY':
            return t.get_array_size()
        m = re.search(r'\[(.+)\]\s*$', t.spelling)
        if m:
            return self.lint.eval_text(m.group(1), self.env)
        return None

    def _arrays(self) -> dict:
        out = {}
        decls = list(self.f.params)
        if self.body is not None:
            decls += [c for c in self.body.walk_preorder() if c.kind.name == 'VAR_DECL']
        for d in decls:
            tk = d.type.kind.name
            spelled = d.type.spelling
            is_array = tk in ('CONSTANTARRAY', 'INCOMPLETEARRAY', 'DEPENDENTSIZEDARRAY', 'VARIABLEARRAY',
                              'POINTER') or re.search(r'\]\s*$', spelled)
            if not is_array:
                continue
            size = self._size(d)
            part = self._partition(d.spelling, size)
            origin = f'{Path(part.pragma.file).name}:{part.pragma.line}' if part else ''
            if part is None and d.kind.name == 'PARM_DECL' and d.spelling in self.inst.arg_arrays:
                caller = self.inst.arg_arrays[d.spelling]
                part, origin = caller.part, caller.origin
                if size is None:
                    size = caller.size
            const = d.type.is_const_qualified() or (d.type.get_array_element_type() is not None and
                                                    d.type.get_array_element_type().is_const_qualified())
            out[d.hash] = Array(d.spelling, d, size, part, bool(const and _initializer(d) is not None), origin)
        # globals referenced (weights, const tables)
        if self.body is not None:
            for c in self.body.walk_preorder():
                if c.kind.name == 'DECL_REF_EXPR' and c.referenced is not None and c.referenced.hash not in out and \
                        c.referenced.kind.name == 'VAR_DECL' and c.referenced.semantic_parent is not None and \
                        c.referenced.semantic_parent.kind.name in ('TRANSLATION_UNIT', 'NAMESPACE'):
                    d = c.referenced
                    if d.type.kind.name in ('CONSTANTARRAY', 'INCOMPLETEARRAY'):
                        const = d.type.get_array_element_type().is_const_qualified()
                        out[d.hash] = Array(d.spelling, d, self._size(d), None,
                                            bool(const and _initializer(d) is not None))
        return out

    def array_of(self, base) -> Array | None:
        """The Array an ARRAY_SUBSCRIPT_EXPR's base names."""
        c = base
        while c is not None and c.kind.name != 'DECL_REF_EXPR':
            kids = list(c.get_children())
            if c.kind.name not in ('UNEXPOSED_EXPR', 'PAREN_EXPR') or len(kids) != 1:
                return None
            c = kids[0]
        if c is None or c.referenced is None:
            return None
        return self.arrays.get(c.referenced.hash)

    # ----- regions
    def regions(self):
        """(region loop or None for the whole function, its description) of every pipelined region."""
        if self.inst.called_pipelined or self.f.pipelined:
            why = 'pipelined function' if self.f.pipelined else f'function called from a pipelined region ({" -> ".join(self.inst.chain)})'
            return [(None, why)]
        out = []
        for lp in self.f.loops.values():
            if lp.pipelined and not any(a.pipelined for a in _ancestors(lp)):
                out.append((lp, f'pipelined loop {lp.name()}'))
        return out

    def loop_of(self, cursor) -> Loop | None:
        return self.f.loops.get(cursor.hash)

    def enclosing_loops(self, node, region_loop) -> list:
        """Loops strictly inside the region that enclose node (outermost first)."""
        out = []
        for lp in self.f.loops.values():
            e = lp.cursor.extent
            if e.start.offset <= node.extent.start.offset and node.extent.end.offset <= e.end.offset:
                if region_loop is None or (lp is not region_loop and _inside(lp, region_loop)):
                    out.append(lp)
        return sorted(out, key=lambda lp: lp.cursor.extent.start.offset)

    def var_kind(self, decl, region_loop, seen=()):
        """STATIC / DYNAMIC / TABLE (with why) of a variable's value inside the region."""
        if decl.hash in self.loop_of_var:
            lp = self.loop_of_var[decl.hash]
            if region_loop is None:
                return STATIC, ''
            if lp is region_loop:
                return DYNAMIC, f'{decl.spelling} (the pipelined loop variable)'
            if _inside(lp, region_loop) or lp.unrolled:
                return STATIC, ''
            return DYNAMIC, f'{decl.spelling} (loop variable of {lp.name()})'
        if decl.kind.name == 'PARM_DECL':
            return DYNAMIC, f'{decl.spelling} (a parameter)'
        if decl.kind.name != 'VAR_DECL':
            return STATIC, ''
        if decl.semantic_parent is not None and decl.semantic_parent.kind.name in ('TRANSLATION_UNIT', 'NAMESPACE',
                                                                                     'STRUCT_DECL', 'CLASS_DECL'):
            return (STATIC, '') if decl.type.is_const_qualified() else (DYNAMIC, f'{decl.spelling} (a global)')
        mk = (decl.hash, region_loop.cursor.hash if region_loop else None)
        if mk in self._kind_memo:
            return self._kind_memo[mk]
        if decl.hash in seen:
            return DYNAMIC, f'{decl.spelling} (recurrence)'
        best = (STATIC, '')
        defs = []
        init = _initializer(decl)
        if init is not None:
            defs.append(init)
        defs += self.assignments().get(decl.hash, [])
        if not defs:
            best = (DYNAMIC, f'{decl.spelling} (set elsewhere)')
        for d in defs:
            kk, why = self.expr_kind(d, region_loop, seen + (decl.hash,))
            if kk > best[0]:
                best = (kk, f'{decl.spelling} <- {why}' if why else decl.spelling)
        self._kind_memo[mk] = best
        return best

    def assignments(self) -> dict:
        """VAR_DECL hash -> right-hand sides assigned to it (x = ..., x += ...)."""
        if self._assign is None:
            self._assign = {}
            if self.body is not None:
                for c in self.body.walk_preorder():
                    if c.kind.name in ('BINARY_OPERATOR', 'COMPOUND_ASSIGNMENT_OPERATOR', 'CALL_EXPR'):
                        kids = list(c.get_children())
                        op, operands = _operator(c, kids)
                        if op in _WRITE_OPS and len(operands) == 2:
                            lhs = _strip(operands[0])
                            if lhs.kind.name == 'DECL_REF_EXPR' and lhs.referenced is not None:
                                self._assign.setdefault(lhs.referenced.hash, []).append(operands[1])
        return self._assign

    def expr_kind(self, c, region_loop, seen=()):
        k = c.kind.name
        if k == 'ARRAY_SUBSCRIPT_EXPR':
            kids = list(c.get_children())
            arr = self.array_of(kids[0]) if kids else None
            ik, why = self.expr_kind(kids[1], region_loop, seen) if len(kids) > 1 else (DYNAMIC, '')
            if arr is not None and arr.const_table and ik == STATIC:
                return STATIC, ''
            name = arr.name if arr else _text(kids[0]) if kids else '?'
            return TABLE, f'{name}[{_text(kids[1]) if len(kids) > 1 else ""}] (line {c.location.line})'
        if k == 'CALL_EXPR' and c.spelling == 'operator[]':
            return TABLE, f'{_text(c)} (line {c.location.line})'
        if k == 'DECL_REF_EXPR':
            ref = c.referenced
            if ref is None or ref.kind.name in ('TEMPLATE_NON_TYPE_PARAMETER', 'ENUM_CONSTANT_DECL', 'FUNCTION_DECL',
                                                'FUNCTION_TEMPLATE', 'OVERLOADED_DECL_REF', 'CXX_METHOD'):
                return STATIC, ''
            if ref.kind.name == 'PARM_DECL' and ref.hash in self.arrays:
                return STATIC, ''  # an array named whole (passed on)
            return self.var_kind(ref, region_loop, seen)
        best = (STATIC, '')
        for ch in c.get_children():
            kk = self.expr_kind(ch, region_loop, seen)
            if kk[0] > best[0]:
                best = kk
        if k == 'CALL_EXPR' and c.referenced is not None and c.referenced.kind.name == 'CXX_METHOD' and best[0] < DYNAMIC:
            best = (DYNAMIC, f'{_text(c)} (a call)')
        return best

    # ----- rule checks
    def check(self):
        for region, why in self.regions():
            root = region.cursor if region is not None else self.body
            if root is None:
                continue
            self.check_table_index(root, region, why)
            self.check_dividers(root, region, why)
            # a function called from a pipelined region: its reads per call, unless its own pipelined
            # loops say more (those are unrolled by the region above: the top-pipeline rule's finding)
            if region is not None or self.f.pipelined or not any(lp.pipelined for lp in self.f.loops.values()):
                self.check_ports(root, region, why)

    def _where(self):
        return self.inst.label

    def check_table_index(self, root, region, why):
        for c in root.walk_preorder():
            if c.kind.name != 'ARRAY_SUBSCRIPT_EXPR':
                continue
            kids = list(c.get_children())
            if len(kids) != 2:
                continue
            arr = self.array_of(kids[0])
            op = _write_op(c)
            ik, src = self.expr_kind(kids[1], region)
            if ik == DYNAMIC and op is not None and op != '=' and arr is not None and arr.part is not None:
                writers = self.instances(c, region)
                if writers is None or writers > 1:
                    n = f'{writers} writers' if writers else 'several writers (count not evaluated)'
                    self.lint.report(
                        'table-index', self.f.file, c.location.line, self.f.name,
                        f'{self._where()}: `{arr.name}[{_text(kids[1])}] {op}` in a {why}: {n} update {arr.name} at '
                        f'an index that changes every cycle ({src}); every element of {arr.name} becomes a chain of '
                        f'conditional updates over all writers. Give each writer a static target')
                continue
            if ik != TABLE:
                continue
            name = arr.name if arr else _text(kids[0])
            if op is not None:
                n = f', {arr.size} elements' if arr and isinstance(arr.size, int) else ''
                self.lint.report(
                    'table-index', self.f.file, c.location.line, self.f.name,
                    f'{self._where()}: `{name}[{_text(kids[1])}] {op}` in a {why}: the index comes from a table read '
                    f'({src}); every element of {name}{n} becomes a chain of conditional updates over all writers, '
                    f'which sets the II. Use static indices (unrolled loops over constants, a switch on the cycle)')
            elif arr is not None and arr.part is not None:
                fan = arr.size if arr.part.type == 'complete' else arr.part.factor
                self.lint.report(
                    'table-index', self.f.file, c.location.line, self.f.name,
                    f'{self._where()}: read `{name}[{_text(kids[1])}]` in a {why}: the index comes from a table read '
                    f'({src}) into {name}, which is {arr.part.describe()} ({arr.origin}): a {fan}-input mux per read'
                    f'{"" if isinstance(fan, int) else " (fan-in not evaluated)"}. A constant case table over the '
                    f'cycle keeps only the legs that occur')

    def instances(self, node, region):
        """How many copies of node the unrolled loops inside the region make (None: not evaluable)."""
        n = 1
        for lp in self.enclosing_loops(node, region):
            t = self.trip_count(lp)
            if t is None:
                return None
            n *= t
        return n

    def check_dividers(self, root, region, why):
        for c in root.walk_preorder():
            if c.kind.name not in ('BINARY_OPERATOR', 'COMPOUND_ASSIGNMENT_OPERATOR', 'CALL_EXPR'):
                continue
            kids = list(c.get_children())
            op, operands = _operator(c, kids)
            if op not in ('/', '%', '/=', '%=') or len(operands) != 2:
                continue
            divisor = self.lint.try_eval(operands[1], self.env)
            dk, dwhy = self.expr_kind(operands[0], region)
            inner = self.enclosing_loops(c, region)
            trips = [self.trip_count(lp) for lp in inner]
            n = 1
            for t in trips:
                n = n * t if isinstance(t, int) and isinstance(n, int) else None
            count = f'{n} instance{"s" if n != 1 else ""} after unrolling' if isinstance(n, int) else \
                'one per unrolled instance (count not evaluated)'
            text = f'`{_text(c)}`'
            if divisor is None:
                dvk, _ = self.expr_kind(operands[1], region)
                if dvk == STATIC:
                    continue  # constant after unrolling, only not evaluable here; checked where it is
                msg = f'{text} divides by a value that is not constant: a divider, {count}'
            elif _is_pow2(abs(divisor)) or dk == STATIC:
                continue
            else:
                msg = (f'{text} divides {dwhy or "a per-cycle value"} by {divisor}, not a power of two: '
                       f'a constant divider, {count}. Keep a counter or use power-of-two strides')
            self.lint.report('divider', self.f.file, c.location.line, self.f.name, f'{self._where()}: {msg} ({why})')

    def trip_count(self, lp: Loop):
        """Iterations of a for loop with constant bounds, or None."""
        if lp.cursor.kind.name != 'FOR_STMT' or lp.var is None:
            return None
        kids = list(lp.cursor.get_children())
        if len(kids) < 4:
            return None
        start = self.lint.try_eval(_initializer(lp.var), self.env) if _initializer(lp.var) is not None else None
        op, operands = _operator(kids[1], list(kids[1].get_children()))
        if start is None or op not in ('<', '<=', '!=') or len(operands) != 2:
            return None
        lhs = _strip(operands[0])
        if lhs.kind.name != 'DECL_REF_EXPR' or lhs.referenced is None or lhs.referenced.hash != lp.var.hash:
            return None
        bound = self.lint.try_eval(operands[1], self.env)
        inc = _tokens(kids[2])
        if bound is None or not (inc in ([lp.var.spelling, '++'], ['++', lp.var.spelling]) or
                                 inc == [lp.var.spelling, '+=', '1']):
            return None
        return max(0, bound - start + (1 if op == '<=' else 0))

    def check_ports(self, root, region, why):
        inner_loops = [lp for lp in self.f.loops.values() if region is None or _inside(lp, region)]
        reads = {}  # array hash -> [subscript cursors]
        for c in root.walk_preorder():
            if c.kind.name != 'ARRAY_SUBSCRIPT_EXPR':
                continue
            kids = list(c.get_children())
            arr = self.array_of(kids[0]) if kids else None
            if arr is None or (arr.part is not None and arr.part.type == 'complete'):
                continue
            if arr.decl.kind.name == 'PARM_DECL' and arr.part is None and arr.decl.spelling not in self.inst.arg_arrays \
                    and len(self.inst.chain) == 1:
                continue  # a top-level port: its interface decides
            if arr.size is not None and arr.size <= 1:
                continue
            op = _write_op(c)
            if op == '=':
                continue  # a write only
            if arr.const_table and self.expr_kind(kids[1], region)[0] == STATIC:
                continue  # a constant table at a constant index: folded, no memory
            reads.setdefault(arr.decl.hash, (arr, []))[1].append(c)
        for arr, sites in reads.values():
            count, exact = self.ports_needed(arr, sites, region, inner_loops)
            if count is None or count <= 2:
                continue
            lines = sorted({s.location.line for s in sites})
            part = f'{arr.part.describe()} ({arr.origin})' if arr.part else 'not partitioned'
            self.lint.report(
                'rom-ports', self.f.file, lines[0], self.f.name,
                f'{self._where()}: {count}{"" if exact else " or more"} reads of `{arr.name}` '
                f'({arr.size if arr.size is not None else "?"} elements, {part}) from one bank per iteration of the '
                f'{why} (line{"s" if len(lines) > 1 else ""} {", ".join(map(str, lines))}); a BRAM has 2 ports, so '
                f'the II rises to {-(-count // 2)}. Partition/reshape it so each cycle reads one word per bank')

    def ports_needed(self, arr: Array, sites, region, inner_loops):
        """Most distinct addresses of one bank read in one iteration (over a few iterations)."""
        region_var = region.var if region is not None else None
        region_trip = self.trip_count(region) if region is not None else 1
        iters = range(min(region_trip, MAX_ITERATIONS)) if isinstance(region_trip, int) and region_trip > 0 else [0, 1]
        # a function called from a pipelined region reads per call (one call per iteration): its scalar
        # parameters (a cycle counter) take a few values in turn
        scalars = [] if region is not None or self.f.pipelined else [
            p for p in self.f.params if p.type.get_canonical().kind.name in _SCALAR_TYPES]
        if scalars:
            iters = range(MAX_ITERATIONS)
        start = 0
        if region_var is not None and _initializer(region_var) is not None:
            start = self.lint.try_eval(_initializer(region_var), self.env) or 0
        exact = True
        combos_by_site = []
        for s in sites:
            loops = [lp for lp in self.enclosing_loops(s, region) if lp in inner_loops]
            trips = [self.trip_count(lp) for lp in loops]
            if any(t is None for t in trips):
                exact = False
                trips = [t if t is not None else 2 for t in trips]
            n = 1
            for t in trips:
                n *= t
            if n > MAX_INSTANCES:
                return n * len(sites), False
            combos_by_site.append((s, loops, trips))
        best = 0
        for it in iters:
            banks = {}
            unknown = 0
            for s, loops, trips in combos_by_site:
                idx_expr = list(s.get_children())[1]
                for values in itertools.product(*[range(t) for t in trips]):
                    binds = {lp.var.hash: v + self._start(lp) for lp, v in zip(loops, values) if lp.var is not None}
                    if region_var is not None:
                        binds[region_var.hash] = start + it
                    binds.update((p.hash, it) for p in scalars)
                    idx = self.eval_local(idx_expr, binds)
                    if idx is None:
                        unknown += 1
                        continue
                    bank, word = _bank_word(arr, idx)
                    banks.setdefault(bank, set()).add(word)
            worst = max((len(w) for w in banks.values()), default=0)
            if unknown:
                exact = exact and True
                worst = max(worst, unknown + (max((len(w) for w in banks.values()), default=0)
                                              if arr.part is None else 0))
            best = max(best, worst)
        return best, exact

    def _start(self, lp):
        init = _initializer(lp.var) if lp.var is not None else None
        return (self.lint.try_eval(init, self.env) or 0) if init is not None else 0

    def eval_local(self, c, binds):
        """Evaluate with loop variables bound, following local constants' initializers."""
        try:
            return self._eval_local(c, binds, 0)
        except (Unknown, RecursionError, ValueError, AttributeError):
            return None

    def _eval_local(self, c, binds, depth):
        if depth > 40:
            raise Unknown('deep')
        k = c.kind.name
        if k == 'DECL_REF_EXPR' and c.referenced is not None:
            ref = c.referenced
            if ref.hash in binds:
                return binds[ref.hash]
            if ref.kind.name == 'VAR_DECL' and ref.hash not in self.assignments() and ref.hash not in self.loop_of_var:
                init = _initializer(ref)
                if init is not None and ref.hash not in self.arrays:
                    return self._eval_local(init, binds, depth + 1)
            return self.lint.eval_expr(c, self.env, binds)
        if k == 'ARRAY_SUBSCRIPT_EXPR':
            raise Unknown('table')
        kids = list(c.get_children())
        if k in ('PAREN_EXPR', 'UNEXPOSED_EXPR', 'CSTYLE_CAST_EXPR', 'CXX_FUNCTIONAL_CAST_EXPR',
                 'CXX_STATIC_CAST_EXPR') and len(kids) == 1:
            return self._eval_local(kids[0], binds, depth + 1)
        if k in ('BINARY_OPERATOR', 'CALL_EXPR') or (k == 'UNEXPOSED_EXPR' and len(kids) > 1):
            op, operands = _operator(c, kids)
            if op is not None and len(operands) == 2:
                return _binop(op, self._eval_local(operands[0], binds, depth + 1),
                              self._eval_local(operands[1], binds, depth + 1))
        if k == 'CSTYLE_CAST_EXPR' and kids:
            return self._eval_local(kids[-1], binds, depth + 1)
        if k == 'CONDITIONAL_OPERATOR' and len(kids) == 3:
            return self._eval_local(kids[1] if self._eval_local(kids[0], binds, depth + 1) else kids[2], binds,
                                    depth + 1)
        if k == 'UNARY_OPERATOR' and kids:
            v = self._eval_local(kids[0], binds, depth + 1)
            op = _tokens(c)[:1]
            if op == ['-']:
                return -v
            if op == ['+']:
                return v
        return self.lint.eval_expr(c, self.env, binds)

    def check_top_pipeline(self, pipelined_above):
        for lp in self.f.loops.values():
            if not lp.pipelined:
                continue
            trip = self.trip_count(lp)
            if trip == 1 or trip == 0:
                continue
            iters = f'{trip} iterations' if trip is not None else 'iterations not evaluated'
            for p, top in pipelined_above:
                self.lint.report(
                    'top-pipeline', p.file, p.line, top,
                    f'`{p.text.strip()}` in {top} pipelines everything below it, so it fully unrolls '
                    f'{self.inst.label}\'s {lp.name()} ({Path(self.f.file).name}:{lp.line}, {iters}, '
                    f'`#pragma HLS PIPELINE` there): the reuse is lost. Set hls4ml\'s `PipelineStyle: dataflow` in the '
                    f'config (or give a layer the Resource strategy)')

    # ----- calls
    def calls(self):
        """(call cursor, callee Func, callee env, inside a pipelined region) for each call."""
        if self.body is None:
            return
        regions = [r for r, _ in self.regions()]
        for c in self.body.walk_preorder():
            if c.kind.name != 'CALL_EXPR':
                continue
            res = self.resolve_call(c)
            if res is None:
                continue
            callee, env = res
            in_region = any(r is None or _contains(r.cursor, c) for r in regions)
            yield c, callee, env, in_region

    def resolve_call(self, c):
        ref = c.referenced
        args = [a for a in c.get_arguments()] if hasattr(c, 'get_arguments') else []
        lint = self.lint
        if ref is not None and ref.kind.name in ('FUNCTION_DECL', 'CXX_METHOD'):
            tmpl = _specialized_template(ref)
            if tmpl is not None and tmpl.kind.name == 'FUNCTION_TEMPLATE':
                callee = lint.func_of(tmpl)
                if callee is None:
                    return None
                env = {}
                n = ref.get_num_template_arguments()
                for i, (name, kind) in enumerate(callee.tparams[:max(n, 0)]):
                    ak = ref.get_template_argument_kind(i).name
                    if ak == 'TYPE':
                        t = ref.get_template_argument_type(i)
                        d = t.get_canonical().get_declaration()
                        env[name] = (d.get_definition() or d) if d.kind.name in ('STRUCT_DECL', 'CLASS_DECL') else \
                            t.spelling
                    elif ak == 'INTEGRAL':
                        env[name] = ref.get_template_argument_value(i)
                return callee, env
            callee = lint.func_of(ref)
            return (callee, {}) if callee is not None else None
        # dependent call inside a template: resolve by name, bind the explicit template arguments
        head = next(c.get_children(), None)
        cands = []
        for x in (head.walk_preorder() if head is not None else []):
            if x.kind.name == 'OVERLOADED_DECL_REF':
                lib = _cindex().conf.lib
                cands = [lib.clang_getOverloadedDecl(x, i) for i in range(lib.clang_getNumOverloadedDecls(x))]
                break
            if x.kind.name == 'DECL_REF_EXPR' and x.referenced is not None and \
                    x.referenced.kind.name == 'FUNCTION_TEMPLATE':
                cands = [x.referenced]
                break
        funcs = [lint.func_of(d) for d in cands]
        funcs = [f for f in funcs if f is not None and len(f.params) == len(args)]
        if funcs:
            callee = max(funcs, key=lambda f: self._match_score(f, args))
            tparams = callee.tparams
        else:  # CONFIG_T::template kernel<...>::dense(...): a layer's generated kernel through its config
            member = self._member_template_method(head)
            if member is None:
                return None
            callee, tparams = member
        targs = _explicit_template_args(c)
        env = {}
        for (name, kind), toks in zip(tparams, targs):
            toks = [t for t in toks if t != 'typename']
            if kind == 'value':
                try:
                    env[name] = lint.eval_tokens(toks, self.env)
                except (Unknown, RecursionError):
                    pass
            else:
                parts = [t for t in toks if t != '::']
                if len(toks) == 1 and toks[0] in self.env:
                    env[name] = self.env[toks[0]]
                else:
                    try:
                        v = lint.resolve_qualified(parts, self.env) if all(re.match(r'\w+$', p) for p in parts) \
                            else ' '.join(toks)
                    except Unknown:
                        v = ' '.join(toks)
                    env[name] = v
        return callee, env

    def _member_template_method(self, head):
        """(Func, the class template's parameters) of ``T::template name<...>::method`` with T a
        template parameter bound to a config struct, or a struct member of one (``CONFIG_T::mult_config``):
        how our layers call their generated kernels."""
        toks = [t for t in (_tokens(head) if head is not None else []) if t != 'template']
        lt = toks.index('<') if '<' in toks else -1
        if lt < 3 or len(toks) < 6 or toks[lt - 2] != '::' or toks[-2] != '::' or toks[0] not in self.env:
            return None
        try:
            struct = self.lint.resolve_qualified([t for t in toks[:lt - 2] if t != '::'], self.env)
        except Unknown:
            return None
        if isinstance(struct, (int, str)) or struct is None:
            return None
        cls = self.lint.struct_member(struct, toks[lt - 1], kinds=('CLASS_TEMPLATE',))
        if cls is None:
            return None
        method = next((ch for ch in cls.get_children() if ch.kind.name == 'CXX_METHOD' and ch.spelling == toks[-1]), None)
        callee = self.lint.func_of(method)
        if callee is None:
            return None
        tparams = [(ch.spelling, 'type' if ch.kind.name == 'TEMPLATE_TYPE_PARAMETER' else 'value')
                   for ch in cls.get_children()
                   if ch.kind.name in ('TEMPLATE_TYPE_PARAMETER', 'TEMPLATE_NON_TYPE_PARAMETER', 'TEMPLATE_TEMPLATE_PARAMETER')]
        return callee, tparams

    def _match_score(self, f, args):
        score = 0
        for p, a in zip(f.params, args):
            is_arr_arg = self._arg_array(a) is not None
            pt = p.type.spelling
            param_arr = '[' in pt or p.type.kind.name in ('POINTER', 'CONSTANTARRAY', 'INCOMPLETEARRAY',
                                                           'DEPENDENTSIZEDARRAY')
            param_stream = 'stream' in pt
            if is_arr_arg and param_arr:
                score += 1
            if is_arr_arg and param_stream:
                score -= 2
            arg_stream = 'stream' in _strip(a).type.spelling
            if arg_stream:
                score += 2 if param_stream else -2
        return score

    def _arg_array(self, a):
        """(Array, offset expression or None) an argument passes: `x`, `&x[off]`, `x + off`."""
        c = _strip(a)
        if c.kind.name == 'DECL_REF_EXPR' and c.referenced is not None and c.referenced.hash in self.arrays:
            return self.arrays[c.referenced.hash], None
        if c.kind.name == 'UNARY_OPERATOR' and _tokens(c)[:1] == ['&']:
            sub = _strip(next(c.get_children()))
            if sub.kind.name == 'ARRAY_SUBSCRIPT_EXPR':
                kids = list(sub.get_children())
                arr = self.array_of(kids[0])
                if arr is not None:
                    return arr, kids[1]
        return None

    def argument_arrays(self, call, callee: Func) -> dict:
        out = {}
        for p, a in zip(callee.params, list(call.get_arguments())):
            got = self._arg_array(a)
            if got is None:
                continue
            arr, off = got
            if off is not None:
                self.check_offset(a, arr, off)
            out[p.spelling] = Array(arr.name, arr.decl, arr.size, arr.part, arr.const_table, arr.origin)
        return out

    def check_offset(self, call, arr, off):
        if arr.part is None or arr.part.type != 'complete' or not self.lint.in_scope(self.f.file):
            return
        region = next((lp for lp in self.f.loops.values() if _contains(lp.cursor, call) and not lp.unrolled), None)
        ok = self.lint.try_eval(off, self.env) is not None
        if ok:
            return
        kind, why = self.expr_kind(off, region) if region is not None else (DYNAMIC, '')
        if kind == STATIC:
            return
        self.lint.report(
            'table-index', self.f.file, call.location.line, self.f.name,
            f'{self._where()}: passes `&{arr.name}[{_text(off)}]`, a sub-array of {arr.name} '
            f'({arr.part.describe()}, {arr.origin}) at an offset that changes at run time'
            f'{" (" + why + ")" if why else ""}: every access in the callee is a mux over all '
            f'{arr.size if arr.size is not None else "?"} elements of {arr.name}. Copy the slice into a local array '
            f'with static indices first')

    def check_partition_consistency(self, call, callee: Func, env, arg_arrays):
        lint = self.lint
        for p in callee.params:
            if p.spelling not in arg_arrays:
                continue
            caller_arr = arg_arrays[p.spelling]
            if caller_arr.part is None:
                continue
            callee_fa = _callee_partition(lint, callee, env, p)
            if callee_fa is None:
                continue
            if callee_fa.key() == caller_arr.part.key():
                continue
            cp = caller_arr.part.pragma
            lint.report(
                'partition-mismatch', cp.file, cp.line, self.f.name,
                f'{self._where()}: `{caller_arr.name}` is {caller_arr.part.describe()} here but {callee.name}\'s '
                f'parameter `{p.spelling}` is {callee_fa.describe()} ({Path(callee_fa.pragma.file).name}:'
                f'{callee_fa.pragma.line}); give both the same directive (HLS reshapes/partitions a port one way)')


def _callee_partition(lint, callee, env, param):
    fa = FuncAnalysis.__new__(FuncAnalysis)
    fa.lint, fa.f, fa.env = lint, callee, env
    return fa._partition(param.spelling, None)


def _explicit_template_args(call) -> list[list[str]]:
    toks = _tokens(call)
    if '<' not in toks:
        return []
    i = toks.index('<')
    if '(' in toks and toks.index('(') < i:
        return []
    out, cur, depth = [], [], 0
    for t in toks[i + 1:]:
        if t in ('<', '(', '['):
            depth += 1
        elif t in (')', ']') or (t == '>' and depth > 0):
            depth -= 1
        elif t == '>>' and depth > 0:
            depth -= 2
            if depth < 0:
                break
        elif t == '>' and depth == 0:
            break
        if t == ',' and depth == 0:
            out.append(cur)
            cur = []
        else:
            cur.append(t)
    if cur:
        out.append(cur)
    return out


def _bank_word(arr: Array, idx: int):
    p, n = arr.part, arr.size
    if p is None or not isinstance(p.factor, int) or p.dim != 1:
        return 0, idx
    f = p.factor
    if p.kind == 'reshape':
        if p.type == 'block' and isinstance(n, int):
            depth = -(-n // f)
            return 0, idx % depth
        return 0, idx // f  # cyclic
    if p.type == 'block' and isinstance(n, int):
        size = -(-n // f)
        return idx // size, idx % size
    return idx % f, idx // f


def _ancestors(lp):
    p = lp.parent
    while p is not None:
        yield p
        p = p.parent


def _inside(lp, outer) -> bool:
    return any(a is outer for a in _ancestors(lp))


def _contains(outer, node) -> bool:
    e = outer.extent
    return e.start.offset <= node.extent.start.offset and node.extent.end.offset <= e.end.offset and \
        e.start.file and node.extent.start.file and e.start.file.name == node.extent.start.file.name


def _strip(c):
    while c.kind.name in ('UNEXPOSED_EXPR', 'PAREN_EXPR') and len(list(c.get_children())) == 1:
        c = next(c.get_children())
    return c


def _text(c) -> str:
    s = ''
    prev = None
    for t in _tokens(c):
        if prev is not None and (re.match(r'\w', t) and re.match(r'.*\w$', prev)):
            s += ' '
        elif prev is not None and t not in ('[', ']', '(', ')', '::', ',', '.') and prev not in ('[', '(', '::', '.') \
                and not (t == '++' or t == '--'):
            s += ' '
        s += t
        prev = t
    return s


def _write_op(sub) -> str | None:
    """The assignment operator when the ARRAY_SUBSCRIPT_EXPR is written (`a[i] = `, `a[i] += `, `a[i]++`)."""
    tu = sub.translation_unit
    end = sub.extent.end
    file = end.file
    if file is None:
        return None
    ci = _cindex()
    ext = ci.SourceRange.from_locations(end, ci.SourceLocation.from_offset(tu, file, end.offset + 4))
    toks = [t.spelling for t in tu.get_tokens(extent=ext)]
    # the last token of the subscript is ']'; the next token is the operator
    nxt = toks[1] if toks and toks[0] == ']' and len(toks) > 1 else toks[0] if toks else None
    if nxt in _WRITE_OPS or nxt in ('++', '--'):
        return nxt
    start = sub.extent.start
    if start.offset >= 2:
        ext = ci.SourceRange.from_locations(ci.SourceLocation.from_offset(tu, file, start.offset - 2), start)
        before = [t.spelling for t in tu.get_tokens(extent=ext)]
        if before[-2:-1] in (['++'], ['--']):
            return before[-2]
    return None


# --------------------------------------------------------------------------- API


def lint_project(hls_dir: Path, top: str | None = None, notes: list | None = None) -> list[Finding]:
    """The findings of every rule over the converted hls4ml project in ``hls_dir``. ``notes``, when
    given, receives the parse errors clang reported inside our files (the lint may miss code there)."""
    lint = Linter(Path(hls_dir), top)
    findings = lint.run()
    if notes is not None:
        notes.extend(lint.parse_errors)
    return findings


def print_findings(findings: list[Finding], console, root: Path | None = None) -> None:
    from rich.table import Table

    if not findings:
        console.print('[green]HLS lint: no findings[/green]')
        return
    t = Table(title=f'HLS lint: {len(findings)} finding{"s" if len(findings) != 1 else ""}', show_lines=True)
    for col in ('rule', 'where', 'function', 'why'):
        t.add_column(col, overflow='fold')
    for f in findings:
        where = f.where()
        if root is not None:
            try:
                where = f'{Path(f.file).resolve().relative_to(Path(root).resolve())}:{f.line}'
            except ValueError:
                pass
        t.add_row(f.rule, where, f.function, f.message)
    console.print(t)


def main(argv=None) -> int:
    import argparse
    import time

    from rich.console import Console

    ap = argparse.ArgumentParser(prog='python -m flow.stages.hls_lint', description=__doc__.splitlines()[0])
    ap.add_argument('hls_dir', type=Path, help='the hls4ml project (holds firmware/)')
    ap.add_argument('--top', help='the top function (default: the functions of firmware/*.cpp nobody calls)')
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    notes = []
    findings = lint_project(a.hls_dir, a.top, notes)
    console = Console(width=160)
    for n in notes:
        console.print(f'[yellow]note: clang could not parse {n}; the lint may miss code there[/yellow]')
    print_findings(findings, console, a.hls_dir)
    for f in findings:  # plain lines too, for editors and grep
        print(f'{f.file}:{f.line}: [{f.rule}] {f.function}: {f.message}')
    console.print(f'({time.perf_counter() - t0:.1f} s)')
    return 1 if findings else 0


if __name__ == '__main__':
    sys.exit(main())
