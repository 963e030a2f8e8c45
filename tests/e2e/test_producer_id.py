"""InitProducerId for non-transactional producers: as in Kafka, a request without a
transactional id always gets a fresh producer id with epoch 0, even when it names an
id/epoch (v3+ fields); the broker never bumps an id it did not issue."""

import pytest

import kafka_wire as kw

FOREIGN_ID = 123456789
FOREIGN_EPOCH = 7


@pytest.mark.parametrize("version", [3, 4])
def test_producer_id_non_transactional_always_fresh(broker, version):
    """v3/v4, transactional_id null: producer_id=-1 -> a fresh id, epoch 0; a foreign
    id/epoch (never issued here) -> also a fresh id, epoch 0 (not the same id with epoch
    8); every answer a different id. New connections each time, so both shards answer."""
    asks = [(-1, -1), (FOREIGN_ID, FOREIGN_EPOCH), (-1, -1), (FOREIGN_ID, FOREIGN_EPOCH)]
    answers = []
    for k, (ask_pid, ask_epoch) in enumerate(asks):
        with kw.Conn(broker.host, broker.port, timeout=15) as c:
            answers.append(kw.init_producer_id_call(c, 10 + k, version, producer_id=ask_pid,
                                                    producer_epoch=ask_epoch))
    for (ask_pid, ask_epoch), (err, pid, epoch) in zip(asks, answers):
        assert err == 0, f"v{version} producer_id={ask_pid}: error {err}"
        assert pid != FOREIGN_ID and pid >= 0 and epoch == 0, (
            f"v{version} with producer_id={ask_pid} epoch={ask_epoch} answered "
            f"producer_id={pid} epoch={epoch}; expected a new id with epoch 0")
    ids = [pid for _, pid, _ in answers]
    assert len(set(ids)) == len(ids), f"v{version}: producer ids repeat: {ids}"


def test_producer_id_v1_fresh_ids_differ(broker):
    """v1 (no id/epoch fields): a new id with epoch 0 each time (passes on the old code;
    a guard that id allocation still works)."""
    ids = []
    for k in range(3):
        with kw.Conn(broker.host, broker.port, timeout=15) as c:
            err, pid, epoch = kw.init_producer_id_call(c, 10 + k, 1)
        assert (err, epoch) == (0, 0) and pid >= 0, (err, pid, epoch)
        ids.append(pid)
    assert len(set(ids)) == len(ids), f"producer ids repeat: {ids}"
