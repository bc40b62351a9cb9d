"""Replicas spread over nodes (pure)."""

from icefloe.cluster.placement import share


def test_replicas_spread_evenly_and_every_node_agrees() -> None:
    nodes = ["n3", "n1", "n2"]
    spread = share("dep-a", 2, nodes)
    assert sum(spread.values()) == 2 and max(spread.values()) == 1
    assert share("dep-a", 2, list(reversed(nodes))) == spread  # order does not matter
    assert sum(share("dep-b", 7, nodes).values()) == 7
    assert sorted(share("dep-b", 7, nodes).values()) == [2, 2, 3]
    assert share("dep-a", 2, []) == {} and share("dep-a", 0, nodes) == {}


def test_single_replica_deployments_do_not_pile_on_one_node() -> None:
    holders = [next(iter(share(f"dep-{i}", 1, ["a", "b", "c"]))) for i in range(60)]
    assert {holders.count(n) for n in "abc"} and min(holders.count(n) for n in "abc") >= 10


def test_a_dead_node_s_share_goes_to_the_others() -> None:
    before = share("dep-x", 3, ["a", "b", "c"])
    after = share("dep-x", 3, ["a", "c"])
    assert before == {"a": 1, "b": 1, "c": 1} and sum(after.values()) == 3
    assert set(after) == {"a", "c"}


def test_a_leaving_node_moves_only_what_it_held() -> None:
    nodes = ["http://n1", "http://n2", "http://n3"]
    before = {f"dep-{i}": share(f"dep-{i}", 1, nodes) for i in range(300)}
    after = {d: share(d, 1, nodes[:2]) for d in before}
    moved = [d for d in before if before[d] != after[d]]
    assert all("http://n3" in before[d] for d in moved)  # only the leaver's
    assert {d for d in before if "http://n3" in before[d]} == set(moved)
    assert {d: share(d, 1, nodes) for d in before} == before  # it comes back: same again
