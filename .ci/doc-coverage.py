#!/usr/bin/env python3
# Doc-example coverage of a crate's public API, from rustdoc JSON (needs a nightly toolchain):
#   RUSTDOCFLAGS="-Z unstable-options --output-format json" CARGO_TARGET_DIR=target/json \
#     cargo +nightly doc -p multiproc --all-features --no-deps
#   python3 .ci/doc-coverage.py target/json/doc/multiproc.json [-v]   # -v lists the items without one
"""Doc-example coverage of a crate's public API from rustdoc JSON.
Types: structs, enums, traits, unions, type aliases, macros reachable from the crate root.
Methods: free functions and pub methods of inherent impls (and trait-declared methods of pub traits).
An item 'has an example' when its docs contain a ``` fence."""
import json, sys
d = json.load(open(sys.argv[1]))
idx = d["index"]; root = d["root"]
def hidden(it):
    return any("doc(hidden)" in str(a) for a in it.get("attrs", []))
def kind(it): return next(iter(it["inner"]))
seen = set(); types = {}; fns = {}
def add_impls(owner_name, impl_ids):
    for i in impl_ids:
        im = idx.get(str(i))
        if not im: continue
        imp = im["inner"]["impl"]
        if imp.get("trait") is not None or imp.get("is_synthetic") or imp.get("blanket_impl"): continue
        if hidden(im): continue
        for m in imp["items"]:
            mi = idx.get(str(m))
            if not mi or mi["visibility"] != "public" or hidden(mi): continue
            if kind(mi) == "function":
                fns[f"{owner_name}::{mi['name']}"] = "```" in (mi.get("docs") or "")
def visit(i, path):
    i = str(i)
    it = idx.get(i)
    if it is None or i in seen: return
    seen.add(i)
    if hidden(it): return
    k = kind(it)
    name = it.get("name")
    if k == "module":
        for c in it["inner"]["module"]["items"]:
            visit(c, path + [name] if i != str(root) else path)
    elif k == "use":
        u = it["inner"]["use"]
        if u.get("id") is not None:
            tgt = idx.get(str(u["id"]))
            if u.get("is_glob"):
                if tgt: 
                    for c in tgt["inner"].get("module", {}).get("items", []): visit(c, path)
            else:
                visit(u["id"], path)
    elif k in ("struct", "enum", "trait", "union", "type_alias", "macro"):
        full = "::".join(path + [name])
        types[full] = "```" in (it.get("docs") or "")
        inner = it["inner"][k]
        if k in ("struct", "enum", "union"):
            add_impls(full, inner.get("impls", []))
        if k == "trait":
            for m in inner["items"]:
                mi = idx.get(str(m))
                if mi and kind(mi) == "function" and not hidden(mi):
                    fns[f"{full}::{mi['name']}"] = "```" in (mi.get("docs") or "")
    elif k == "function":
        fns["::".join(path + [name])] = "```" in (it.get("docs") or "")
visit(root, [])
tw = sum(types.values()); fw = sum(fns.values())
print(f"types: {tw}/{len(types)} with an example ({100*tw/max(1,len(types)):.0f} %)")
print(f"functions+methods: {fw}/{len(fns)} with an example ({100*fw/max(1,len(fns)):.0f} %)")
print(f"all: {tw+fw}/{len(types)+len(fns)}")
if "-v" in sys.argv:
    for n, ok in sorted(types.items()):
        if not ok: print("TYPE", n)
    for n, ok in sorted(fns.items()):
        if not ok: print("FN", n)
