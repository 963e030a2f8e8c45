#!/usr/bin/env node
// One kafkajs consumer-group member for the Riptide group tests (tests/e2e/test_groups.py).
//
//   node group_consumer.js BOOTSTRAP GROUP TOPICS OUT [--session-ms N] [--name NAME]
//
// Same output as tests/e2e/group_consumer.py (one JSON object per line in OUT): "assigned"
// (the member's whole assignment after each rebalance: kafkajs revokes everything at a
// rebalance), "msg" per message processed, "committed" after each synchronous commit,
// "commit_failed", "closed". autoCommit is off: each batch is written to OUT, then its next
// offset is committed. SIGTERM disconnects cleanly (LeaveGroup).
//
// kafkajs names its round-robin assigner "RoundRobinAssigner"; Java, librdkafka, kafka-python
// and aiokafka call theirs "roundrobin". To share a group with them, this member registers the
// same algorithm under the standard name (the consumer protocol's metadata and assignment
// formats are the same in every client).
'use strict';
const fs = require('fs');
const { Kafka, AssignerProtocol: { MemberMetadata, MemberAssignment }, logLevel } = require('kafkajs');

const args = process.argv.slice(2);
const [bootstrap, group, topicsArg, outPath] = args;
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const sessionMs = Number(opt('--session-ms', '10000'));
const name = opt('--name', 'm');
const topics = topicsArg.split(',');

const fd = fs.openSync(outPath, 'a');
function out(ev, fields) {
  fs.writeSync(fd, JSON.stringify({ ev, t: Date.now() / 1000, ...fields }) + '\n');
}

// Round robin over the sorted member ids and the topics' partitions in order: the algorithm
// of kafkajs' own RoundRobinAssigner, registered as "roundrobin".
const StandardRoundRobin = ({ cluster }) => ({
  name: 'roundrobin',
  version: 0,
  async assign({ members, topics: subscribed }) {
    const sortedMembers = members.map(({ memberId }) => memberId).sort();
    const assignment = Object.create(null);
    sortedMembers.forEach((m) => { assignment[m] = Object.create(null); });
    const partitions = [...subscribed].sort().flatMap((topic) =>
      cluster.findTopicPartitionMetadata(topic)
        .map((m) => m.partitionId)
        .sort((a, b) => a - b)
        .map((partitionId) => ({ topic, partitionId })));
    partitions.forEach(({ topic, partitionId }, i) => {
      const member = sortedMembers[i % sortedMembers.length];
      (assignment[member][topic] = assignment[member][topic] || []).push(partitionId);
    });
    return sortedMembers.map((memberId) => ({
      memberId,
      memberAssignment: MemberAssignment.encode({ version: this.version, assignment: assignment[memberId] }),
    }));
  },
  protocol({ topics: subscribed }) {
    return { name: this.name, metadata: MemberMetadata.encode({ version: this.version, topics: subscribed }) };
  },
});

async function main() {
  const kafka = new Kafka({
    clientId: `riptide-e2e-kafkajs-${name}`, brokers: [bootstrap], logLevel: logLevel.WARN,
    retry: { retries: 20, initialRetryTime: 200, maxRetryTime: 2000 },
  });
  const consumer = kafka.consumer({
    groupId: group, sessionTimeout: sessionMs, heartbeatInterval: Math.max(500, Math.floor(sessionMs / 6)),
    rebalanceTimeout: 60000, partitionAssigners: [StandardRoundRobin],
  });
  consumer.on(consumer.events.GROUP_JOIN, (e) => {
    const parts = [];
    for (const [topic, ps] of Object.entries(e.payload.memberAssignment)) {
      for (const p of ps) parts.push([topic, p]);
    }
    out('assigned', { partitions: parts, generation: e.payload.generationId ?? null });
  });
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    try {
      await consumer.disconnect();
    } finally {
      out('closed', {});
      process.exit(0);
    }
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  await consumer.connect();
  for (const topic of topics) {
    await consumer.subscribe({ topic, fromBeginning: true });
  }
  await consumer.run({
    autoCommit: false,
    eachBatchAutoResolve: false,
    eachBatch: async ({ batch, resolveOffset, isRunning, isStale }) => {
      let next = null;
      for (const m of batch.messages) {
        if (!isRunning() || isStale()) break;
        out('msg', { topic: batch.topic, partition: batch.partition, offset: Number(m.offset),
          value: m.value ? m.value.toString() : '' });
        resolveOffset(m.offset);
        next = Number(m.offset) + 1;
      }
      if (next === null) return;
      try {
        await consumer.commitOffsets([{ topic: batch.topic, partition: batch.partition, offset: String(next) }]);
        out('committed', { offsets: [[batch.topic, batch.partition, next]] });
      } catch (e) {
        out('commit_failed', { error: String(e && e.message ? e.message : e) });
      }
    },
  });
}

main().catch((e) => {
  out('commit_failed', { error: `fatal: ${e && e.stack ? e.stack : e}` });
  console.error('kafkajs consumer failed:', e && e.stack ? e.stack : e);
  process.exit(1);
});
