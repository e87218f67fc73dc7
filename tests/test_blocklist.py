"""The prompt blocklist on RE2: whatever a moderator enters is either refused when added,
with a reason they can act on, or compiled to a program that checks a prompt in time linear
in its length. Word entries keep their meaning: whole words or phrases, any case."""

from __future__ import annotations

import random
import re
import sys
import unicodedata

import pytest

from engine.policy import (
    CompiledPattern,
    PolicyError,
    check_blocklist,
    check_prompt,
    compile_pattern,
    compile_patterns,
)
from storage.database import Database
from storage.guild_settings import (
    MAX_REGEX_PROGRAM,
    NOT_WORD_CHAR,
    WORD_SPACE,
    BlocklistEntry,
    GuildSettingsStore,
    SettingsError,
    re2_compile,
)
from tests.conftest import ADMIN, GUILD

PROMPT_CHARS = 1500  # the default MAX_PROMPT_CHARS


def detail(patterns: list[CompiledPattern], text: str) -> str | None:
    refusal = check_prompt(patterns, text)
    return None if refusal is None else refusal.detail


# -- what RE2 cannot run is refused when added ------------------------------------------------

REFUSED = [
    (r"(.+)\1b", "uses a backreference"),
    (r"(?P<w>a+)(?P=w)b", "uses a backreference"),
    (r"(?=a)", "uses lookahead or lookbehind"),
    (r"(?!a)b", "uses lookahead or lookbehind"),
    (r"(?<=a)b", "uses lookahead or lookbehind"),
    (r"(?<!a)b", "uses lookahead or lookbehind"),
    (r"(?=a.*b)c", "uses lookahead or lookbehind"),
    (r"(a{100}){100}", "repeats too much (`{100}`): a count may be at most 1000"),
    (r"a{1001}", "repeats too much"),
    (r"((a{10}){10}){11}", "repeats too much"),
    (r"\pL{100}", "is too large once compiled"),
    (r"(?:[\pL\pN]{30}){30}", "is too large once compiled"),
    (r"[\pL\pN]{999}", "is too large once compiled"),
    (r"end\Z", "write `\\z` for the end of the text"),
    (r"caf\u00e9", "write a character by its code as `\\x{e9}`"),
]


@pytest.mark.parametrize(("pattern", "reason"), REFUSED, ids=[p for p, _ in REFUSED])
async def test_what_re2_cannot_run_is_refused_with_a_reason_by_both_checks(
    db: Database, pattern: str, reason: str
) -> None:
    with pytest.raises(PolicyError) as by_policy:
        compile_pattern(pattern, "regex")
    message = str(by_policy.value)
    assert reason in message and message.startswith(f"`{pattern}` ")
    if "backreference" in reason or "lookahead" in reason:
        assert "Blocklist regexes use RE2 syntax" in message
    store = GuildSettingsStore(db)
    with pytest.raises(SettingsError) as by_store:  # one validator: the same words
        await store.add_pattern(GUILD, pattern, "regex", actor=ADMIN)
    assert str(by_store.value) == message
    assert await store.patterns(GUILD) == []


# -- what RE2 accepts matches in linear time ------------------------------------------------

def adversarial(seed: int, alphabet: str) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(alphabet) for _ in range(PROMPT_CHARS))


# Regexes that make a backtracking engine take seconds or forever on such a prompt; RE2
# runs each in one linear pass. Each with a prompt it must block and one it must not.
ACCEPTED = [
    (r"(a|aa)*b", "a" * (PROMPT_CHARS - 1) + "b", "a" * PROMPT_CHARS),
    (r"(a+)+b", "a" * (PROMPT_CHARS - 1) + "b", "a" * PROMPT_CHARS),
    (r"(.*a){25}", "a" * PROMPT_CHARS, "b" * PROMPT_CHARS),
    (r"(x+x+)+y", "x" * (PROMPT_CHARS - 1) + "y", "x" * PROMPT_CHARS),
    (r"(.*.*)*c", "ab" * 749 + "c", "ab" * 750),
    (r"(\w+\s?)*x", "ab " * 499 + "x", "ab " * 500),
    (r"(a|a)*c", "a" * (PROMPT_CHARS - 1) + "c", "a" * PROMPT_CHARS),
    (r"(?:(?:a*)*)*d", "a" * (PROMPT_CHARS - 1) + "d", "a" * PROMPT_CHARS),
    (r"(?:a|b|ab|ba)+c", adversarial(1, "ab")[1:] + "c", adversarial(1, "ab")),
    (r"(?:a?){999}a{999}", "a" * PROMPT_CHARS, "a" * 998 + "b" * 502),
    (r"(a{30}){30}", "b" * 600 + "a" * 900, "a" * 899 + " " + "a" * 600),
    (r"[ab]*a[ab]{20}c", adversarial(2, "ab")[22:] + "a" * 21 + "c", adversarial(2, "ab")),
    (r"(?:.{0,1000})q", "é" * (PROMPT_CHARS - 1) + "q", "é" * PROMPT_CHARS),
    (r"(?:[^\pL]|\pL){500}q", "ж" * (PROMPT_CHARS - 1) + "q", "ж" * PROMPT_CHARS),
    (r"(?:\d+\D?){10,}!", "1a" * 749 + "!", "1a" * 750),
    (r"(?:.*\b){50}q", "a b " * 374 + "a qq", "a b " * 375),
    (r"n++[i1]++g++", "n" * 700 + "1" * 700 + "g", "n" * 750 + "1" * 750),  # possessive
    (r"(?>ab|a)+c", "ab" * 749 + "c", "ab" * 750),                          # atomic group
]


