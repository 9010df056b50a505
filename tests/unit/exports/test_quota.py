"""The cap on unfinished objects per namespace (quota.UnfinishedQuota)."""

from __future__ import annotations

from rds_export_operator.exports.quota import UnfinishedQuota


def test_new_objects_beyond_the_cap_are_refused_until_one_finishes() -> None:
    quota = UnfinishedQuota(2)
    assert quota.admit("hog", "a", new=True) and quota.admit("hog", "b", new=True)
    assert not quota.admit("hog", "c", new=True) and quota.refused("c")
    assert not quota.admit("hog", "c", new=True)  # its next event, before the verdict's: still refused
    assert quota.admit("other", "x", new=True)  # another namespace has its own count
    quota.drop("hog", "c")  # the verdict's event: finished
    quota.drop("hog", "a")
    assert quota.admit("hog", "d", new=True) and not quota.refused("c")


def test_an_object_that_already_ran_is_never_refused_on_restart() -> None:
    quota = UnfinishedQuota(1)
    assert quota.admit("team", "new-one", new=True)
    assert quota.admit("team", "ran-before", new=False)  # it has a status: listed again after a restart


def test_no_cap_admits_everything() -> None:
    quota = UnfinishedQuota(0)
    assert all(quota.admit("team", str(i), new=True) for i in range(1000))
