"""One-off rewrite: the source papers cited by author and year instead of their file names and numbers.

`python tools/cite_by_name.py FILE...` rewrites each file in place (notebooks as text: sources and saved outputs
alike, so that an output says what its code now prints). Kept in tools/ because the mapping documents how the old
numbering reads: 000 Lee et al. 2021 (ITGAN), 001 Ren et al. 2020 (InvGAN), 002 Kilcher, Lucchi and Hofmann 2017
(generator reversal), 003 Xu, Cheng and Xie 2022a (iGNN, Part I of their slides) and 2022b (JKO-iFlow, Part II),
004 Cho 2025 (PhD thesis)."""
import re
import sys
from pathlib import Path

FILES = {"000": "3d4e6d8aba290249", "001": "47c07dd61330c6f7", "002": "fb4f48dc06fe8d72", "003": "795a3ba78f0fe31f",
         "004": "ab14fdc72a007bd1"}
LONG = {"000": "Lee et al. 2021", "001": "Ren et al. 2020", "002": "Kilcher, Lucchi and Hofmann 2017",
        "003": "Xu, Cheng and Xie 2022a", "004": "Cho 2025"}
SHORT = {"000": "Lee 2021", "001": "Ren 2020", "002": "Kilcher 2017", "003": "Xu 2022a", "004": "Cho 2025"}
JKO = re.compile(r"jko", re.I)

def rewrite(text: str, jko_context: bool) -> str:
    "Replace the numbered citations of `text`; a bare 003 is JKO-iFlow (2022b) in the JKO files, iGNN (2022a) elsewhere."
    short = SHORT | ({"003": "Xu 2022b"} if jko_context else {})
    fixed = [("Seed 004 (Cho, PhD thesis 2025)", "Cho 2025 (PhD thesis)"),
             ("(seed 003 Part II; Xu, Cheng and Xie 2022)", "(Xu, Cheng and Xie 2022b)"),
             ("The methods are those of the five source papers in `seeds/` (", "The methods are those of the five source papers ("),
             ("`ANCHOR_FACTS.md`", "the authors' published settings"), ("ANCHOR_FACTS)", "the published settings)"),
             ("issue 4 / seed 001", "Ren 2020")]
    for old, new in fixed: text = text.replace(old, new)
    for n, h in FILES.items():
        text = re.sub(rf"`?(?:seeds/)?{n}_{h}\.txt`?", LONG[n], text)
    text = re.sub(r"[Ss]eed 003,? Part II\b", "Xu 2022b", text)
    text = re.sub(r"[Ss]eed 003,? Part I\b", "Xu 2022a", text)
    text = re.sub(r"[Ss]eed[ -](00[0-4])", lambda m: short[m.group(1)], text)
    text = text.replace("JKO-iFlow (003)", "JKO-iFlow (Xu 2022b)")
    text = re.sub(r"(CNF|DLSGAN|InfoGAN|InvGAN|MSEGAN|PVDGAN|VAEGAN|i-ResNet|reversal) \((00[0-4])\)",
                  lambda m: f"{m.group(1)} ({SHORT[m.group(2)]})", text)
    return text

if __name__ == "__main__":
    for f in map(Path, sys.argv[1:]):
        old = f.read_text(encoding="utf-8")
        new = rewrite(old, bool(JKO.search(f.name)))
        if new != old: f.write_text(new, encoding="utf-8"); print(f"rewrote {f}")
