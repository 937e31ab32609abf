"""STAMP packets, sender and reflector on a fake clock, and the path-quality estimators."""

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dmsc.errors import DecodeError
from dmsc.measurement.estimators import (
    BandwidthEstimator,
    JitterEstimator,
    LossWindow,
    PathEstimator,
    PathQuality,
    one_way_delay_ms,
    round_trip_ms,
    telemetry_entries,
)
from dmsc.measurement.stamp import (
    NTP_UNIX_OFFSET,
    PACKET_SIZE,
    ErrorEstimate,
    Reflector,
    ReflectorPacket,
    SenderPacket,
    StampSender,
    decode_reflector_packet,
    decode_sender_packet,
    encode_reflector_packet,
    encode_sender_packet,
    ntp_delta,
    ntp_from_unix,
    unix_from_ntp,
)
from dmsc.proto import dmsc_pb2

u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
errors = st.builds(ErrorEstimate, st.booleans(), st.integers(0, 63), st.integers(1, 255))
NOW = 1_700_000_000.0  # a Unix time of 2023

# ---------------------------------------------------------------- timestamps


def test_ntp_timestamp_of_the_unix_epoch_and_a_half_second():
    assert ntp_from_unix(0.0) == NTP_UNIX_OFFSET << 32
    assert ntp_from_unix(0.5) == (NTP_UNIX_OFFSET << 32) + (1 << 31)


@pytest.mark.parametrize("seconds", [0.0, NOW, NOW + 0.123456, 2_085_978_495.9, 2_200_000_000.25])
def test_ntp_round_trip_on_both_sides_of_the_2036_era_wrap(seconds):
    assert unix_from_ntp(ntp_from_unix(seconds)) == pytest.approx(seconds, abs=1e-6)


def test_ntp_delta_across_the_era_wrap():
    wrap = 2**32 - NTP_UNIX_OFFSET  # Unix time of NTP era 1, 2036-02-07
    assert ntp_delta(ntp_from_unix(wrap + 0.25), ntp_from_unix(wrap - 0.5)) == 0.75


@pytest.mark.parametrize("bad", [-1.0, math.inf, math.nan])
def test_ntp_refuses_times_it_cannot_represent(bad):
    with pytest.raises(ValueError):
        ntp_from_unix(bad)


# ---------------------------------------------------------------- packets


@given(u32, u64, errors)
def test_sender_packet_round_trip(sequence, timestamp, error):
    packet = SenderPacket(sequence, timestamp, error)
    data = encode_sender_packet(packet)
    assert len(data) == PACKET_SIZE
    assert decode_sender_packet(data) == packet


@given(u32, u64, u64, u32, u64, st.integers(0, 255), errors, errors)
def test_reflector_packet_round_trip(seq, stamp, received, sender_seq, sender_stamp, ttl, e1, e2):
    packet = ReflectorPacket(seq, stamp, received, sender_seq, sender_stamp, ttl, e1, e2)
    data = encode_reflector_packet(packet)
    assert len(data) == PACKET_SIZE
    assert decode_reflector_packet(data) == packet


def test_sender_packet_layout_follows_rfc_8762():
    data = encode_sender_packet(SenderPacket(7, 0x0102030405060708, ErrorEstimate(True, 2, 3)))
    assert data[:4] == b"\x00\x00\x00\x07"
    assert data[4:12] == bytes(range(1, 9))
    assert data[12:14] == bytes([0x80 | 2, 3])  # S=1, Z=0, scale 2, multiplier 3
    assert data[14:] == bytes(30)


def test_reflector_packet_layout_follows_rfc_8762():
    packet = ReflectorPacket(1, 2, 3, 4, 5, 64, ErrorEstimate(False, 0, 1), ErrorEstimate())
    data = encode_reflector_packet(packet)
    fields = struct.unpack("!IQHHQIQHHB3s", data)
    assert fields == (1, 2, 0x0001, 0, 3, 4, 5, ErrorEstimate().encode(), 0, 64, bytes(3))


