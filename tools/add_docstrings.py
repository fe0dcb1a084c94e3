"""Insert docstrings into the notebooks' exported code: `python tools/add_docstrings.py DOCS.json [...]`.

DOCS.json maps a qualified name (`invgen_lit.module.Class.method`, `invgen_lit.module.function`) to its docstring. Each
is written into the notebook cell that defines it, right below the `def`/`class` line (a one-line `def f(x): return y`
is split); names that already have a docstring are left alone. Prints what it could not place."""
import ast, json, re, sys
from pathlib import Path

import nbformat

NBS = Path(__file__).resolve().parents[1] / "nbs"

def module_notebooks() -> dict:
    "module name -> notebook path, from each notebook's `#| default_exp`."
    out = {}
    for p in sorted(NBS.glob("*.ipynb")):
        m = re.search(r"#\|\s*default_exp\s+([\w.]+)", p.read_text())
        if m: out[m.group(1)] = p
    return out

def _find(tree: ast.Module, parts: list):
    "The def/class node for `parts` (['Class', 'method'] or ['function']), following `Class.attr = function` assignments."
    nodes = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))}
    if len(parts) == 1: return nodes.get(parts[0])
    cls = nodes.get(parts[0])
    if isinstance(cls, ast.ClassDef):
        for n in cls.body:
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == parts[1]: return n
    for n in tree.body:   # Class.attr = function (or a tuple of them), outside the class body
        if not isinstance(n, ast.Assign): continue
        for t in n.targets:
            pairs = zip(t.elts, n.value.elts) if isinstance(t, ast.Tuple) and isinstance(n.value, ast.Tuple) else [(t, n.value)]
            for target, value in pairs:
                if (isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == parts[0]
                        and target.attr == parts[1] and isinstance(value, ast.Name)):
                    return nodes.get(value.id)
    return None

def _docstring_lines(doc: str, indent: str) -> list:
    "The docstring as indented source lines: one quoted line, or a triple-quoted block."
    doc = doc.strip().replace('"""', "'''")
    if "\n" not in doc and '"' not in doc: return [f'{indent}"{doc}"']
    lines = doc.split("\n")
    out = [f'{indent}"""{lines[0]}'] + [f"{indent}{l}" if l else "" for l in lines[1:]]
    out[-1] += ' """' if out[-1].endswith('"') else '"""'
    return out

def insert(source: str, node, doc: str) -> str:
    "`source` with `doc` as the docstring of `node` (parsed from `source`)."
    lines = source.split("\n")
    first = node.body[0]
    def_line = node.lineno - 1
    indent = " " * (node.col_offset + 4)
    if first.lineno - 1 == def_line or (first.lineno - 1 <= def_line):      # one-line def: split it
        end = node.body[0].lineno - 1
        line = lines[end]
        head, body = line[:first.col_offset].rstrip(), line[first.col_offset:]
        lines[end:end + 1] = [head] + _docstring_lines(doc, indent) + [indent + body]
    else:
        lines[first.lineno - 1:first.lineno - 1] = _docstring_lines(doc, indent)
    return "\n".join(lines)

def main(paths):
    docs = {}
    for p in paths: docs.update(json.loads(Path(p).read_text()))
    mods, missed, done = module_notebooks(), [], 0
    books = {}
    for qual, doc in docs.items():
        parts = qual.split(".")[1:]
        mod, rest = parts[0], parts[1:]
        if mod not in mods: missed.append((qual, "no notebook")); continue
        nb = books.setdefault(mod, nbformat.read(mods[mod], 4))
        placed = False
        for cell in nb.cells:
            if cell.cell_type != "code" or not re.match(r"#\|\s*export", cell.source): continue
            try: tree = ast.parse(cell.source)
            except SyntaxError: continue
            node = _find(tree, rest)
            if node is None: continue
            if ast.get_docstring(node) is None:
                cell.source = insert(cell.source, node, doc); done += 1
            placed = True
            break
        if not placed: missed.append((qual, "definition not found"))
    for mod, nb in books.items(): nbformat.write(nb, mods[mod])
    print(f"{done} docstrings inserted")
    for q, why in missed: print(f"not placed: {q} ({why})")

if __name__ == "__main__": main(sys.argv[1:])
