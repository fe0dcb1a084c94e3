"""List the public functions, classes and methods of invgen_lit that have no docstring (tests/test_docstrings.py uses it)."""
import importlib, inspect, pkgutil, sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import invgen_lit

def public_objects():
    "Yield (module, qualname, object) for every public function, class and method the package exports."
    for info in pkgutil.iter_modules(invgen_lit.__path__):
        if info.name.startswith("_"): continue
        mod = importlib.import_module(f"invgen_lit.{info.name}")
        names = getattr(mod, "__all__", [n for n in vars(mod) if not n.startswith("_")])
        for name in names:
            obj = getattr(mod, name, None)
            if getattr(obj, "__module__", None) != mod.__name__: continue
            if inspect.isfunction(obj): yield mod.__name__, name, obj
            elif inspect.isclass(obj):
                yield mod.__name__, name, obj
                for attr, member in vars(obj).items():
                    if attr.startswith("_") and attr != "__call__": continue
                    if isinstance(member, property): yield mod.__name__, f"{name}.{attr}", member; continue
                    f = getattr(member, "__func__", member)
                    if inspect.isfunction(f): yield mod.__name__, f"{name}.{attr}", f

def missing():
    "The (module, qualname) pairs whose object has no docstring of its own."
    out = []
    for mod, qual, obj in public_objects():
        doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
        if not (doc or "").strip(): out.append((mod, qual))
    return out

if __name__ == "__main__":
    m = missing()
    for mod, qual in m: print(f"{mod}.{qual}")
    print(f"{len(m)} without a docstring", file=sys.stderr)
