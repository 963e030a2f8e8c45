//! Named limits of the broker, units last. Storage limits live in `storage::constants`.

/// Default listen address of `riptide start`.
pub const LISTEN_DEFAULT: &str = "127.0.0.1:9092";
/// Default admin endpoint (/metrics, /health) of `riptide start`: Redpanda's admin port.
pub const ADMIN_DEFAULT: &str = "127.0.0.1:9644";
/// Default data directory of `riptide start`.
pub const DATA_DIR_DEFAULT: &str = "./riptide-data";
/// Largest request frame accepted (`socket.request.max.bytes`, Kafka's default 100 MiB).
pub const SOCKET_REQUEST_BYTES_MAX: usize = 100 * 1024 * 1024;
/// Requests read ahead of their responses on one connection. The Java client pipelines 5, but
/// librdkafka's default is 1,000,000 and it sends one partition per Produce request: 100
/// partitions at 50 MB/s are ~25k requests/s, each waiting a few ms for its write, so a small
/// window (8) left requests queued in socket buffers for 100+ ms. Memory stays bounded by
/// `SHARD_REQUEST_BYTES_IN_FLIGHT_MAX`, not by this count.
pub const CONNECTION_IN_FLIGHT_MAX: usize = 1024;
/// Largest request budget of one shard (Kafka's `queued.max.request.bytes`): readers wait for
/// room before reading more of a request. The budget itself is sized from memory
/// (`tuning::Resources`, `request.budget.bytes.per.shard`), at most this much by default.
pub const SHARD_REQUEST_BYTES_IN_FLIGHT_MAX: u64 = tuning::resources::REQUEST_BUDGET_BYTES_PER_SHARD_MAX;
/// Upper bound of one log's share of the cache.
pub const LOG_BATCH_CACHE_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Connections one shard serves at once; more are accepted and closed with a log line.
pub const SHARD_CONNECTIONS_MAX: usize = 4096;
/// Read buffer of a connection.
pub const CONNECTION_READ_BUFFER_BYTES: usize = 64 * 1024;
/// Capacity of each cross-shard queue in the channel mesh.
pub const MESH_QUEUE_DEPTH: usize = 1024;
/// Upper bound on how long a Fetch may wait for data (clients ask for 500 ms typically).
pub const FETCH_WAIT_MS_MAX: u64 = 30_000;
/// Partitions one topic may have.
pub const TOPIC_PARTITIONS_MAX: i32 = 10_000;
/// Longest legal topic name (Kafka's limit).
pub const TOPIC_NAME_BYTES_MAX: usize = 249;
/// Default partition count of auto-created topics (`num.partitions`).
pub const PARTITIONS_DEFAULT: i32 = 1;
/// How long start-up waits for a listening socket that no process holds any more to vanish:
/// after a kill -9 the dead broker's listener lingers (seen: up to ~1.5 s) while its io_uring is
/// torn down, and a listener joining its SO_REUSEPORT group would be handed connections that
/// nobody accepts.
pub const LISTEN_ORPHAN_WAIT_MS: u64 = 10_000;
/// How often start-up looks again for that orphan listener.
pub const LISTEN_ORPHAN_POLL_MS: u64 = 20;
/// Most shards a broker runs.
pub const SHARDS_MAX: usize = 256;
/// Smallest `socket.request.max.bytes` accepted (a Metadata request must fit).
pub const SOCKET_REQUEST_BYTES_MIN: usize = 1024;
/// Default of `request.read.timeout.ms`: once a request's size prefix is read, its payload must
/// arrive within this time, or the connection is closed (a stalled or slow-loris client).
pub const REQUEST_READ_TIMEOUT_MS_DEFAULT: u64 = 30_000;
/// Default of `connections.max.idle.ms` (Kafka's, 10 min): a connection with no request in
/// flight and no byte received for this long is closed.
pub const CONNECTIONS_MAX_IDLE_MS_DEFAULT: u64 = 600_000;
/// Largest piece of a request payload read at once. Budget is taken for bytes once they have
/// arrived, so a connection holds at most this much memory outside the budget while it waits
/// for room (the same order as its read buffer).
pub const REQUEST_READ_CHUNK_BYTES: usize = 256 * 1024;
/// Address space reserved at once for a request payload (not touched until its bytes arrive):
/// produce requests of the usual clients (1 MB batches, a few partitions per request) fit, so
/// they are read in place without reallocations.
pub const REQUEST_RESERVE_AHEAD_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Largest request of any API but Produce. Decoding multiplies a request's size in memory (a
/// 2-byte Metadata topic on the wire becomes a 128-byte struct: fuzz finding F5) while the
/// request budget counts wire bytes, so only Produce, whose records stay as they arrived, may
/// use all of socket.request.max.bytes. 1 MiB is thousands of topics or partitions per request.
pub const NON_PRODUCE_REQUEST_MAX_BYTES: usize = 1 << 20;
/// Requests up to this size (1 MiB of records, librdkafka's default `message.max.bytes`, plus
/// room for headers) may use the reserve pool when the main request budget is exhausted.
pub const RESERVE_REQUEST_BYTES_MAX: usize = 1024 * 1024 + 64 * 1024;
/// The reserve pool of a shard: request bytes that only small requests may hold, so that
/// ApiVersions, Metadata and ordinary produce requests keep flowing while big requests have
/// taken the whole main budget (`SHARD_REQUEST_BYTES_IN_FLIGHT_MAX`).
pub const SHARD_REQUEST_RESERVE_BYTES: u64 = 32 * 1024 * 1024;
/// How often each shard applies retention to its logs.
pub const RETENTION_CHECK_INTERVAL_MS: u64 = 5 * 60 * 1000;
/// How often each shard's compactor checks its compacted logs' dirty ratio (Kafka's
/// `log.cleaner.backoff.ms` is 15 s); `log.cleaner.backoff.ms` in the config file changes it.
pub const CLEANER_BACKOFF_MS_DEFAULT: u64 = 15_000;
/// Shortest interval accepted (tests use short ones; shorter would only spin).
pub const CLEANER_BACKOFF_MS_MIN: u64 = 10;
/// Producer ids one run of the broker may hand out (its range is reserved durably at start).
pub const PRODUCER_ID_RANGE_PER_RUN: i64 = 1 << 40;
/// Kafka's per-partition file naming the topic id the directory belongs to (KIP-516).
pub const PARTITION_METADATA_FILE: &str = "partition.metadata";
/// Suffix of a deleted partition's directory, moved aside until it is removed.
pub const RETIRED_DIR_SUFFIX: &str = "-delete";
/// Directory under the data dir holding broker metadata (topics, cluster id).
pub const META_DIR: &str = "__riptide_meta";
/// Kafka's internal topic holding committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Default of `offsets.topic.num.partitions` (Kafka's): groups are hashed over this many partitions.
pub const OFFSETS_TOPIC_PARTITIONS_DEFAULT: i32 = 50;
/// `segment.bytes` of `__consumer_offsets` (Kafka's `offsets.topic.segment.bytes`).
pub const OFFSETS_TOPIC_SEGMENT_BYTES: u64 = 100 * 1024 * 1024;
/// Default of `group.initial.rebalance.delay.ms` (Kafka's): the first rebalance of an empty group
/// waits this long (extended while members keep joining, up to the rebalance timeout).
pub const GROUP_INITIAL_REBALANCE_DELAY_MS_DEFAULT: u64 = 3_000;
/// Default of `group.min.session.timeout.ms` (Kafka's); shorter session timeouts are refused
/// with INVALID_SESSION_TIMEOUT.
pub const GROUP_MIN_SESSION_TIMEOUT_MS_DEFAULT: i32 = 6_000;
/// Default of `group.max.session.timeout.ms` (Kafka's, 30 min).
pub const GROUP_MAX_SESSION_TIMEOUT_MS_DEFAULT: i32 = 1_800_000;
/// A new member's JoinGroup may stay parked this long (Kafka's `group.new.member.join.timeout`):
/// its session timeout does not apply before it has a member id, and a client that disconnects
/// mid-rebalance would otherwise leave a defunct member behind.
pub const GROUP_NEW_MEMBER_JOIN_TIMEOUT_MS: u64 = 300_000;
/// Longest metadata string an OffsetCommit may attach to an offset (`offset.metadata.max.bytes`).
pub const OFFSET_METADATA_BYTES_MAX: usize = 4096;
/// The group timer loop wakes at least this often (it also wakes whenever a timer is set).
pub const GROUP_TIMER_IDLE_MS: u64 = 1_000;
/// Bytes read from an `__consumer_offsets` partition per step while groups are reloaded at start.
pub const GROUP_LOAD_READ_BYTES: usize = 1024 * 1024;

