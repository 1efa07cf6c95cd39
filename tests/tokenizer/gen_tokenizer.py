#!/usr/bin/env python3
"""Reference data for models/tokenizer (Go port of open_clip's CLIP tokenizer).

Usage (from the repository root):

    /path/to/venv/bin/python tests/tokenizer/gen_tokenizer.py --out tests/testdata/tokenizer

Writes, into --out:

* tokenizer_ref.json: for every test string its open_clip.tokenize ids
  (context 77, open_clip truncates), SimpleTokenizer().encode ids, the cleaned
  text, ftfy.fix_text output and decode(encode); plus focused sections for
  other context lengths, decode of arbitrary ids, html.unescape, ftfy's
  unescape_html, ftfy.fix_text on generated mojibake and ftfy.badness.is_bad;
  and the digest of the character tables (see reftables.py) so the Go tests
  notice a stale models/tokenizer/tables_gen.go.
* bpe_simple_vocab_16e6.txt.gz: a copy of the vocabulary open_clip used.

Deterministic: fixed seeds, no dependence on time or environment beyond the
installed package versions (recorded in the JSON "meta").
"""

import argparse
import hashlib
import html
import json
import os
import random
import shutil
import sys

sys.dont_write_bytecode = True  # keep __pycache__ out of tests/tokenizer
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ftfy  # noqa: E402
import ftfy.bad_codecs  # noqa: E402,F401
import open_clip  # noqa: E402
from ftfy import badness, fixes  # noqa: E402
from open_clip import tokenizer as oc_tok  # noqa: E402

import reftables  # noqa: E402

CONTEXT = 77

AGD20K_SEEN = [
    "beat", "boxing", "brush_with", "carry", "catch", "cut", "cut_with", "drag",
    "drink_with", "eat", "hit", "hold", "jump", "kick", "lie_on", "lift",
    "look_out", "open", "pack", "peel", "pick_up", "pour", "push", "ride", "sip",
    "sit_on", "stick", "stir", "swing", "take_photo", "talk_on", "text_on",
    "throw", "type_on", "wash", "write",
]
AGD20K_UNSEEN = [
    "carry", "catch", "cut", "cut_with", "drink_with", "eat", "hit", "hold",
    "jump", "kick", "lie_on", "open", "peel", "pick_up", "pour", "push", "ride",
    "sip", "sit_on", "stick", "swing", "take_photo", "throw", "type_on", "wash",
]
HICO_IIF = ["cut_with", "drink_with", "hold", "open", "pour", "sip", "stick", "stir", "swing", "type_on"]

CLASS_LISTS = [("agd20k_seen", AGD20K_SEEN), ("agd20k_unseen", AGD20K_UNSEEN), ("hico_iif", HICO_IIF)]


def affordance_prompt(name):
    return "an item to " + name + ("" if "with" in name else " with")


def exo_prompt(name):
    return "a person " + name + " an item"


