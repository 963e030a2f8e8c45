#!/usr/bin/env bash
# One librdkafka producer (rdkafka_performance, the neutral client of issue 12) against one broker
# on 127.0.0.1:19092; prints one JSON line: MB/s and the busy cores of the broker, the client and
# the machine (idle, iowait) over the run.
#
#   bench/scripts/rdkafka-one-producer.sh SYSTEM [MESSAGES]
#     SYSTEM: `null` (riptide bench null-broker) or the path of a riptide binary (started with
#             --shards 2 on a fresh data directory; `riptide` = target/release/riptide)
#   env: RDKAFKA_PERFORMANCE (path of librdkafka's examples/rdkafka_performance, required),
#        ACKS (default 1), PARTITIONS (default 6), SHARDS (default 2)
#
# rdkafka_performance is not packaged: build it from librdkafka's sources
# (./configure --disable-ssl --disable-sasl --disable-zstd --disable-curl && make libs &&
# make -C examples rdkafka_performance). Every run is bounded: MESSAGES (default 5,000,000) of
# 1 KiB, and a 120 s timeout.
set -euo pipefail

system=${1:?usage: $0 null|RIPTIDE_BIN [MESSAGES]}
count=${2:-5000000}
acks=${ACKS:-1}
partitions=${PARTITIONS:-6}
shards=${SHARDS:-2}
perf=${RDKAFKA_PERFORMANCE:?set RDKAFKA_PERFORMANCE to librdkafka examples/rdkafka_performance}
root=$(cd "$(dirname "$0")/../.." && pwd)
port=19092
data=$(mktemp -d /tmp/rdkafka-one-producer.XXXXXX)
topic=t$RANDOM

cleanup() {
    [[ -n ${broker_pid:-} ]] && kill "$broker_pid" 2>/dev/null && wait "$broker_pid" 2>/dev/null
    rm -rf "$data"
}
trap cleanup EXIT

if [[ $system == null ]]; then
    "$root/target/release/riptide" bench null-broker --listen 127.0.0.1:$port --partitions "$partitions" \
        --duration 300s >"$data/broker.log" 2>&1 &
else
    [[ $system == riptide ]] && system=$root/target/release/riptide
    admin=()
    "$system" start --help | grep -q -- --admin && admin=(--admin none) # older builds have none
    "$system" start --data-dir "$data/d" --listen 127.0.0.1:$port --shards "$shards" "${admin[@]}" \
        --default-partitions "$partitions" >"$data/broker.log" 2>&1 &
fi
broker_pid=$!
up=false
for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && { up=true; break; }
    kill -0 "$broker_pid" 2>/dev/null || break
    sleep 0.1
done
if ! $up; then
    echo "the broker did not start on 127.0.0.1:$port:" >&2
    tail -n 20 "$data/broker.log" >&2
    exit 1
fi

cpu_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8, $5, $6}' /proc/stat; }
# The data directory's block device: sectors written (field 7), ms busy (10), ms weighted by the
# requests in flight (11), from /sys/block/DEV/stat.
dev=$(lsblk -no pkname "$(df --output=source /tmp | tail -n 1)" 2>/dev/null || true)
[[ -z $dev ]] && dev=$(basename "$(df --output=source /tmp | tail -n 1)")
disk_stat() { if [[ -r /sys/block/$dev/stat ]]; then awk '{print $7, $10, $11}' "/sys/block/$dev/stat"; else echo 0 0 0; fi; }
proc_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# Warm-up: creates the topic (auto-create with PARTITIONS) and opens its logs.
timeout 60 "$perf" -P -t "$topic" -b 127.0.0.1:$port -s 1024 -a "$acks" -c 20000 -X linger.ms=5 \
    -X batch.size=1000000 >/dev/null 2>&1 || true

read -r busy0 idle0 iow0 < <(cpu_ticks)
b0=$(proc_ticks "$broker_pid")
read -r sect0 busyms0 qms0 < <(disk_stat)
t0=$(date +%s.%N)
# The loop below is the 120 s watchdog (a background `sleep; kill` subshell left its sleep
# holding our stdout, so a caller piping us waited for it).
"$perf" -P -t "$topic" -b 127.0.0.1:$port -s 1024 -a "$acks" -c "$count" -X linger.ms=5 \
    -X batch.size=1000000 >"$data/client.log" 2>&1 &
client_pid=$!
c_ticks=0
deadline=$((SECONDS + 120))
while kill -0 "$client_pid" 2>/dev/null; do
    c_ticks=$(proc_ticks "$client_pid" 2>/dev/null || echo "$c_ticks")
    ((SECONDS < deadline)) || kill "$client_pid" 2>/dev/null || true
    sleep 0.2
done
wait "$client_pid" || { echo "rdkafka_performance failed:" >&2; tail -n 20 "$data/client.log" >&2; exit 1; }
t1=$(date +%s.%N)
read -r busy1 idle1 iow1 < <(cpu_ticks)
b1=$(proc_ticks "$broker_pid")
read -r sect1 busyms1 qms1 < <(disk_stat)

# rdkafka_performance prints a final summary with "MB/s"; take the last figure it prints.
mbs=$(grep -o '[0-9.]* MB/s' "$data/client.log" | tail -n 1 | cut -d' ' -f1)
awk -v s="$system" -v mbs="${mbs:-0}" -v t0="$t0" -v t1="$t1" -v hz="$hz" -v b="$((b1 - b0))" -v c="$c_ticks" \
    -v idle="$((idle1 - idle0))" -v iow="$((iow1 - iow0))" -v acks="$acks" -v n="$count" \
    -v sect="$((sect1 - sect0))" -v busyms="$((busyms1 - busyms0))" -v qms="$((qms1 - qms0))" 'BEGIN {
    secs = t1 - t0
    printf "{\"system\":\"%s\",\"acks\":%s,\"messages\":%d,\"mb_per_s\":%s,\"seconds\":%.2f,\"broker_cores\":%.2f,\"client_cores\":%.2f,\"idle_cores\":%.2f,\"iowait_cores\":%.2f,\"device_write_mb_per_s\":%.0f,\"device_busy\":%.2f,\"device_requests_in_flight\":%.2f}\n",
        s, acks, n, mbs, secs, b / hz / secs, c / hz / secs, idle / hz / secs, iow / hz / secs,
        sect * 512 / 1e6 / secs, busyms / 1000 / secs, qms / 1000 / secs
}'
