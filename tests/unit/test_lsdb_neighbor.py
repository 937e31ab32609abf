import pytest

from dmsc.proto import dmsc_pb2
from dmsc.proto.codec import MAX_SEQUENCE
from dmsc.routing.lsdb import LinkStateDatabase, compare
from dmsc.routing.neighbor import TRANSITIONS, Event, Neighbor, State


def lsa(sequence, lifetime_ms=60_000, cost=10):
    return dmsc_pb2.LinkStateAdvertisement(
        originator="sg1",
        sequence=sequence,
        lifetime_ms=lifetime_ms,
        adjacencies=[dmsc_pb2.Adjacency(neighbor="sr1", cost=cost)],
    )


def test_higher_sequence_is_newer():
    assert compare(lsa(5), lsa(4)) > 0
    assert compare(lsa(4), lsa(5)) < 0


def test_same_instance_with_other_remaining_lifetime_is_the_same():
    assert compare(lsa(5, lifetime_ms=10), lsa(5, lifetime_ms=50_000)) == 0


def test_purge_beats_a_live_copy_of_equal_sequence():
    assert compare(lsa(5, lifetime_ms=0), lsa(5)) > 0
    assert compare(lsa(5), lsa(5, lifetime_ms=0)) < 0


def test_equal_sequence_with_other_content_is_ordered_the_same_everywhere():
    a, b = lsa(5, cost=10), lsa(5, cost=20)
    assert compare(a, b) == -compare(b, a) != 0


def test_database_ages_entries_from_their_remaining_lifetime():
    database = LinkStateDatabase()
    entry = database.install(lsa(1, lifetime_ms=2_000), now=100.0, hold=60.0)
    assert entry.expires_at == pytest.approx(102.0)
    assert entry.wire_copy(101.5).lifetime_ms == 500
    purge = database.install(lsa(2, lifetime_ms=0), now=101.0, hold=60.0)
    assert purge.expires_at == pytest.approx(161.0)
    assert list(database.live()) == []


def test_nothing_is_newer_than_a_purge_at_the_maximum_sequence():
    top = lsa(MAX_SEQUENCE, lifetime_ms=0)
    for other in (lsa(MAX_SEQUENCE), lsa(MAX_SEQUENCE, cost=99), lsa(MAX_SEQUENCE - 1), lsa(1)):
        assert compare(top, other) > 0 and compare(other, top) < 0
    assert compare(top, lsa(MAX_SEQUENCE, lifetime_ms=0, cost=99)) == 0  # purges: one instance


def test_hold_keeps_an_entry_until_the_time_given():
    database = LinkStateDatabase()
    database.install(lsa(MAX_SEQUENCE, lifetime_ms=0), now=100.0, hold=5.0)
    database.hold("sg1", 110.0)
    database.hold("nobody", 110.0)  # an unknown originator: nothing to keep
    assert database.get("sg1").expires_at == 110.0 and database.next_expiry() == 110.0
    assert database.get("nobody") is None


@pytest.mark.parametrize(
    ("start", "event", "end"),
    [
        (State.DOWN, Event.HELLO_ONE_WAY, State.INIT),
        (State.INIT, Event.HELLO_TWO_WAY, State.FULL),
        (State.DOWN, Event.HELLO_TWO_WAY, State.FULL),
        (State.FULL, Event.HELLO_ONE_WAY, State.INIT),
        (State.FULL, Event.DEAD_TIMER, State.DOWN),
        (State.INIT, Event.LINK_DOWN, State.DOWN),
    ],
)
def test_neighbor_transitions(start, event, end):
    neighbor = Neighbor("sr1", "eth0", state=start)
    assert neighbor.handle(event) == (start, end)


def test_every_state_and_event_has_a_transition():
    assert {(s, e) for s in State for e in Event} == set(TRANSITIONS)


def test_going_down_forgets_pending_retransmissions():
    neighbor = Neighbor("sr1", "eth0", state=State.FULL, retransmit={"sg1": (3, False, 1.0)})
    neighbor.handle(Event.DEAD_TIMER)
    assert neighbor.retransmit == {}


def test_leaving_full_forgets_pending_retransmissions_too():
    # a neighbor that stops listing us floods nothing more; a kept list would fire forever
    neighbor = Neighbor("sr1", "eth0", state=State.FULL, retransmit={"sg1": (3, False, 1.0)})
    neighbor.handle(Event.HELLO_ONE_WAY)
    assert neighbor.state is State.INIT and neighbor.retransmit == {}
