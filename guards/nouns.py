"""Shallow noun-phrase analysis of expressions, labels and think traces (no tagger, no model).

A referring expression is split into chunks at prepositions, relative pronouns and verbs; the
head noun is the last content word of the first chunk ("the red circle left of the blue square"
-> "circle"), and the heads of the other chunks are the expression's other nouns ("square").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from .lexicon import (
    ACTION_VERBS,
    AMBIGUOUS_VERBS,
    BOUNDARY_WORDS,
    DETERMINERS,
    GENERIC_NOUNS,
    ING_NOUNS,
    KNOWN_NOUNS,
    NON_NOUNS,
    NON_OBJECT_NOUNS,
    POSITION_WORDS,
    SHADES,
    VERB_PARTICLES,
    WHOLE_IMAGE_PHRASES,
    canon_size,
    color_family,
    lemma,
)

_WORD_RE = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*|[.,;:!?()\[\]{}\"]")
_PUNCT = frozenset('.,;:!?()[]{}"')
_PHRASES = frozenset(w for w in KNOWN_NOUNS if " " in w)
_MAX_CHUNK = 6


def words(text: str) -> list[str]:
    """Lower-case word and punctuation tokens of a text."""
    return _WORD_RE.findall(text.lower())


def _is_modifier(word: str) -> bool:
    """Words that describe a noun but are not one (colours, sizes, positions, numbers,
    intensifiers, adverbs, participles before their noun)."""
    return (
        word in DETERMINERS
        or word in POSITION_WORDS
        or word in NON_NOUNS
        or bool(color_family(word))
        or canon_size(word) is not None
        or word.isdigit()
        or (len(word) > 5 and word.endswith("ly") and lemma(word) not in KNOWN_NOUNS)
        or _participle(word)
    )


def _participle(word: str) -> bool:
    """'standing', 'seated', 'chocolate-covered': -ing/-ed words that are not nouns."""
    last = word.rsplit("-", 1)[-1]
    return (
        len(last) >= 5
        and last.endswith(("ing", "ed"))
        and last not in ING_NOUNS
        and lemma(last) not in KNOWN_NOUNS
    )


def _merge_shades(tokens: list[str]) -> list[str]:
    """'light blue' -> 'light-blue': a shade before a colour is part of the colour."""
    out: list[str] = []
    for w in tokens:
        if out and out[-1] in SHADES and color_family(w):
            out[-1] = f"{out[-1]}-{w}"
        else:
            out.append(w)
    return out


def _is_verb_like(word: str, chunk: list[str], nxt: str = "") -> bool:
    """-ing / -ed words after a noun end the chunk ('man holding', 'car parked'), unless an
    -ed word runs into the next noun ('chocolate covered donut': 'chocolate-covered')."""
    if len(word) < 5 or word in ING_NOUNS or "-" in word:
        return False
    if not (word.endswith("ing") or word.endswith("ed")):
        return False
    compound = word.endswith("ed") and bool(nxt) and _content_word(nxt)
    return any(not _is_modifier(w) for w in chunk) and not compound


def _content_word(word: str) -> bool:
    """A word that can continue a noun phrase (no boundary, determiner or punctuation)."""
    return word not in _PUNCT and word not in BOUNDARY_WORDS and word not in DETERMINERS


def chunks(tokens: list[str]) -> list[list[str]]:
    """Split tokens into noun chunks at boundaries ('left of', prepositions, verbs, commas)."""
    out: list[list[str]] = []
    cur: list[str] = []
    n = len(tokens)
    for i, w in enumerate(tokens):
        nxt = tokens[i + 1] if i + 1 < n else ""
        boundary = (
            w in _PUNCT
            or w in BOUNDARY_WORDS
            or (w in ("left", "right") and nxt in ("of", "to", "side"))
            or _is_verb_like(w, cur, nxt)
        )
        # 'girl blue shirt' is 'girl (in) blue shirt': a colour after a noun starts a phrase.
        starts_phrase = bool(color_family(w)) and any(not _is_modifier(x) for x in cur)
        if starts_phrase and not boundary:
            out.append(cur)
            cur = [w]
            continue
        if boundary:
            if cur:
                out.append(cur)
            cur = []
        else:
            cur.append(w)
    if cur:
        out.append(cur)
    return out


def head_of(chunk: list[str]) -> str | None:
    """Lemmatised head noun (or known two-word phrase) of one chunk, or None."""
    content = [w for w in chunk if w not in DETERMINERS and not w.isdigit()]
    nouns = [w for w in content if not _is_modifier(w)]
    if not nouns:
        # 'the orange' names a fruit; 'the red' or 'the leftmost' names nothing.
        known = [w for w in content if lemma(w) in KNOWN_NOUNS]
        return lemma(known[-1]) if known else None
    last = lemma(nouns[-1])
    if len(content) >= 2:
        idx = len(content) - 1 - content[::-1].index(nouns[-1])
        if idx >= 1:
            pair = f"{content[idx - 1]} {last}"
            if pair in _PHRASES:
                return pair
    return last


@dataclass(frozen=True, slots=True)
class PhraseInfo:
    """What label matching needs to know about an expression or a label."""

    head: str | None
    colors: frozenset[str]
    sizes: frozenset[str]
    other_nouns: frozenset[str]
    phrase: str
    whole_image: bool

    @property
    def generic(self) -> bool:
        """True when the head names no category ('the one on the left')."""
        return self.head is None or self.head in GENERIC_NOUNS


def strip_action(tokens: list[str]) -> list[str]:
    """Drop the imperative verb of a GUI instruction: 'open the menu' -> 'the menu'.

    Verbs that are also object nouns ('book on the left', 'watch') are dropped only before a
    determiner or a particle ('check the profile', 'sign in').
    """
    if len(tokens) < 2 or tokens[0] not in ACTION_VERBS:
        return tokens
    nxt = tokens[1]
    if tokens[0] in AMBIGUOUS_VERBS and nxt not in DETERMINERS and nxt not in VERB_PARTICLES:
        return tokens
    return tokens[1:]


@lru_cache(maxsize=4096)
def analyze(text: str) -> PhraseInfo:
    """Head noun, its colour and size attributes, and the other nouns of a phrase."""
    toks = _merge_shades(strip_action(words(text)))
    parts = chunks(toks)
    first = parts[0] if parts else []
    head = head_of(first)
    colors = frozenset().union(*(color_family(w) for w in first))
    sizes = frozenset(s for s in (canon_size(w) for w in first) if s)
    others: set[str] = set()
    for part in parts[1:]:
        h = head_of(part)
        if h and h not in NON_OBJECT_NOUNS and h != head:
            others.add(h)
    described = [w for w in first if w not in DETERMINERS and w not in POSITION_WORDS]
    low = text.lower()
    return PhraseInfo(
        head=head,
        colors=colors,
        sizes=sizes,
        other_nouns=frozenset(others),
        phrase=" ".join(described) or (head or ""),
        whole_image=any(p in low for p in WHOLE_IMAGE_PHRASES),
    )


def mentioned_heads(text: str) -> list[tuple[str, frozenset[str]]]:
    """Head nouns (with their colours) of the noun phrases a text introduces with a determiner.

    Used on think traces: "I see a red circle, a blue square" -> [(circle, {red}), (square,
    {blue})]. Non-object words ('the image', 'the target') are left out.
    """
    toks = _merge_shades(words(text))
    out: list[tuple[str, frozenset[str]]] = []
    n = len(toks)
    i = 0
    while i < n:
        if toks[i] not in DETERMINERS:
            i += 1
            continue
        j = i + 1
        cur: list[str] = []
        while j < n and len(cur) < _MAX_CHUNK:
            w = toks[j]
            nxt = toks[j + 1] if j + 1 < n else ""
            if (
                w in _PUNCT
                or w in BOUNDARY_WORDS
                or (w in DETERMINERS and cur)
                or (w in ("left", "right") and nxt in ("of", "to", "side"))
                or _is_verb_like(w, cur, nxt)
            ):
                break
            cur.append(w)
            j += 1
        head = head_of(cur)
        if head and head not in NON_OBJECT_NOUNS:
            colors = frozenset().union(*(color_family(w) for w in cur))
            out.append((head, colors))
        i = max(j, i + 1)
    return out
