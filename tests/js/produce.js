#!/usr/bin/env node
// Produce messages with kafkajs for the Riptide e2e suite.
// stdin: JSON {brokers: ["host:port"], topic, compression: "gzip"|"none",
//              messages: [{partition, key: b64|null, value: b64|null,
//                          headers: [[name, b64], ...], timestamp}]}
// stdout: JSON [[partition, offset], ...] in input order (from the produce responses).
// Exit code 0 only if every message was acknowledged (acks=-1).
'use strict';
const { Kafka, CompressionTypes, logLevel } = require('kafkajs');

const CHUNK = 200;

function readStdin() {
  return new Promise((resolve, reject) => {
    const chunks = [];
    process.stdin.on('data', (c) => chunks.push(c));
    process.stdin.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    process.stdin.on('error', reject);
  });
}

const b64 = (s) => (s === null ? null : Buffer.from(s, 'base64'));

function toKafkajs(m) {
  const headers = {};
  for (const [name, val] of m.headers) {
    const v = Buffer.from(val, 'base64');
    if (!(name in headers)) headers[name] = v;
    else if (Array.isArray(headers[name])) headers[name].push(v);
    else headers[name] = [headers[name], v];
  }
  return { partition: m.partition, key: b64(m.key), value: b64(m.value), headers,
           timestamp: String(m.timestamp) };
}

async function main() {
  const input = JSON.parse(await readStdin());
  const compression = { gzip: CompressionTypes.GZIP, none: CompressionTypes.None }[input.compression];
  if (compression === undefined) throw new Error(`unknown compression ${input.compression}`);
  const kafka = new Kafka({
    clientId: 'riptide-e2e-kafkajs', brokers: input.brokers, connectionTimeout: 5000,
    requestTimeout: 30000, retry: { retries: 3 }, logLevel: logLevel.WARN,
  });
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
  const result = new Array(input.messages.length);
  try {
    // group by partition, keep input order; one send per chunk so offsets are known
    const byPart = new Map();
    input.messages.forEach((m, i) => {
      if (!byPart.has(m.partition)) byPart.set(m.partition, []);
      byPart.get(m.partition).push(i);
    });
    for (const [partition, idxs] of byPart) {
      for (let s = 0; s < idxs.length; s += CHUNK) {
        const chunk = idxs.slice(s, s + CHUNK);
        const md = await producer.send({
          topic: input.topic, acks: -1, timeout: 30000, compression,
          messages: chunk.map((i) => toKafkajs(input.messages[i])),
        });
        if (md.length !== 1 || md[0].partition !== partition || md[0].errorCode !== 0) {
          throw new Error(`unexpected produce metadata ${JSON.stringify(md)}`);
        }
        const base = Number(md[0].baseOffset);
        chunk.forEach((i, j) => { result[i] = [partition, base + j]; });
      }
    }
  } finally {
    await producer.disconnect();
  }
  process.stdout.write(JSON.stringify(result));
}

main().catch((e) => {
  console.error('kafkajs produce failed:', e && e.stack ? e.stack : e);
  process.exit(1);
});