const _: () = assert!(OFFSETS_TOPIC_PARTITIONS_DEFAULT <= TOPIC_PARTITIONS_MAX);
const _: () = assert!(GROUP_MIN_SESSION_TIMEOUT_MS_DEFAULT <= GROUP_MAX_SESSION_TIMEOUT_MS_DEFAULT);
const _: () = assert!(CONNECTION_IN_FLIGHT_MAX >= 5, "clients pipeline up to 5 requests");
const _: () = assert!(PARTITIONS_DEFAULT <= TOPIC_PARTITIONS_MAX);
const _: () = assert!(SHARD_REQUEST_BYTES_IN_FLIGHT_MAX >= SOCKET_REQUEST_BYTES_MAX as u64, "the largest request must fit");
const _: () = assert!(SHARD_REQUEST_RESERVE_BYTES >= RESERVE_REQUEST_BYTES_MAX as u64, "a small request must fit the reserve");
const _: () = assert!(REQUEST_READ_CHUNK_BYTES as u64 <= SHARD_REQUEST_RESERVE_BYTES);

/// Default size of each shard's journal (`log.journal.bytes`): the acknowledged data not yet in
/// segment files, at most; also how much a crash can leave to replay.
pub const JOURNAL_BYTES_DEFAULT: u64 = 64 << 20;
/// Smallest journal accepted.
pub const JOURNAL_BYTES_MIN: u64 = 4 << 20;
/// The journal takes at most this fraction (1/N) of the data dir's free space at start.
pub const JOURNAL_FREE_SPACE_SHARE: u64 = 8;
/// Directory of the shards' journals under the data dir (`shard-<id>/` each).
pub const JOURNAL_DIR: &str = "__riptide_journal";
/// How long a shard waits at start for the others to finish replaying their journals.
pub const JOURNAL_REPLAY_BARRIER_MS: u64 = 120_000;

/// Leader epoch of every partition while there is one node (no replication yet): Metadata and
/// ListOffsets report it, and each partition log stamps it in every batch (as a Kafka leader
/// stamps its epoch) and keeps it in its leader epoch cache.
pub const SINGLE_NODE_LEADER_EPOCH: i32 = 0;