def test_mbz_octets_are_ignored_on_receipt():
    data = bytearray(encode_sender_packet(SenderPacket(1, 2)))
    data[20] = 0xFF  # e.g. an RFC 8972 session id or TLV we do not use
    assert decode_sender_packet(bytes(data)) == SenderPacket(1, 2)


@pytest.mark.parametrize("length", [0, 43, 45, 1500])
def test_a_packet_of_the_wrong_length_is_refused(length):
    with pytest.raises(DecodeError, match=f"{length} octets, expected 44"):
        decode_sender_packet(bytes(length))
    with pytest.raises(DecodeError, match=f"{length} octets, expected 44"):
        decode_reflector_packet(bytes(length))


def test_a_zero_multiplier_is_refused():
    data = bytearray(encode_sender_packet(SenderPacket(1, 2)))
    data[13] = 0
    with pytest.raises(DecodeError, match="error estimate: multiplier 0"):
        decode_sender_packet(bytes(data))


def test_ptp_timestamps_are_refused():
    data = bytearray(encode_reflector_packet(ReflectorPacket(1, 2, 3, 4, 5, 6)))
    data[36] |= 0x40  # Z flag of the sender error estimate
    with pytest.raises(DecodeError, match="sender error estimate: Z flag set"):
        decode_reflector_packet(bytes(data))


@given(st.one_of(st.binary(max_size=100), st.binary(min_size=44, max_size=44)))
def test_any_bytes_decode_or_raise_decode_error(data):
    for decode in (decode_sender_packet, decode_reflector_packet):
        try:
            decode(data)
        except DecodeError as error:
            assert str(error).startswith("STAMP")


def test_encoding_refuses_out_of_range_fields():
    with pytest.raises(ValueError, match="sequence number"):
        encode_sender_packet(SenderPacket(2**32, 0))
    with pytest.raises(ValueError, match="sender TTL"):
        encode_reflector_packet(ReflectorPacket(0, 0, 0, 0, 0, 256))


# ---------------------------------------------------------------- sender and reflector


def exchange(sender, reflector, send_at, forward, turnaround, backward, ttl=62):
    """One probe over a fake link: the exact delays each way, on one clock."""
    (packet,) = sender.packets_due(send_at)
    arrival = send_at + forward
    reply = reflector.reflect(packet, arrival, ttl=ttl, sent_at=arrival + turnaround)
    return sender.receive(reply, arrival + turnaround + backward)


# A float Unix time of today resolves ~0.24 us; NTP format 2**-32 s. So on a clock near NOW the
# delay is exact to a microsecond (the error estimate we advertise), near 1000 s to NTP's grain.
@pytest.mark.parametrize(("start", "tolerance_ms"), [(1000.0, 1e-6), (NOW, 1e-3)])
def test_exchange_on_a_fake_clock_gives_the_exact_one_way_delay_and_round_trip(start, tolerance_ms):
    sender, reflector = StampSender("/B/4", 0.1, start), Reflector()
    result = exchange(sender, reflector, start, forward=0.0123, turnaround=0.0001, backward=0.0071)
    assert result.target == "/B/4"
    assert result.sequence == 0
    assert result.sender_ttl == 62
    assert one_way_delay_ms(result) == pytest.approx(12.3, abs=tolerance_ms)
    assert round_trip_ms(result) == pytest.approx(12.3 + 7.1, abs=tolerance_ms)
    assert sender.outstanding == 0
    assert reflector.counters["reflected"] == 1


def test_the_reflector_echoes_the_test_packet():
    test = SenderPacket(41, ntp_from_unix(NOW), ErrorEstimate(True, 5, 9))
    reply = decode_reflector_packet(Reflector().reflect(encode_sender_packet(test), NOW + 1, ttl=7))
    assert (reply.sequence, reply.sender_sequence) == (41, 41)  # stateless reflector
    assert reply.sender_timestamp == test.timestamp
    assert reply.sender_error == test.error
    assert reply.receive_timestamp == reply.timestamp == ntp_from_unix(NOW + 1)
    assert reply.sender_ttl == 7


