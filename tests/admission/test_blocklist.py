"""The prompt blocklist on RE2: whatever a moderator enters is either refused when added,
with a reason they can act on, or compiled to a program that checks a prompt in time linear
in its length. Word entries keep their meaning: whole words or phrases, any case."""

from __future__ import annotations

import random
import re
import sys
import unicodedata

import pytest

from admission.blocklist import (
    CompiledPattern,
    check_blocklist,
    check_prompt,
    compile_pattern,
    compile_patterns,
    normalize_prompt,
)
from money.usd import PolicyError
from storage.database import Database
from storage.guild_settings import (
    MAX_REGEX_PROGRAM,
    NOT_WORD_CHAR,
    WORD_SPACE,
    BlocklistEntry,
    GuildSettingsError,
    GuildSettingsStore,
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
    with pytest.raises(GuildSettingsError) as by_store:  # one validator: the same words
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
    with pytest.raises(GuildSettingsError, match="would be too large together") as refused:
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


# -- entries refused, words and regexes matched ---------------------------------------------------

@pytest.mark.parametrize(("pattern", "kind", "message"), [
    ("", "word", "empty"),
    ("   ", "regex", "empty"),
    ("x" * 201, "word", "201 characters; the limit is 200"),
    ("(unclosed", "regex", "not a valid regular expression: missing ), unterminated subpattern"),
    ("[a-", "regex", "not a valid regular expression"),
    ("a*", "regex", "can match empty text"),
    ("cat|", "regex", "can match empty text"),
    ("^", "regex", "can match empty text"),
    (r"\b", "regex", "can match empty text"),
    ("(x)?", "regex", "can match empty text"),
    ("cat", "glob", "must be word or regex"),
])
def test_invalid_patterns_are_refused_with_a_reason(pattern: str, kind: str,
                                                    message: str) -> None:
    with pytest.raises(PolicyError, match=re.escape(message)):
        compile_pattern(pattern, kind)


# These were refused by the old backtracking-cost estimate; RE2 matches them in linear
# time, so they are accepted and must simply match what they say.
@pytest.mark.parametrize(("pattern", "hit", "miss"), [
    (r"(a+)+$", "a" * 1500, "a" * 1499 + "!"),
    (r"(\w+\s?)*x", "ab " * 499 + "x", "ab " * 500),
    (r"(a|aa)+b", "a" * 1499 + "b", "a" * 1500),
    (r"a.*b.*c", "a" + "b" * 1498 + "c", "a" + "b" * 1499),
    (r"a[^x]*b\w{0,32}c", "a" * 1400 + "b" + "z" * 32 + "c", "a" * 1400 + "b" + "z" * 99),
    (r"n+[i1]+g+", "n" * 700 + "1" * 700 + "g", "n" * 750 + "1" * 750),
])
def test_regexes_that_stalled_backtracking_are_accepted_and_match(
    pattern: str, hit: str, miss: str
) -> None:
    assert blocked(pattern, "regex", hit)
    assert not blocked(pattern, "regex", miss)


@pytest.mark.parametrize("pattern", [
    r"secret\w+", r"a.{0,30}b.{0,30}c", r"bad\s*word\s{0,3}here", r"n++[i1]++g++",
    r"(cat|dog)s?", r"\bb[a4]d\b", r"(ha){2,5}",
])
def test_ordinary_regexes_are_accepted(pattern: str) -> None:
    compiled = compile_pattern(pattern, "regex")
    assert compiled.kind == "regex" and compiled.size <= MAX_REGEX_PROGRAM


def test_pattern_limits_and_normalisation() -> None:
    assert compile_pattern("x" * 200, "word").pattern == "x" * 200
    assert compile_pattern("  Bad \t Word ", "word").pattern == "bad word"
    assert compile_pattern(" B[a4]d ", "regex").pattern == "B[a4]d"   # regex: only trimmed


def blocked(pattern: str, kind: str, text: str) -> bool:
    return check_prompt([compile_pattern(pattern, kind)], text) is not None


def test_word_entries_match_whole_words_case_insensitively() -> None:
    assert blocked("cat", "word", "a Cat here")
    assert blocked("cat", "word", "CAT!")
    assert blocked("cat", "word", "cat")
    assert blocked("cat", "word", "the cat's toy")
    assert not blocked("cat", "word", "concatenate")
    assert not blocked("cat", "word", "cats")
    assert not blocked("cat", "word", "bobcat")
    assert blocked("bad word", "word", "a BAD\n  word here")
    assert not blocked("bad word", "word", "a badword")
    assert blocked("c++", "word", "written in C++ today")
    assert not blocked("c++", "word", "abc++")
    assert blocked("a.b", "word", "see a.b now")                    # escaped, not a regex
    assert not blocked("a.b", "word", "see axb now")


def test_prompts_are_normalised_before_matching() -> None:
    assert blocked("cat", "word", "a ｃａｔ (full width)")
    assert blocked("cat", "word", "c\u200bat with a zero-width space")
    assert normalize_prompt("c\u200ba\u200dt") == "cat"


def test_regex_entries_are_case_insensitive_anywhere() -> None:
    assert blocked(r"b[a4]d", "regex", "a B4D idea")
    assert blocked(r"b[a4]d", "regex", "badger")                    # regex: not whole-word
    assert not blocked(r"\bb[a4]d\b", "regex", "badger")
    assert not blocked(r"b[a4]d", "regex", "bed")


def test_blocked_prompt_refusal_does_not_echo_the_match() -> None:
    patterns = [compile_pattern("dog", "word"), compile_pattern(r"secret\w+", "regex")]
    assert check_prompt(patterns, "a cat surfing", "blurry") is None
    assert check_prompt(patterns, "a cat surfing", None) is None
    assert check_prompt([], "anything at all", "dog") is None

    refusal = check_prompt(patterns, "a Secretword cat", None)
    assert refusal is not None and refusal.reason_code == "blocked_prompt"
    assert refusal.message.startswith("Your prompt contains a word or phrase this server")
    assert "Rephrase it" in refusal.message and "nothing was started or charged" in refusal.message
    for leaked in ("secret", "Secretword", r"secret\w+"):
        assert leaked.lower() not in refusal.message.lower()
    assert refusal.detail == r"prompt matched regex entry 'secret\\w+'"

    refusal = check_prompt(patterns, "a cat surfing", "no DOG please")
    assert refusal is not None and refusal.message.startswith("Your negative prompt contains")
    assert "dog" not in refusal.message.lower()
    assert refusal.detail == "negative prompt matched word entry 'dog'"


def test_compile_patterns_skips_entries_that_no_longer_compile(
    caplog: pytest.LogCaptureFixture,
) -> None:
    entries = [BlocklistEntry("cat", "word", 1, 0.0), BlocklistEntry("(", "regex", 1, 0.0),
               BlocklistEntry("x*", "regex", 1, 0.0)]
    compiled = compile_patterns(entries)
    assert [(c.pattern, c.kind) for c in compiled] == [("cat", "word")]
    assert all(isinstance(c, CompiledPattern) for c in compiled)
    assert "skipping blocklist entry" in caplog.text
