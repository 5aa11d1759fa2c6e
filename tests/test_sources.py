"""Local task data: seeded splits, tables with names or indices as labels, clear errors."""
from __future__ import annotations

import pytest

from tara_core.sources import SourceError, open_image_dataset, read_table, split_indices


def test_split_indices_is_seeded_disjoint_and_capped():
    a, rest = split_indices(100, 0.2, seed=0)
    assert len(a) == 20 and not set(a) & set(rest) and sorted(a + rest) == list(range(100))
    assert split_indices(100, 0.2, seed=0) == (a, rest) and split_indices(100, 0.2, seed=1)[0] != a
    assert len(split_indices(100, 0.2, seed=0, limit=5)[0]) == 5
    with pytest.raises(SourceError):
        split_indices(10, 1.5, seed=0)


def test_read_table_formats_rows_and_maps_labels(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text("premise\thypothesis\tlabel\nA cat.\tAn animal.\tentailment\nA dog.\tA cat.\t2\nX\tY\t-\n")
    texts, labels = read_table(path, "{premise} / {hypothesis}", "label", ["entailment", "neutral", "contradiction"])
    assert texts == ["A cat. / An animal.", "A dog. / A cat."] and labels == [0, 2]
    with pytest.raises(SourceError, match="column 'sentence'"):
        read_table(path, "{sentence}", "label", ["entailment", "neutral", "contradiction"])
    with pytest.raises(SourceError, match="not one of the classes"):
        read_table(path, "{premise}", "label", ["yes", "no"])
    with pytest.raises(SourceError, match="no label column"):
        read_table(path, "{premise}", "gold", ["entailment"])


def test_missing_data_is_a_clear_error(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        open_image_dataset({"layout": "imagefolder", "root": str(tmp_path / "none")}, "train")
    with pytest.raises(SourceError, match="no such split folder"):
        open_image_dataset({"layout": "imagefolder", "root": str(tmp_path)}, "train")
    with pytest.raises(SourceError, match="no dataset class"):
        open_image_dataset({"layout": "torchvision", "dataset": "NotADataset", "root": str(tmp_path)}, "train")
    with pytest.raises(SourceError, match="MNIST"):
        open_image_dataset({"layout": "torchvision", "dataset": "MNIST", "root": str(tmp_path)}, "train")