def test_the_reflector_counts_and_raises_on_bad_bytes():
    reflector = Reflector()
    with pytest.raises(DecodeError):
        reflector.reflect(b"short", NOW)
    assert reflector.counters["decode_errors"] == 1


def test_probes_follow_the_interval_without_bursting_after_a_stall():
    sender = StampSender("/B/4", 0.1, NOW)
    assert len(sender.packets_due(NOW)) == 1
    assert sender.packets_due(NOW + 0.05) == []
    assert sender.get_timer() == pytest.approx(NOW + 0.1)
    assert len(sender.packets_due(NOW + 0.1)) == 1
    assert len(sender.packets_due(NOW + 5.0)) == 1  # stalled: one probe, not 49
    assert sender.packets_due(NOW + 5.05) == []
    assert len(sender.packets_due(NOW + 5.1)) == 1
    sequences = [decode_sender_packet(p).sequence for p in sender.packets_due(NOW + 5.2)]
    assert sequences == [4]


def test_unanswered_probes_expire_and_late_replies_are_ignored():
    sender, reflector = StampSender("/B/4", 0.1, NOW, timeout=0.5), Reflector()
    (first,) = sender.packets_due(NOW)
    (second,) = sender.packets_due(NOW + 0.1)
    assert sender.get_timer() == pytest.approx(NOW + 0.2)
    assert sender.expire(NOW + 0.49) == []
    assert sender.expire(NOW + 0.5) == [0]
    late = reflector.reflect(first, NOW + 0.3)
    assert sender.receive(late, NOW + 0.6) is None
    assert sender.counters["unmatched"] == 1
    reply = reflector.reflect(second, NOW + 0.15)
    assert sender.receive(reply, NOW + 0.2).sequence == 1
    assert sender.receive(reply, NOW + 0.2) is None  # duplicate
    assert (sender.counters["sent"], sender.counters["received"]) == (2, 1)
    assert sender.counters["lost"] == 1


def test_a_reply_echoing_another_timestamp_is_not_matched():
    sender = StampSender("/B/4", 0.1, NOW)
    sender.packets_due(NOW)
    forged = SenderPacket(0, ntp_from_unix(NOW - 3))
    reply = Reflector().reflect(encode_sender_packet(forged), NOW + 0.01)
    assert sender.receive(reply, NOW + 0.02) is None
    assert sender.outstanding == 1


def test_the_sender_counts_and_raises_on_bad_bytes():
    sender = StampSender("/B/4", 0.1, NOW)
    with pytest.raises(DecodeError):
        sender.receive(bytes(10), NOW)
    assert sender.counters["decode_errors"] == 1


# ---------------------------------------------------------------- estimators


def test_rfc_3550_jitter_matches_a_hand_computation():
    estimator = JitterEstimator()
    for transit in (10.0, 12.0, 11.0, 15.0):
        estimator.update(transit)
    # D = 2, 1, 4:  J1 = 2/16;  J2 = J1 + (1 - J1)/16;  J3 = J2 + (4 - J2)/16
    j1 = 2 / 16
    j2 = j1 + (1 - j1) / 16
    j3 = j2 + (4 - j2) / 16
    assert estimator.jitter_ms == pytest.approx(j3)
    assert estimator.jitter_ms == pytest.approx(0.41845703125)


def test_jitter_of_a_constant_delay_is_zero():
    estimator = JitterEstimator()
    for _ in range(5):
        estimator.update(20.0)
    assert estimator.jitter_ms == 0.0


def test_loss_is_a_fraction_of_the_last_n_probes():
    window = LossWindow(4)
    assert window.loss == 0.0
    for lost in (True, False, True, False):
        window.record(lost)
    assert window.loss == 0.5
    window.record(False)  # the first (lost) probe leaves the window
    window.record(False)
    assert window.loss == 0.25
    assert window.samples == 4


def test_loss_window_size_must_be_positive():
    with pytest.raises(ValueError, match="window"):
        LossWindow(0)