EDGE = [
    # empty / whitespace
    "", " ", "   ", "\t\n", "\n\n\n", "a", "A", "a  b", "a\tb", "a\nb", "a\r\nb", "a\rb",
    " leading", "trailing ", "  both  ", "\t tabs\tand\nnewlines \n", "a\u00a0b", "a\u2003b",
    "a\u3000b", "a\u200bb", "a\u2028b", "a\u2029b", "\u0085", "a\x0bb", "a\x0cb", "a\x1cb", "a\x1fb",
    "a\x85b", "a\u1680b", "a\u180eb", "a\u202fb", "a\u205fb",
    # digits
    "123", "1,234.56", "3.14159", "2024-01-01", "x\u00b2", "\u00bd", "\u216b", "\u0663\u0664\u0665",
    "\u0967\u0968\u0969", "\uff11\uff12\uff13", "\u2460\u2461", "\U0001d7ce\U0001d7cf", "007", "1st 2nd 3rd",
    # contractions
    "it's", "IT'S", "It'S", "we're", "WE'RE", "they've", "I'm", "you'll", "he'd", "don't", "can't",
    "'s", "'S", "rock'n'roll", "o'clock", "it\u2019s", "ITS'S'", "''", "'", "'''s", "it'\u017f",
    "\u017ftra\u00dfe", "STRASSE", "Stra\u00dfe", "\u1e9e", "'ll've'd're'm't's",
    # html entities
    "&amp;", "&amp;amp;", "&amp;amp;amp;", "&lt;b&gt;", "&#39;", "&#x27;", "&#X27;", "&nbsp;", "&copy;",
    "&copy", "&amp", "&AMP;", "&AMP", "&notit;", "&notin;", "this&not that", "&EACUTE;", "P&EACUTE;REZ",
    "BUNDESSTRA&SZLIG;E", "&ntilde; &Ntilde; &NTILDE; &nTILDE;", "&#0;", "&#128;", "&#x80;", "&#xD800;",
    "&#1114112;", "&#99999999999999999999;", "&#65", "&#65;&#66;", "&#x41g", "&hellip;", "&mdash;",
    "&lt;3", "< &amp; >", "1 < 2 &amp; 3", "&Jscr;ohn &HilbertSpace;ancock", "&checkmark;", "&#x1F600;",
    "&#128512;", "&#;", "&#x;", "&;", "& ;", "&&amp;", "&amp;lt;b&amp;gt;", "&quot;hi&quot;", "&apos;",
    "&frac12;", "&sup2;", "&euro;", "&pound;100", "&yen", "&zwnj;", "&shy;", "&ThinSpace;", "&NewLine;",
    "&Tab;", "a&nbsp;&nbsp;b", "&" + "a" * 40 + ";", "&abcdefghijklmnopqrstuvwxyz01234;", "&#0000065;",
    "&#x0000041;", "&#12;", "&#13;", "&#x9F;", "&#xFDD0;", "&#xFFFE;", "&#x10FFFF;", "&#x110000;",
    "&amp;#39;", "&amp;nbsp;", "&Amp;", "&ampx;", "&copyright", "&notin", "&lt&gt", "&LT;&GT;", "&Eacute;",
    "&eacute;t&eacute;", "&ETH;", "&eth;", "&ETH", "&szlig;", "&SZLIG;", "&#x2019;s", "&rsquo;s",
    "<b>&amp;</b>", "a < b\n&amp; c", "&amp; c\na < b", "x &gt; y\nz &lt; w",
    # punctuation and specials
    "!!!", "...", "?!?!", "hello...world", "a-b", "a_b", "a/b", "(a)", "[a]", "{a}", "a@b.com",
    "#hashtag", "$100", "50%", "C++", "c#", "f(x)=y", "\u2014", "\u2013", "\u2022", "\u00a9\u00ae\u2122",
    "<start_of_text>", "<end_of_text>", "<START_OF_TEXT>", "a<start_of_text>b", "!<end_of_text>",
    "<\u017ftart_of_text>", "<start_of_text><end_of_text>", "<|endoftext|>", "<start_of_text",
    "~`^|\\", "a\\b", "\"double\"", "_", "__init__", "snake_case_name", "CamelCaseName", "ALLCAPS",
    # scripts
    "\u039a\u03b1\u03bb\u03b7\u03bc\u03ad\u03c1\u03b1 \u03ba\u03cc\u03c3\u03bc\u03b5", "\u039f\u0394\u039f\u03a3",
    "\u03a3\u0391\u03a3", "\u0391\u03a3.\u0392", "\u03a3", "A\u03a3", "A\u03a3B", "A\u03a3'B", "A'\u03a3",
    "\u03a3\u0391\u03a3 \u03a3\u0391\u03a3", "\u038c\u03a3\u039f\u0399", "A\u03a3\u0308", "\u1f08\u03a3",
    "\u041f\u0440\u0438\u0432\u0435\u0442 \u043c\u0438\u0440", "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd",
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645",
    "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e",
    "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35\u0e0a\u0e32\u0e27\u0e42\u0e25\u0e01", "\u4f60\u597d\u4e16\u754c",
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8", "\uc548\ub155\ud558\uc138\uc694", "\uff76\uff80\uff76\uff85",
    "\uff2c\uff2f\uff35\uff24\u3000\uff2e\uff2f\uff29\uff33\uff25\uff33", "\uff35\uff80\uff70\uff9d",
    "\u10d2\u10d0\u10db\u10d0\u10e0\u10ef\u10dd\u10d1\u10d0", "\u0532\u0561\u0580\u0565\u0582",
    "\u1230\u120b\u121d", "\u0bb5\u0ba3\u0b95\u0bcd\u0b95\u0bae\u0bcd", "\u0f56\u0f7c\u0f51\u0f0b",
    "\u1828\u1823\u1829\u182d\u1824\u182f", "\u13e3\u13b3\u13a9", "\uab83\uab8c", "\U00010437\U0001040f",
    "\U00010330\U00010331", "\U0001d400\U0001d401\U0001d402", "\U0001d4a5ohn", "\u24b6\u24d1",
    "\u0130", "\u0130stanbul", "I\u0307", "\u01c5", "\ufb01 \ufb02 \ufb03", "\u0132ssel", "\u0149",
    "\u0558", "\U00010d40", "\u0345", "a\u0345b", "!\u0345!", "\u1fb3", "\ufb05",
    # accents / combining
    "caf\u00e9", "cafe\u0301", "na\u00efve", "r\u00e9sum\u00e9", "\u00c5ngstr\u00f6m", "\u212b", "\u2126",
    "\u212a", "e\u0301\u0327", "e\u0327\u0301", "t\u0338\u0322\u031be\u0335x\u0337t\u0336", "a\u0306\u0302",
    "\u1100\u1161\u11a8", "\u1100\u1161", "\uac00\u11a8", "Ti\u1ebfng Vi\u1ec7t", "\u0041\u030a",
    "\u0958", "\u0f73", "\u0344", "\u0340\u0341", "\u1e9b\u0323", "\u00f4\u0323",
    # emoji
    "\U0001f600", "\U0001f44d\U0001f3fd", "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466",
    "\U0001f1fa\U0001f1f8", "\u2764\ufe0f", "\U0001f3f3\ufe0f\u200d\U0001f308", "1\ufe0f\u20e3",
    "\U0001f3f4\U000e0067\U000e0062\U000e0077\U000e006c\U000e0073\U000e007f", "\u2615 coffee", "a\U0001f600b",
    # mojibake and other ftfy fixes
    "caf\u00c3\u00a9", "\u00c3\u00a9t\u00c3\u00a9", "The Mona Lisa doesn\u00e2\u20ac\u2122t have eyebrows.",
    "\u00e2\u20ac\u0153quoted\u00e2\u20ac\x9d", "\u00e2\u20ac\u0153 like this \u00e2\u20ac\ufffd",
    "\u00e2\u0153\u201d No problems", "&macr;\\_(\u00e3\x83\x84)_/&macr;", "voil\u00c3\u00a0 le travail",
    "voil\u00c3 le travail", "\u00c3 la mode", "s\u00c3\u00b3", "\u00c3\u00b3", "f\u00c3 cil", "\u00c3 s",
    "Broken text&hellip; it&#x2019;s \ufb02ubberi\ufb01c!",
    "\u00d0\u0178\u00d1\u20ac\u00d0\u00b8\u00d0\u00b2\u00d0\u00b5\u00d1\u201a",
    "\u00c3\u0192\u00c2\u00a9", "\u00c3\u00a0", "\u00c3", "\u00d7\u00b2", "\x80\x81\x82", "\x93quoted\x94",
    "\u00c3\u00bcber", "\u00c3\u00b6", "\u00f0\u0178\u02dc\u20ac", "\u00f0\u0178\u2018\u008d",
    "\u00c3\u00a2\u00e2\u201a\u00ac\u00e2\u201e\u00a2", "\u00e6\u2014\u00a5\u00e6\u0153\u00ac\u00e8\u00aa\u017e",
    "\u00ed\u2022\u0153\u00ea\u00b5\u00ad\u00ec\u2013\u00b4", "\u00c5\u00belu\u00c5\u00a5ou\u00c4\u008dk\u00c3\u00bd",
    "\u00c2\u00a9 2024", "\u00c2\u00bd cup", "It\u00c2\u00b4s", "na\u00c3\u00afve caf\u00c3\u00a9 r\u00c3\u00a9sum\u00c3\u00a9",
    "\u00c3\u00b0\u00c5\u00b8\u00c2\u2018\u00c2\u008d", "\u00d0\u00bf\u00d1\u20ac\u00d0\u00b8\u00d0\u00b2\u00d0\u00b5\u00d1\u201a \u00d0\u00bc\u00d0\u00b8\u00d1\u20ac",
    "\u00e2\u20ac\u201c dash", "\u00e2\u20ac\u00a6", "\u00ce\u00b1\u00ce\u00b2\u00ce\u00b3", "\u00e2\u201e\u00a2",
    "\u0432\u0402\u045a", "\u0413\u045e\u0412\u0402\u0412\u045aa", "\u00c3\u2030COLE", "\u00c3\u2030t\u00c3\u00a9",
    "\u00c2\u00a0", "a\u00c2\u00a0b", "\u00e2\u20ac\u00a2 bullet", "\u00e2\u02c6\u2019", "\u00ef\u00bb\u00bfbom",
    "\u00c3\u00a0 propos", "\u00c3 quelle heure", "\u00c3 s ", "\u00e0\u00b2\u00a8", "\u221a\u00b1",
    "\u201a\u00c4\u00f4", "\u00c3\u00a9\u00c3", "\u00c3\u00a9\u0301", "\u00f0\u009f\u0098\u0080",
    "\x1b[31mred\x1b[0m", "\x1b[1;32mgreen", "\x1b[\u0661m", "a\x00b", "a\x07b", "\ufeffbom", "a\ufffcb",
    "a\u206ab", "a\ufff9b", "\u202eRTL", "a\u200db", "a\u200cb", "\u201cHello\u201d", "\u2018hi\u2019",
    "\u02bcn", "\u201b", "\u201elow\u201c", "\u201f", "\u2032prime", "\u00ab guillemets \u00bb",
    "\u2028\u2029", "line1\r\nline2\rline3\u2028line4\u0085line5", "\ufffd", "a\ufffdb", "\x1a",
    "\u00c3\x1a", "\u00e2\u20ac\x1a", "C\u0327a va",
    # utf-8-variants: Java's C0 80 null, CESU-8 pairs, '$' before a final newline
    "caf\u00c3\u00a9\u00c0\n", "caf\u00c3\u00a9\u00c0", "caf\u00c3\u00a9\u00c0\u20ac", "\u00c3\u00a9\u00c0\u20acx",
    "caf\u00c3\u00a9\u00c0\nnext", "\u00c3\u00a9\u00ed\xa0\u00bd\u00ed\u00b8\n", "\u00ed\xa0\u00bd\u00ed\u00b8\n",
    "\u00c3\u00a9\u00ed\xa0\u00bd\u00ed\u00b8\nmore", "\u00ed\xa0\u00bd\u00ed\u00b8\u20ac\u00c3\u00a9",
    "\u00c3\u00a9\u00ed\xa0\u00bd", "\u00c3\u00a9\u00ed\u00b8\u20ac\u00ed\xa0\u00bd", "\u00c3\u00a9\u00ed\u0178\u00bf",
    # entity length limits of ftfy (24) and html.unescape (32)
    "&#" + "0" * 22 + "65;", "&#" + "0" * 23 + "65;", "&#x" + "0" * 21 + "41;", "&#x" + "0" * 22 + "41;",
    "&" + "a" * 24 + ";", "&" + "a" * 31 + ";", "&" + "a" * 32 + ";", "&" + "a" * 33 + ";",
    "&amp" + "x" * 30 + ";", "&amp" + "x" * 28 + ";", "&#18446744073709551681;", "&#x10000000000000041;",
    "&#" + "9" * 40 + ";", "&#x" + "f" * 30 + ";", "&not\fin;", "&lt\f" + "a" * 30, "\u0633\u0644\u0627\u0645 \u00d8\u00b3\u00d9\u201e\u00d8\u00a7\u00d9\u2026",
]


