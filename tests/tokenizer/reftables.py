"""Character tables that models/tokenizer needs to reproduce open_clip exactly.

open_clip's SimpleTokenizer depends on three Unicode databases that do not
agree with Go's `unicode` package (Unicode 15.0):

* the `regex` module's own tables (for `[\\p{L}]`, `[\\p{N}]`, `\\s` under
  IGNORECASE in the pre-tokenisation pattern),
* CPython's `unicodedata` (str.lower, str.isspace, str.split, the `re`
  module's `\\w`/`\\d`, NFC normalisation inside ftfy),
* ftfy's own character classes, charmap codecs and entity tables.

`build_tables()` extracts all of them from the running interpreter into plain
JSON-able data. make_tables.py turns that into models/tokenizer/tables_gen.go;
gen_tokenizer.py records `digest(build_tables())` in the reference data so the
Go tests notice when the committed tables no longer match the Python
environment that produced the reference ids.

Deterministic: the output depends only on the installed package versions.
"""

import hashlib
import html
import html.entities
import json
import re
import sys
import unicodedata

import regex

import ftfy
import ftfy.bad_codecs  # noqa: F401  (registers the sloppy codecs)
from ftfy import badness, chardata

MAX_CP = 0x110000


def _all_chars():
    # Every code point except the surrogates (a Go string cannot hold them).
    return [chr(cp) for cp in range(MAX_CP) if not 0xD800 <= cp <= 0xDFFF]


def _ranges(cps):
    """Sorted code points -> flat [lo0, hi0, lo1, hi1, ...] inclusive ranges."""
    out = []
    for cp in sorted(cps):
        if out and out[-1] == cp - 1:
            out[-1] = cp
        else:
            out.extend([cp, cp])
    return out


def _matching(rx, chars):
    """Code points of chars that the compiled pattern rx matches."""
    return [ord(c) for c in chars if rx.match(c)]


def _set_of_class(cls_text, flags=0):
    """Code points matched by the `re` character class [cls_text]."""
    rx = re.compile("[" + cls_text + "]", flags)
    return sorted(cp for cp in range(MAX_CP)
                  if not 0xD800 <= cp <= 0xDFFF and rx.match(chr(cp)))


def build_tables():
    chars = _all_chars()
    t = {}

    # --- pre-tokenisation classes (regex module, IGNORECASE as open_clip) ---
    def rx(p):
        return regex.compile(p, regex.IGNORECASE)

    t["regex_letter"] = _ranges(_matching(rx(r"[\p{L}]"), chars))
    t["regex_number"] = _ranges(_matching(rx(r"[\p{N}]"), chars))
    t["regex_space"] = _ranges(_matching(rx(r"\s"), chars))
    t["regex_other"] = _ranges(_matching(rx(r"[^\s\p{L}\p{N}]"), chars))

    # --- CPython str methods ---
    t["py_space"] = _ranges([ord(c) for c in chars if c.isspace()])
    lower = []
    for c in chars:
        lo = c.lower()
        if lo != c:
            lower.append([ord(c), [ord(x) for x in lo]])
    t["py_lower"] = lower
    # Final-sigma context of str.lower(): which characters are skipped as
    # Case_Ignorable, and which (non-ignorable) ones count as Cased. Probed
    # through str.lower() itself so it is exactly what CPython does.
    ignorable, cased = [], []
    for c in chars:
        if (c + "\u03a3").lower()[-1] == "\u03c2":
            cased.append(ord(c))
        elif ("A" + c + "\u03a3").lower()[-1] == "\u03c2":
            ignorable.append(ord(c))
    t["py_case_ignorable"] = _ranges(ignorable)
    t["py_cased"] = _ranges(cased)
    # `re` module (used by ftfy): \w and \d on str patterns.
    t["re_word"] = _ranges(_matching(re.compile(r"\w"), chars))
    t["re_digit"] = _ranges(_matching(re.compile(r"\d"), chars))

    # --- NFC data from unicodedata ---
    ccc = []
    for c in chars:
        v = unicodedata.combining(c)
        if v:
            if ccc and ccc[-1][1] == ord(c) - 1 and ccc[-1][2] == v:
                ccc[-1][1] = ord(c)
            else:
                ccc.append([ord(c), ord(c), v])
    t["nfc_ccc"] = ccc
    decomp = []
    for c in chars:
        d = unicodedata.decomposition(c)
        if not d or d.startswith("<"):
            continue
        parts = [int(x, 16) for x in d.split()]
        # A two-character canonical decomposition is a primary composite
        # exactly when NFC maps the character to itself.
        composable = len(parts) == 2 and unicodedata.normalize("NFC", c) == c
        decomp.append([ord(c), parts, composable])
    t["nfc_decomp"] = decomp

    # --- html.unescape ---
    t["html5"] = sorted([k, v] for k, v in html.entities.html5.items())
    hmod = sys.modules["html"]
    t["html_invalid_charrefs"] = sorted([k, v] for k, v in hmod._invalid_charrefs.items())
    t["html_invalid_codepoints"] = sorted(hmod._invalid_codepoints)

    # --- ftfy ---
    extras = []
    for k, v in sorted(chardata.HTML_ENTITIES.items()):
        name = k[1:]
        if html.entities.html5.get(name) == v and name.endswith(";"):
            continue
        extras.append([k, v])
    t["ftfy_entity_extras"] = extras
    charmaps = {}
    for enc in chardata.CHARMAP_ENCODINGS:
        charmaps[enc] = [ord(c) for c in bytes(range(256)).decode(enc)]
    charmaps["windows-1252"] = [
        ord(bytes([b]).decode("windows-1252", errors="replace"))
        if bytes([b]).decode("windows-1252", errors="replace") != "\ufffd" else -1
        for b in range(256)
    ]
    t["charmaps"] = charmaps
    t["charmap_order"] = list(chardata.CHARMAP_ENCODINGS)
    cats = {}
    for name, cls in badness.MOJIBAKE_CATEGORIES.items():
        cats[name] = _set_of_class(cls, re.VERBOSE)
    t["mojibake_categories"] = cats
    clues = {}
    for name, cls in chardata.UTF8_CLUES.items():
        clues[name] = _set_of_class(cls, re.VERBOSE)
    t["utf8_clues"] = clues
    t["width_map"] = sorted([k, v] for k, v in chardata.WIDTH_MAP.items())
    t["ligatures"] = sorted([k, v] for k, v in chardata.LIGATURES.items())
    t["control_chars"] = sorted(chardata.CONTROL_CHARS)
    return t


def versions():
    return {
        "python": sys.version.split()[0],
        "unicodedata": unicodedata.unidata_version,
        "regex": regex.__version__,
        "ftfy": ftfy.__version__,
    }


def digest(tables):
    blob = json.dumps(tables, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("ascii")).hexdigest()


_TABLES = None


def build_tables_cached():
    """build_tables(), computed once per process."""
    global _TABLES
    if _TABLES is None:
        _TABLES = build_tables()
    return _TABLES