def test_available_bandwidth_is_capacity_minus_the_measured_rate():
    estimator = BandwidthEstimator(10e6)
    assert estimator.update(0, 100.0) is None  # one reading: no rate yet
    assert estimator.update(625_000, 101.0) == pytest.approx(5e6)  # 5 Mbit/s used
    assert estimator.update(625_000 + 2_500_000, 102.0) == 0.0  # 20 Mbit/s: clamped at 0
    assert estimator.update(3_125_000, 102.0) == 0.0  # same instant: ignored
    assert estimator.update(1_000, 103.0) is None  # counter went back: restart
    assert estimator.update(1_000 + 125_000, 104.0) == pytest.approx(9e6)


def test_path_estimator_snapshot_and_its_qos_sample():
    estimator = PathEstimator(window=4, capacity_bps=1e6)
    sender, reflector = StampSender("/B/4", 0.1, NOW), Reflector()
    assert estimator.snapshot() is None
    for index, forward in enumerate((0.010, 0.012, 0.011)):
        at = NOW + 0.1 * index
        estimator.add_reply(exchange(sender, reflector, at, forward, 0.0, 0.005))
    estimator.add_loss(NOW + 0.5)
    estimator.add_port_bytes(0, NOW)
    estimator.add_port_bytes(62_500, NOW + 1)  # 0.5 Mbit/s used
    quality = estimator.snapshot()
    assert quality.delay_ms == pytest.approx(11.0, abs=1e-3)
    assert quality.rtt_ms == pytest.approx(16.0, abs=1e-3)
    assert quality.jitter_ms == pytest.approx(2 / 16 + (1 - 2 / 16) / 16, abs=1e-3)
    assert quality.loss == 0.25
    assert quality.samples == 4
    assert quality.bandwidth_bps == pytest.approx(5e5)
    assert quality.last_update == NOW + 0.5
    sample = quality.to_qos_sample("sg1", "/B/4")
    back = PathQuality.from_qos_sample(dmsc_pb2.QosSample.FromString(sample.SerializeToString()))
    assert (back.delay_ms, back.loss, back.bandwidth_bps) == (
        quality.delay_ms,
        quality.loss,
        quality.bandwidth_bps,
    )


def test_a_path_with_every_probe_lost_has_unknown_delay_carried_as_nan():
    estimator = PathEstimator(window=3)
    for index in range(3):
        estimator.add_loss(NOW + index)
    quality = estimator.snapshot()
    assert (quality.delay_ms, quality.jitter_ms, quality.loss) == (None, None, 1.0)
    sample = quality.to_qos_sample("sg1", "/B/4")
    assert math.isnan(sample.delay_ms) and math.isnan(sample.bandwidth_bps)
    assert PathQuality.from_qos_sample(sample).delay_ms is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"loss": 1.5}, "loss 1.5 not in"),
        ({"delay_ms": -1.0}, "delay_ms -1.0 must be finite"),
        ({"jitter_ms": math.inf}, "jitter_ms inf must be finite"),
        ({"target": "B/4"}, "target"),
        ({"sg_node_id": ""}, "empty sg_node_id"),
    ],
)
def test_meaningless_qos_samples_are_refused(change, message):
    fields = dict(sg_node_id="sg1", target="/B/4", timestamp=NOW, delay_ms=1.0, loss=0.0)
    with pytest.raises(DecodeError, match=message):
        PathQuality.from_qos_sample(dmsc_pb2.QosSample(**(fields | change)))


def test_telemetry_entries_keep_the_newest_sample_per_sg_and_target():
    old = PathQuality(10.0, 1.0, 0.0, None, 5, NOW).to_qos_sample("sg1", "/B/4")
    new = PathQuality(30.0, 1.0, 0.0, None, 5, NOW + 1).to_qos_sample("sg1", "/B/4")
    other = PathQuality(5.0, 1.0, 0.0, None, 5, NOW).to_qos_sample("sg2", "/B/4")
    entries = telemetry_entries([new, old, other])
    assert entries[("sg1", "/B/4")].delay_ms == 30.0
    assert entries[("sg2", "/B/4")].delay_ms == 5.0