def _chars_from(lo, hi, rng, n, printable=True):
    out = []
    while len(out) < n:
        cp = rng.randint(lo, hi)
        if 0xD800 <= cp <= 0xDFFF:
            continue
        c = chr(cp)
        if printable and not c.isprintable():
            continue
        out.append(c)
    return out


def random_strings(seed, count):
    rng = random.Random(seed)
    moji = sorted(set().union(*[set(v) for v in reftables.build_tables_cached()["mojibake_categories"].values()]))
    pools = [
        ("ascii", 0x20, 0x7E, 30), ("latin1", 0xA0, 0xFF, 8), ("latinext", 0x100, 0x24F, 4),
        ("greek", 0x370, 0x3FF, 3), ("cyrillic", 0x400, 0x4FF, 3), ("combining", 0x300, 0x36F, 3),
        ("hebarab", 0x590, 0x6FF, 2), ("indic", 0x900, 0x9FF, 2), ("thai", 0xE00, 0xE7F, 1),
        ("jamo", 0x1100, 0x11FF, 1), ("punct", 0x2000, 0x206F, 3), ("symbols", 0x2100, 0x27BF, 3),
        ("cjk", 0x4E00, 0x9FFF, 3), ("hangul", 0xAC00, 0xD7A3, 2), ("fullwidth", 0xFF00, 0xFFEF, 2),
        ("emoji", 0x1F300, 0x1FAFF, 3), ("mathalnum", 0x1D400, 0x1D7FF, 1), ("anybmp", 0x80, 0xFFFF, 2),
        ("anyastral", 0x10000, 0x10FFFF, 1),
    ]
    extra = {
        "moji": ([chr(c) for c in moji], 8),
        "ws": ([" ", " ", " ", "\t", "\n", "\r", "\xa0", "\u3000", "\u2028", "\x0b", "\x0c", "\x1c", "\x85"], 4),
        "html": (["&amp;", "&lt;", "&#39;", "&", ";", "#", "&nbsp", "&copy;", "&#x41;", "&quot;", "&eacute;"], 2),
        "ctrl": (["\x00", "\x07", "\x1b", "\x7f", "\x81", "\x9d", "\ufeff", "\u200b", "\u200d", "\u206b", "\ufffc", "\ufffd"], 1),
        "contr": (["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'"], 2),
    }
    names = [p[0] for p in pools] + list(extra)
    weights = [p[3] for p in pools] + [v[1] for v in extra.values()]
    spec = {p[0]: p for p in pools}
    out = []
    for i in range(count):
        printable = i % 3 != 0  # two thirds strictly printable
        n = rng.randint(1, 40)
        s = []
        for _ in range(n):
            name = rng.choices(names, weights)[0]
            if name in spec:
                _, lo, hi, _ = spec[name]
                s.extend(_chars_from(lo, hi, rng, 1, printable=printable or name not in ("anybmp", "anyastral")))
            else:
                items = extra[name][0]
                if printable and name == "ctrl":
                    continue
                s.append(rng.choice(items))
        out.append("".join(s))
    return out