@pytest.mark.parametrize(("pattern", "hit", "miss"), ACCEPTED, ids=[p for p, _, _ in ACCEPTED])
def test_hostile_regexes_re2_accepts_match_long_adversarial_prompts(
    pattern: str, hit: str, miss: str
) -> None:
    compiled = compile_pattern(pattern, "regex")
    assert compiled.size <= MAX_REGEX_PROGRAM
    assert len(miss) == PROMPT_CHARS
    assert detail([compiled], hit) == f"prompt matched regex entry {pattern!r}"
    assert check_prompt([compiled], miss, miss) is None


def test_all_hostile_regexes_together_still_name_the_entry_that_matched() -> None:
    patterns = [compile_pattern(p, "regex") for p, _, _ in ACCEPTED]
    for _, hit, _ in ACCEPTED:
        alone = {f"prompt matched regex entry {p.pattern!r}" for p in patterns
                 if check_prompt([p], hit) is not None}
        assert detail(patterns, hit) in alone  # one that matches on its own
    assert detail(patterns, "misty hills over the fog " * 60) is None


def test_entries_stored_by_an_older_version_are_skipped_and_the_rest_still_block(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stored = [BlocklistEntry(p, "regex", ADMIN, 0.0) for p, _ in REFUSED]
    stored += [BlocklistEntry("dragon", "word", ADMIN, 0.0),
               BlocklistEntry(r"b[a4]d\s*w[o0]rd", "regex", ADMIN, 0.0)]
    compiled = compile_patterns(stored)
    assert [(c.pattern, c.kind) for c in compiled] == [
        ("dragon", "word"), (r"b[a4]d\s*w[o0]rd", "regex")]
    assert caplog.text.count("skipping blocklist entry") == len(REFUSED)
    assert "uses a backreference" in caplog.text
    prompt = "b" * (PROMPT_CHARS - 20) + " a DRAGON"
    refusal = check_blocklist(stored, prompt)
    assert refusal is not None and refusal.detail == "prompt matched word entry 'dragon'"
    assert check_blocklist(stored, "a" * PROMPT_CHARS, "B4D  word") is not None
    assert check_blocklist(stored, "a" * PROMPT_CHARS, "x" * PROMPT_CHARS) is None


# -- one pass for many entries ----------------------------------------------------------------

def test_one_program_for_many_entries_names_the_entry_that_matched() -> None:
    regexes = [r"(a)(b)zz", r"(?P<n>x)(?P<n>y)q", r"m(n)o", r"(?i)p(?:q)(r)", r"\bb[a4]d\b"]
    words = ["cat", "big dog", "c++"]
    patterns = ([compile_pattern(w, "word") for w in words]
                + [compile_pattern(r, "regex") for r in regexes])
    expected = {
        "abzz": r"(a)(b)zz", "xyq": r"(?P<n>x)(?P<n>y)q", "a mno b": r"m(n)o",
        "PQR": r"(?i)p(?:q)(r)", "so bad": r"\bb[a4]d\b", "a Cat": "cat",
        "BIG\n DOG!": "big dog", "in c++": "c++",
    }
    for text, pattern in expected.items():
        found = detail(patterns, text)
        assert found is not None and found.endswith(f"entry {pattern!r}"), (text, found)
    assert detail(patterns, "abz xy mn pq badger concatenate bigdog abc++") is None


def test_an_entry_quoting_to_its_end_does_not_swallow_the_next() -> None:
    # `\Q` quotes up to `\E` or the end of the pattern: joined naively with the next entry,
    # it would quote that entry too and stop it from matching.
    patterns = [compile_pattern(r"\Qa+b", "regex"), compile_pattern(r"\Qc\E(d)", "regex"),
                compile_pattern("zz", "regex")]
    assert detail(patterns, "zz") == "prompt matched regex entry 'zz'"
    assert detail(patterns, "cd") == "prompt matched regex entry '\\\\Qc\\\\E(d)'"
    assert detail(patterns, "1 a+b 2") == "prompt matched regex entry '\\\\Qa+b'"
    assert detail(patterns, "aab c d") is None


def test_the_regex_entries_of_a_server_have_a_size_limit_together() -> None:
    # Each is ~9,000 RE2 instructions: two fit in MAX_REGEX_PROGRAM, a third does not.
    sizes = [compile_pattern(rf"(?:.{{0,1000}}){c}", "regex").size for c in "xyz"]
    assert sum(sizes[:2]) <= MAX_REGEX_PROGRAM < sum(sizes)


async def test_the_store_refuses_a_regex_over_the_servers_size_limit(db: Database) -> None:
    store = GuildSettingsStore(db)
    assert await store.add_pattern(GUILD, r"(?:.{0,1000})x", "regex", actor=ADMIN)
    assert await store.add_pattern(GUILD, r"(?:.{0,1000})y", "regex", actor=ADMIN)
    with pytest.raises(SettingsError, match="would be too large together") as refused:
        await store.add_pattern(GUILD, r"(?:.{0,1000})z", "regex", actor=ADMIN)
    assert f"the limit is {MAX_REGEX_PROGRAM:,}" in str(refused.value)
    assert not await store.add_pattern(GUILD, r"(?:.{0,1000})y", "regex", actor=ADMIN)  # has it
    assert await store.add_pattern(GUILD, "dragon", "word", actor=ADMIN)  # words do not count
    assert await store.add_pattern(GUILD + 1, r"(?:.{0,1000})z", "regex", actor=ADMIN)
    assert await store.remove_pattern(GUILD, r"(?:.{0,1000})x", actor=ADMIN)
    assert await store.add_pattern(GUILD, r"(?:.{0,1000})z", "regex", actor=ADMIN)


# -- word entries -----------------------------------------------------------------------------

def all_assigned_characters() -> list[str]:
    """Every code point Python's Unicode database assigns (no surrogates)."""
    return [chr(c) for c in range(sys.maxunicode + 1)
            if unicodedata.category(chr(c)) not in ("Cn", "Cs")]


def test_word_boundaries_and_spaces_are_pythons_unicode_classes() -> None:
    """A word entry's boundary is exactly "not Python's `\\w`" and the space between its
    words Python's `\\s`, on every assigned character: word entries behave as they did
    with Python's `re`."""
    chars = all_assigned_characters()
    for ours, python in ((NOT_WORD_CHAR, re.compile(r"\W")), (WORD_SPACE, re.compile(r"\s"))):
        inside = "".join(c for c in chars if python.fullmatch(c))
        outside = "".join(c for c in chars if not python.fullmatch(c))
        assert re2_compile(f"^(?:{ours})*$").search(inside) is not None
        assert re2_compile(ours).search(outside) is None


@pytest.mark.parametrize(("entry", "text"), [
    ("cat", "cat"), ("cat", "Cat at the start"), ("cat", "at the end: CAT"),
    ("cat", "(cat)"), ("cat", "a cat's toy"), ("cat", "cat-like"), ("cat", "1 cat 2"),
    ("café", "un CAFÉ noir"), ("кот", "чёрный КОТ"), ("猫", "猫 と 犬"),
    ("bad word", "bad\u2028word"), ("bad word", "bad\u00a0 \u3000word"),
    ("bad word", "bad\x1cword"),
    ("c++", "I like C++"), ("c++", "c++!"), ("a.b", "a.b"), ("(x)", "see (x) here"),
    ("x*y", "x*y"), ("\\d", "a \\d b"), ("cat", "ｃａｔ"), ("cat", "c\u200bat"),
])
def test_word_entries_block_the_whole_word_or_phrase(entry: str, text: str) -> None:
    compiled = compile_pattern(entry, "word")
    assert detail([compiled], text) == f"prompt matched word entry {compiled.pattern!r}"


@pytest.mark.parametrize(("entry", "text"), [
    ("cat", "concatenate"), ("cat", "cats"), ("cat", "bobcat"), ("cat", "cat_"),
    ("cat", "cat1"), ("cat", "écat"), ("cat", "caté"), ("cat", "ca t"), ("кот", "котик"),
    ("bad word", "badword"), ("bad word", "bad-word"), ("c++", "abc++"), ("a.b", "axb"),
    ("x*y", "xxy"), ("\\d", "a 5 b"),
])
def test_word_entries_do_not_block_inside_other_words_or_as_regexes(entry: str,
                                                                    text: str) -> None:
    assert detail([compile_pattern(entry, "word")], text) is None


def test_a_long_adversarial_prompt_against_many_word_entries() -> None:
    words = [compile_pattern(f"word{i} thing", "word") for i in range(200)]
    prompt = " ".join(["word1", "thingy", "word2thing"] * 62)  # 1,487 characters
    assert detail(words, prompt) is None
    assert detail(words, prompt + " WORD199\tThing") == (
        "prompt matched word entry 'word199 thing'")


def test_prompts_with_lone_surrogates_are_checked_without_error() -> None:
    assert detail([compile_pattern("cat", "word")], "a c\ud800at") == (
        "prompt matched word entry 'cat'")
