"""The prompt blocklist: a server's stored entries as RE2 programs, and a prompt checked
against them before anything is charged.

Entries are validated in one place, `storage.guild_settings.compile_entry`, when a
moderator adds them; this module only compiles what that accepted (and skips, with a
warning, a stored entry it no longer accepts) and matches prompts. A match is a `Refusal`
that never repeats what matched.
"""

from __future__ import annotations

import functools
import logging
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import re2

from admission.server_rules import Reason, Refusal
from money.usd import PolicyError
from storage.guild_settings import (
    WORD_END,
    WORD_START,
    BlocklistEntry,
    CheckedEntry,
    GuildSettingsError,
    Re2Regex,
    compile_entry,
    re2_compile,
    word_body,
)

log = logging.getLogger(__name__)

CompiledPattern = CheckedEntry  # a blocklist entry checked for RE2

# The programs a prompt is searched with are built per blocklist: all word entries in one
# (sharing one pair of boundaries), all regex entries in another (so a heavy regex never
# slows the words down), and a prompt is one linear pass over each, whatever the number of
# entries. Not `re2.Set`: when its DFA runs out of memory it reports "no match", which here
# would let a prompt through; a plain search falls back to a slower linear method instead.
# One capturing group per entry tells which entry matched.
PROGRAM_MAX_MEM: Final = 8 * 1024 * 1024  # bytes, per combined program (RE2's default)


def compile_pattern(pattern: str, kind: str) -> CompiledPattern:
    """Check and compile a blocklist entry; raises PolicyError saying what is wrong.

    Not a check of its own: this is `storage.guild_settings.compile_entry`, the one
    validator, which the store's `add_pattern` runs too, with its refusal as a PolicyError:
    whole words or phrases in any case for `word`, RE2 syntax for `regex`."""
    try:
        return compile_entry(pattern, kind)
    except GuildSettingsError as err:
        raise PolicyError(str(err)) from None


def compile_patterns(entries: Iterable[BlocklistEntry]) -> list[CompiledPattern]:
    """Compile a stored blocklist. An entry that no longer compiles (stored by an older
    version, whose Python regexes allowed backreferences and lookaround, say) is skipped
    with a warning rather than refusing every prompt."""
    compiled: list[CompiledPattern] = []
    for entry in entries:
        result = _stored_entry(entry.pattern, entry.kind)
        if isinstance(result, str):
            log.warning("skipping blocklist entry %r (%s): %s", entry.pattern, entry.kind,
                        result)
        else:
            compiled.append(result)
    return compiled


@functools.lru_cache(maxsize=1024)  # a refused entry is not cached by compile_entry
def _stored_entry(pattern: str, kind: str) -> CompiledPattern | str:
    """The compiled entry, or why it does not compile."""
    try:
        return compile_entry(pattern, kind)
    except GuildSettingsError as err:
        return str(err)


def normalize_prompt(text: str) -> str:
    """What the blocklist sees: NFKC (so full-width and styled letters read as plain ones)
    with invisible format characters (zero-width spaces and joiners) removed, and lone
    surrogates too (RE2 reads UTF-8, which cannot encode them)."""
    folded = unicodedata.normalize("NFKC", text)
    return "".join(ch for ch in folded if unicodedata.category(ch) not in ("Cf", "Cs"))


def check_prompt(
    patterns: Sequence[CompiledPattern], prompt: str, negative_prompt: str | None = None
) -> Refusal | None:
    """The user's message never repeats what matched; `detail` names the entry and the
    field for the moderators' log. Takes time linear in the texts' length (RE2), but up to
    a fraction of a second for a long prompt and a heavy blocklist: call it off the event
    loop (`check_blocklist` in a thread)."""
    if not patterns:
        return None
    programs = _programs(tuple(patterns))
    for option, text in (("prompt", prompt), ("negative prompt", negative_prompt)):
        if not text:
            continue
        seen = normalize_prompt(text)
        for program in programs:
            entry = program.first_match(seen)
            if entry is not None:
                return Refusal(
                    Reason.BLOCKED_PROMPT,
                    f"Your {option} contains a word or phrase this server does not allow, "
                    "so nothing was started or charged. Rephrase it and try again.",
                    detail=f"{option} matched {entry.kind} entry {entry.pattern!r}",
                )
    return None


def check_blocklist(
    entries: Sequence[BlocklistEntry], prompt: str, negative_prompt: str | None = None
) -> Refusal | None:
    """`check_prompt` against a stored blocklist, compiling it first: the whole check,
    meant to run in a worker thread (`asyncio.to_thread`)."""
    return check_prompt(compile_patterns(entries), prompt, negative_prompt)


@dataclass(frozen=True)
class _Program:
    """One RE2 program for several entries, and the capturing group of each."""

    regex: Re2Regex
    groups: tuple[tuple[int, CompiledPattern], ...]

    def first_match(self, text: str) -> CompiledPattern | None:
        """The entry of the leftmost match, if any entry matches."""
        found = self.regex.search(text)
        if found is None:
            return None
        return next((entry for group, entry in self.groups if found.start(group) >= 0),
                    self.groups[0][1])


@functools.lru_cache(maxsize=128)  # per blocklist, i.e. per server
def _programs(patterns: tuple[CompiledPattern, ...]) -> tuple[_Program, ...]:
    words = [p for p in patterns if p.kind == "word"]
    regexes = [p for p in patterns if p.kind == "regex"]
    programs: list[_Program] = []
    if words:
        body = "|".join(f"({word_body(p.pattern)})" for p in words)
        programs += _combined(WORD_START + f"(?:{body})" + WORD_END,
                              [(i + 1, p) for i, p in enumerate(words)])
    if regexes:
        groups, group = [], 1
        for p in regexes:  # each entry's own groups come before the next entry's
            groups.append((group, p))
            group += 1 + p.groups
        programs += _combined("|".join(f"({p.source})" for p in regexes), groups)
    return tuple(programs)


def _combined(source: str, groups: list[tuple[int, CompiledPattern]]) -> list[_Program]:
    """One program for these entries; or, if they do not compile together (a blocklist
    stored by an older version may be over the size limits), one program per entry."""
    expected = groups[-1][0] + groups[-1][1].groups
    try:
        regex = re2_compile(source, PROGRAM_MAX_MEM)
    except re2.error as err:
        log.warning("blocklist entries checked one by one: %s", err)
    else:
        # An entry that quotes to the end of itself (`\Q...`) would swallow the next one:
        # then the groups no longer line up, and the entries are checked one by one.
        if regex.groups == expected:
            return [_Program(regex, tuple(groups))]
        log.warning("blocklist entries checked one by one: their groups do not line up")
    # Each compiled as `compile_entry` checked it, so within ENTRY_MAX_MEM.
    return [_Program(re2_compile(p.source), ((0, p),)) for _, p in groups]