PHRASES = [
    "caf\u00e9", "na\u00efve r\u00e9sum\u00e9", "Gr\u00f6\u00dfe", "\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac",
    "\u0420\u0443\u0441\u0441\u043a\u0438\u0439 \u0442\u0435\u043a\u0441\u0442", "\u017dlu\u0165ou\u010dk\u00fd k\u016f\u0148",
    "\u0141\u00f3d\u017a", "\u0130stanbul'da", "\u65e5\u672c\u8a9e", "\ud55c\uad6d\uc5b4", "\U0001f600 emoji",
    "\u201csmart quotes\u201d", "\u2014dash\u2014", "wait\u2026", "\u20ac100", "\u00bd cup", "\u00c7a va?",
    "se\u00f1or", "S\u00f8ren Kierkegaard", "\u00c6r\u00f8", "\u00dcn\u00efc\u00f6d\u00e9", "ma\u00f1ana",
    "\u00fcber", "fa\u00e7ade", "co\u00f6perate", "\u00de\u00f3rr", "Stra\u00dfe", "\u20b9500", "\u00a92024",
    "brand\u2122", "\u2022bullet", "3\u00d74", "\u00bfQu\u00e9?", "\u00a1Hola!", "\u4e2d\u6587 text",
    "Ti\u1ebfng Vi\u1ec7t", "\u05e2\u05d1\u05e8\u05d9\u05ea", "\u0627\u0644\u0639\u0631\u0628\u064a\u0629",
    "\u0939\u093f\u0928\u094d\u0926\u0940", "\u0e44\u0e17\u0e22", "\u00e0 la carte", "d\u00e9j\u00e0 vu",
    "\u00e9t\u00e9", "\u00c9COLE", "\u00a0nbsp\u00a0", "it\u2019s", "\u2018quoted\u2019",
    "\U0001f44d\U0001f3fd", "\u00b0C", "\u00b5m", "\u00b1 5", "x\u00b2 + y\u00b3", "\u2264 \u2265 \u2260",
]

