"""The payload's transcript edits, checked at POST against the transcript they edit (``transcript_asset_id``).

- ``remove_words``: ranges of word indices, ``[[12, 18], [40, 40]]`` (both ends included), into the
  transcript's words in order (``Transcript.words``). An index past the last word is a 422 naming the range.
- ``keep_text``: the transcript's text as the user edited it. It is diffed against the words (difflib, on
  words lower-cased without punctuation, so changing case or punctuation changes nothing); every word the
  edit deleted is cut. An edit can only delete: words it adds or changes are a 422 that names them.

Both graph inputs declare ``requires: [transcript_asset_id]``: the scheduler resolves the transcript first and
hands it to :meth:`with_assets` (``inputs``), with the storage to read its words from.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from pydantic import RootModel, field_validator
from pydantic import NonNegativeInt

from operators.asset_uses import AssetUse
from operators.clips.request import GivenTranscript
from operators.errors import AssetCheckError
from operators.registry import payload_model
from operators.speech.models import Transcript, Word
from operators.storage import Storage
from operators.tighten.models import RemovedWords

__all__ = ["EditedText", "WordRanges", "deleted_words", "read_words", "tokens"]


def tokens(text: str) -> list[str]:
    """Words as an edit is compared: lower case, letters, digits and apostrophes ("Don't," is "don't")."""
    return [t.strip("'") for t in re.findall(r"[a-z0-9']+", text.lower().replace("’", "'")) if t.strip("'")]


def read_words(inputs: dict[str, Any] | None, storage: Storage | None) -> list[Word]:
    """The words of the transcript the payload named (resolved by the scheduler before this input)."""
    given = (inputs or {}).get("transcript_asset_id")
    if not isinstance(given, GivenTranscript) or storage is None:
        raise AssetCheckError([((), "needs transcript_asset_id: the transcript whose words it names")])
    try:
        with storage.reading(given.path) as local:
            return Transcript.model_validate_json(local.read_bytes()).words
    except (FileNotFoundError, ValueError):
        raise AssetCheckError([((), f"transcript {given.id} could not be read as a transcribe job's JSON")]) from None


@payload_model("word_ranges")
class WordRanges(RootModel[list[tuple[NonNegativeInt, NonNegativeInt]]]):
    """Ranges of word indices to cut, ``[first, last]`` each, both included."""

    @field_validator("root")
    @classmethod
    def _ordered(cls, value: list[tuple[int, int]]) -> list[tuple[int, int]]:
        for i, (first, last) in enumerate(value):
            if last < first:
                raise ValueError(f"range {i} ([{first}, {last}]) ends before it starts")
        return value

    def __bool__(self) -> bool:
        return bool(self.root)

    def asset_uses(self) -> list[AssetUse]:
        return []

    def with_assets(self, assets: dict[str, Any], *, inputs: dict[str, Any] | None = None,
                    storage: Storage | None = None, **_: Any) -> RemovedWords:
        count = len(read_words(inputs, storage))
        problems = [((i,), f"word {last} is past the transcript's last word ({count} words: 0–{count - 1})")
                    for i, (_first, last) in enumerate(self.root) if last >= count]
        if problems:
            raise AssetCheckError(problems)
        return RemovedWords(indices=tuple(sorted({i for a, b in self.root for i in range(a, b + 1)})),
                            word_count=count)


def deleted_words(words: list[Word], edited: str) -> tuple[list[int], list[str]]:
    """(indices of the words the edit deleted, words it added or changed) — difflib on the words' tokens."""
    owners, original = [], []
    for i, w in enumerate(words):
        for t in tokens(w.word):
            owners.append(i)
            original.append(t)
    matcher = difflib.SequenceMatcher(None, original, tokens(edited), autojunk=False)
    deleted: set[int] = set()
    added: list[str] = []
    for op, a1, a2, b1, b2 in matcher.get_opcodes():
        if op in ("replace", "insert"):
            added += matcher.b[b1:b2]
        elif op == "delete":
            a1, a2 = _slid(original, owners, words, a1, a2)
            deleted.update(owners[a1:a2])
    return sorted(deleted), added


def _ends_clause(words: list[Word], owners: list[int], i: int) -> bool:
    """Token ``i`` is its word's last and the word ends a sentence or clause (or there is no such token)."""
    if i < 0 or i >= len(owners):
        return True
    last_of_word = i + 1 >= len(owners) or owners[i + 1] != owners[i]
    return last_of_word and words[owners[i]].word.rstrip().endswith((".", "?", "!", ",", ";", ":"))


def _slid(original: list[str], owners: list[int], words: list[Word], a1: int, a2: int) -> tuple[int, int]:
    """A deleted run can often slide ("rose. The soft … fall. The salt" deletes "The soft … fall." or
    "soft … fall. The" alike): the position where it starts and ends at clause boundaries, the nearest one."""
    options = [(a1, a2)]
    lo, hi = a1, a2
    while lo > 0 and original[lo - 1] == original[hi - 1]:
        lo, hi = lo - 1, hi - 1
        options.append((lo, hi))
    lo, hi = a1, a2
    while hi < len(original) and original[lo] == original[hi]:
        lo, hi = lo + 1, hi + 1
        options.append((lo, hi))
    score = lambda o: _ends_clause(words, owners, o[0] - 1) + _ends_clause(words, owners, o[1] - 1)  # noqa: E731
    return max(options, key=lambda o: (score(o), -abs(o[0] - a1)))


@payload_model("transcript_text")
class EditedText(RootModel[str]):
    """The transcript's text with words deleted; its deleted words are cut."""

    def __bool__(self) -> bool:
        return bool(self.root.strip())

    def asset_uses(self) -> list[AssetUse]:
        return []

    def with_assets(self, assets: dict[str, Any], *, inputs: dict[str, Any] | None = None,
                    storage: Storage | None = None, **_: Any) -> RemovedWords:
        words = read_words(inputs, storage)
        deleted, added = deleted_words(words, self.root)
        if added:
            shown = ", ".join(f"'{w}'" for w in dict.fromkeys(added[:10]))
            more = f" and {len(added) - 10} more" if len(added) > 10 else ""
            raise AssetCheckError([((), f"keep_text can only delete words, but it adds or changes {shown}{more}: "
                                        "these are not in the transcript there")])
        return RemovedWords(indices=tuple(deleted), word_count=len(words))