ENCODINGS = [
    "latin-1", "sloppy-windows-1252", "windows-1252", "sloppy-windows-1251", "sloppy-windows-1250",
    "sloppy-windows-1253", "sloppy-windows-1254", "sloppy-windows-1257", "iso-8859-2", "macroman", "cp437",
]


def _cesu8(s):
    out = b""
    for ch in s:
        cp = ord(ch)
        if cp >= 0x10000:
            v = cp - 0x10000
            for half in (0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF)):
                out += chr(half).encode("utf-8", "surrogatepass")
        else:
            out += ch.encode("utf-8")
    return out


def cesu_strings():
    """Mojibake of CESU-8 (UTF-16 surrogates encoded one by one) text."""
    out = []
    for s in ["\U0001f600", "a\U0001f600b", "emoji \U0001f60d here", "\U0001f4a9\n", "\U00010437 deseret",
              "\U0010fffd", "\U00010000", "x \U0001f44d\U0001f3fd y"]:
        for enc in ["latin-1", "sloppy-windows-1252", "windows-1252", "sloppy-windows-1250"]:
            out.append(_cesu8(s).decode(enc, errors="replace"))
    return out


def a0_strings():
    """Mojibake whose UTF-8 had a byte A0 that became a plain space
    (restore_byte_a0's cases), plus '?' standing in for lost bytes."""
    chars = ["\u2020", "\U0001f620", "\U00020000", "\U0001f800", "\u2801", "\u3800", "\u00e0", "\u0160",
             "\u03a0", "\u0420", "\u0660", "\u00a0", "\u0920", "\u20a0", "\u1820", "\u2820"]
    out = []
    for c in chars:
        for ctx in ["{}", "x{}y", "caf\u00e9 {} na\u00efve", "\u00e9{}\u00e9", "{} quilo", "{}s ", "{} la mode"]:
            m = ctx.format(c).encode("utf-8").decode("sloppy-windows-1252")
            out.append(m.replace("\xa0", " "))
            out.append(m.replace("\xa0", " ").replace("\u00e9", "?"))
    out += ["caf\u00c3? and na\u00c3\u00afve", "\u00c3? \u00c3\u00a9", "\u00c3 quilo", "\u00c3 quele", "\u00c3 quela",
            "\u00c3 s ", "\u00c3  x", "\u00c3 quiloX \u00c3\u00a9", "\u00e2\u20ac? \u00e2\u20ac\u0153", "\u00f0\u0178\u02dc? smile"]
    return out


def mojibake_strings(seed, count):
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        k = rng.randint(1, 3)
        text = " ".join(rng.choice(PHRASES) for _ in range(k))
        enc = rng.choice(ENCODINGS)
        m = text.encode("utf-8").decode(enc, errors="replace")
        r = rng.random()
        if r < 0.15:
            enc2 = rng.choice(ENCODINGS)
            m = m.encode("utf-8", errors="replace").decode(enc2, errors="replace")
        elif r < 0.3:
            m = m.replace("\xa0", " ")
        elif r < 0.45:
            m = rng.choice(PHRASES) + " " + m + " " + rng.choice(PHRASES)
        elif r < 0.55:
            m = html.escape(m)
        elif r < 0.65:
            cut = rng.randint(0, len(m))
            m = m[:cut] + "\ufffd" + m[cut + 1:]
        elif r < 0.7:
            m = m + "\n" + rng.choice(PHRASES).encode("utf-8").decode(rng.choice(ENCODINGS), errors="replace")
        out.append(m)
    return out


def badness_strings(seed, count):
    rng = random.Random(seed)
    t = reftables.build_tables_cached()
    cat_chars = {k: [chr(c) for c in v] for k, v in t["mojibake_categories"].items()}
    clue_chars = {k: [chr(c) for c in v] for k, v in t["utf8_clues"].items()}
    literal = list("\u0152\u0153\u00b0\u00c2\u00c3\u00ce\u00d0\u00d7\u00b2\u00b3\u00d8\u00d9\u00e0\u00b5\u221a\u2248"
                   "\u201a\u00c4\u0432\u0402\u0412\u0413\u0420\u0421\u045e\u03b2\u20ac\u0392\u0393\u039e\u039f\u0101"
                   "\u00a0\u00a1\u2122\u0386\u00ad\u00ae\u03c0")
    groups = list(cat_chars.values()) + list(clue_chars.values()) + [
        literal, list("abcxyzABCXYZ"), list(" \t\n.,?!"), list("\u00e9\u4e2d\u0416_1")]
    # A small alphabet of the characters the literal parts of BADNESS_RE
    # name, so that its 3- to 7-character alternatives occur often.
    small = list("aZ .\t\n\u00c3\u00c2\u00ce\u00d0\u00d8\u00d9\u00d7\u00b2\u00e0\u00b5\u221a\u2248\u201a\u00c4\u00ec"
                 "\u00e2\u00f3\u0432\u0402\u0413\u045e\u0412\u03b2\u20ac\u2122\u0386\u0392\u0393\u00b0\u0101"
                 "\u0152\u0153\u00a0\u00a1\u00e9\u00fc\u00bb\u00a9\u00b1\u00a2\u03c0\u00ea\u0178")
    out = []
    for i in range(count):
        if i % 2:
            n = rng.randint(1, 6)
            out.append("".join(rng.choice(rng.choice(groups)) for _ in range(n)))
        else:
            n = rng.randint(2, 7)
            chars = [rng.choice(small) for _ in range(n)]
            if rng.random() < 0.5:
                chars[rng.randrange(n)] = rng.choice(rng.choice(groups))
            out.append("".join(chars))
    out += ["\u0413\u045e\u0412\u0402\u0412xa", "\u0413\u045e\u0412\u0402\u0412\na", "\u0413\u045e\u0412\u0402\u0412  ",
            "\u0413\u045e\u0412\u0402\u0412x1", "a \u00c3 ", "a\t\u00c2 ", "a\u00c3 ", "\u00c3 x", "x\u00c3 "]
    return out


def html_strings(seed, count):
    rng = random.Random(seed)
    names = ["amp", "lt", "gt", "nbsp", "copy", "not", "notin", "eacute", "EACUTE", "AMP", "quot", "apos",
             "ThinSpace", "Jscr", "frac12", "szlig", "SZLIG", "ETH", "hellip", "x", "#", "#x", "#X", "#39",
             "#x27", "#128", "#0", "#xD800", "#1114112", "amp;amp", "ampx", "notit", "NTILDE", "nTILDE"]
    bits = ["&", ";", " ", "a", "1", "#", "x", "\t", "<", "\u00e9", "\n", "Z"]
    out = []
    for _ in range(count):
        s = []
        for _ in range(rng.randint(1, 6)):
            if rng.random() < 0.6:
                s.append("&" + rng.choice(names) + (";" if rng.random() < 0.6 else ""))
            else:
                s.append(rng.choice(bits))
        out.append("".join(s))
    return out


def long_strings():
    return [
        "a photo of " * 30,
        "word " * 100,
        "x" * 500,
        "\U0001f642" * 50,
        "&amp; " * 80,
        "1" * 100,
        "\u4f60\u597d" * 60,
        "supercalifragilisticexpialidocious " * 10,
        " ".join(AGD20K_SEEN) * 2,
        "na\u00efve caf\u00c3\u00a9 " * 20,
        "line\n" * 90,
        "a" * 73, "a " * 74, "a " * 75, "a " * 76, "a " * 80,
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="output directory (e.g. tests/testdata/tokenizer)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    simple = oc_tok.SimpleTokenizer()
    vocab_src = oc_tok.default_bpe()
    vocab_dst = os.path.join(args.out, "bpe_simple_vocab_16e6.txt.gz")
    shutil.copyfile(vocab_src, vocab_dst)
    with open(vocab_src, "rb") as f:
        vocab_sha = hashlib.sha256(f.read()).hexdigest()

    def case(text, group):
        enc = simple.encode(text)
        ids = open_clip.tokenize([text])[0].tolist()
        return {
            "group": group,
            "text": text,
            "ids": ids,
            "encode": enc,
            "clean": oc_tok._clean_lower(text),
            "fix_text": ftfy.fix_text(text),
            "decode": simple.decode(enc),
        }

    cases, seen = [], set()

    def add(text, group):
        if text in seen:
            return
        seen.add(text)
        cases.append(case(text, group))

    prompts = []
    for list_name, classes in CLASS_LISTS:
        for c in classes:
            a, e = affordance_prompt(c), exo_prompt(c)
            prompts.append({"list": list_name, "action": c, "affordance": a, "exo": e})
            add(a, "prompt")
            add(e, "prompt")
    for s in EDGE:
        add(s, "edge")
    for s in long_strings():
        add(s, "long")
    for s in random_strings(20240601, 200):
        add(s, "random")
    for s in mojibake_strings(7, 120):
        add(s, "mojibake")
    for s in cesu_strings():
        add(s, "cesu")
    for s in a0_strings():
        add(s, "byte_a0")

    context_cases = []
    for text in ["a photo of a dog", "an item to cut_with", "", "word " * 100, "\U0001f600 caf\u00e9"]:
        for n in [0, 1, 2, 3, 5, 10, 16, 77, 100]:
            ids = simple([text], context_length=n)[0].tolist()
            context_cases.append({"text": text, "context_length": n, "ids": ids})

    rng = random.Random(99)
    decode_cases = []
    for _ in range(300):
        k = rng.randint(0, 12)
        ids = []
        for _ in range(k):
            r = rng.random()
            if r < 0.5:
                ids.append(rng.randint(0, 511))
            elif r < 0.95:
                ids.append(rng.randint(512, 49405))
            else:
                ids.append(rng.choice([49406, 49407]))
        decode_cases.append({"ids": ids, "text": simple.decode(ids)})

    html_cases = []
    for s in html_strings(5, 600) + [c for c in EDGE if "&" in c] + [
            "&#" + "0" * k + "65;" for k in range(20, 26)] + ["&#x" + "0" * k + "41;" for k in range(19, 25)] + [
            "&" + "a" * k + ";" for k in range(22, 35)] + ["&amp" + "x" * k for k in range(26, 32)]:
        html_cases.append({"in": s, "unescape": html.unescape(s), "ftfy": fixes.unescape_html(s)})

    ftfy_cases = []
    for s in mojibake_strings(11, 1500):
        ftfy_cases.append({"in": s, "out": ftfy.fix_text(s), "clean": oc_tok._clean_lower(s)})

    bad_cases = [[s, badness.is_bad(s)] for s in badness_strings(3, 20000)]

    tables = reftables.build_tables_cached()
    meta = dict(reftables.versions())
    meta.update({
        "open_clip": open_clip.__version__,
        "tables_digest": reftables.digest(tables),
        "vocab_source": vocab_src,
        "vocab_sha256": vocab_sha,
        "context_length": CONTEXT,
        "sot": simple.sot_token_id,
        "eot": simple.eot_token_id,
        "vocab_size": simple.vocab_size,
    })
    data = {
        "meta": meta,
        "prompts": prompts,
        "cases": cases,
        "context_cases": context_cases,
        "decode_cases": decode_cases,
        "html_cases": html_cases,
        "ftfy_cases": ftfy_cases,
        "is_bad_cases": bad_cases,
    }
    path = os.path.join(args.out, "tokenizer_ref.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=0)
        f.write("\n")
    print("wrote %s: %d cases (%d prompts), %d context, %d decode, %d html, %d ftfy, %d is_bad; vocab %s"
          % (path, len(cases), len(prompts), len(context_cases), len(decode_cases), len(html_cases),
             len(ftfy_cases), len(bad_cases), vocab_dst))


if __name__ == "__main__":
    main()
