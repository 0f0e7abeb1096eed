#!/usr/bin/env bash
# Rotation benchmark: a fleet-wide rotation campaign over connected MQTT
# devices, the real server and `firmware-sim fleet` on this machine.
#
#   test/bench/rotation.sh [DEVICES]      (default: 10000)
#
# Every device enrolls over MQTT and stays connected with its LDevID,
# following its command topic (fleet --stay). Once all are connected,
# `embark rotate all --rate 0` (no rate limit) asks every device to renew
# with a new key; each device renews, reconnects with its new certificate
# and reports the rotation applied; Embark then confirms the new
# certificate in use and retires the old one. Prints the campaign's time
# from start to finished (as the server recorded it and as the CLI saw it)
# and the devices per state. It stops by itself: the campaign's timeout
# bounds the wait, and the fleet and the server are stopped at the end.
# GOMEMLIMIT=3GiB (for example) lifts the server's default soft memory
# limit; RATE=N asks N devices per second instead of all at once; KEEP=1
# keeps the work directory (data, logs).
set -euo pipefail
N=${1:-10000}
STAY=${STAY:-600s}
RATE=${RATE:-0} # devices asked per second; 0: no limit
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$ROOT/bin
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$WORK"' EXIT
cd "$ROOT"

# The broker and the fleet each hold about one descriptor per device.
NOFILE=$(ulimit -n)
if [ "$NOFILE" != unlimited ] && [ "$NOFILE" -lt $((N + 512)) ]; then
  ulimit -n $((N + 512)) 2>/dev/null || {
    echo "ulimit -n is $NOFILE: $N connected devices need about $((N + 512)) descriptors per process" >&2
    exit 1
  }
fi

if [ "${NOBUILD:-}" != 1 ]; then
  go build -o "$BIN/embark" ./cmd/embark
  go build -o "$BIN/firmware-sim" ./firmware-sim
fi
"$BIN/firmware-sim" factory --count "$N" --out "$WORK/factory" --quiet >/dev/null
PORT=${PORT:-28893}
D=$WORK/data
"$BIN/embark" init --data "$D" >/dev/null
"$BIN/embark" serve --data "$D" --udp "127.0.0.1:$((PORT + 1))" --tcp off --mqtt "127.0.0.1:$PORT" --https off \
  --log-level warn >"$WORK/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 100); do [ -S "$D/admin.sock" ] && break; sleep 0.1; done
[ -S "$D/admin.sock" ] || { echo "the server did not start:" >&2; cat "$WORK/server.log" >&2; exit 1; }
"$BIN/embark" manufacturer trust "$WORK/factory/trust.json" --data "$D" >/dev/null
"$BIN/embark" provenance import "$WORK/factory/manifest.json" --data "$D" >/dev/null

echo "== $N devices enroll over MQTT and stay connected"
"$BIN/firmware-sim" fleet --transport mqtt --factory "$WORK/factory" --server "mqtts://127.0.0.1:$PORT" \
  --ca "$D/ca/root.crt" --mode enroll --concurrency 128 --stay "$STAY" --quiet >"$WORK/fleet.txt" 2>&1 &
FLEET=$!
connected() { ss -Htn state established "( sport = :$PORT )" | wc -l; }
C=0
for _ in $(seq 1200); do
  sleep 0.5
  C=$(connected)
  # Embark's own client is one of the connections.
  [ "$C" -gt "$N" ] && break
  if ! kill -0 $FLEET 2>/dev/null; then
    echo "the fleet ended before every device was connected:" >&2
    cat "$WORK/fleet.txt" >&2
    exit 1
  fi
done
echo "connected: $((C - 1)) devices"
[ "$C" -gt "$N" ] || { echo "not every device connected" >&2; exit 1; }

echo "== embark rotate all --rate $RATE"
if [ -n "${PROFILE:-}" ]; then # PROFILE=FILE: the server's CPU profile of the first seconds of the campaign
  curl -s --unix-socket "$D/admin.sock" "http://embark/debug/pprof/profile?seconds=${PROFILE_SECONDS:-8}" -o "$PROFILE" &
fi
cpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' /proc/$1/stat; }
S0=$(cpu $SERVER) F0=$(cpu $FLEET)
if [ -n "${GOROUTINES:-}" ]; then # GOROUTINES=FILE: the server's goroutines 3s into the campaign
  ( sleep 3; curl -s --unix-socket "$D/admin.sock" "http://embark/debug/pprof/goroutine?debug=1" -o "$GOROUTINES" ) &
fi
if [ -n "${STRACE:-}" ]; then # STRACE=FILE: the server's write and sync calls during 5s of the campaign
  timeout -s INT 5 strace -f -c -w -e trace=fdatasync,fsync,pwrite64 -p $SERVER -o "$STRACE" 2>/dev/null &
fi
T0=$(date +%s.%N)
timeout 600 "$BIN/embark" rotate all --rate "$RATE" --timeout 2m --wait --data "$D" | tee "$WORK/rotate.txt"
T1=$(date +%s.%N)
S1=$(cpu $SERVER) F1=$(cpu $FLEET)
echo "wall time seen by the CLI (start request to finished seen): $(awk -v a="$T0" -v b="$T1" 'BEGIN{printf "%.2fs", b-a}')"
ID=$(grep -o 'rot-[0-9]*-[0-9]*-[0-9a-f]*' "$WORK/rotate.txt" | head -1)
if ! grep '^devices ' "$WORK/rotate.txt" | grep -q 'failed 0, offline 0'; then
  echo "devices not done, by reason:"
  "$BIN/embark" rotate status "$ID" --limit 0 --json --data "$D" | python3 -c '
import collections, json, re, sys
d = json.load(sys.stdin)
c = collections.Counter(it["state"] + ": " + re.sub(r"[0-9a-f]{16,}", "X", it.get("reason", "")) for it in d["items"] if it["state"] != "done")
for k, n in c.most_common(5): print("%7d %s" % (n, k))'
fi
echo "CPU during the campaign: server $(awk -v a="$S0" -v b="$S1" 'BEGIN{printf "%.2fs", b-a}'), fleet $(awk -v a="$F0" -v b="$F1" 'BEGIN{printf "%.2fs", b-a}') ($(nproc) cores)"
echo "server peak RSS: $(awk '/VmHWM/{printf "%.1f MB", $2/1024}' /proc/$SERVER/status)"
echo "still connected after the rotation: $(($(connected) - 1)) devices"

kill $FLEET 2>/dev/null || true
wait $FLEET 2>/dev/null || true
kill $SERVER
for _ in $(seq 60); do kill -0 $SERVER 2>/dev/null || break; sleep 0.5; done
if kill -0 $SERVER 2>/dev/null; then
  kill -QUIT $SERVER
  wait $SERVER 2>/dev/null || true
  cp "$WORK/server.log" "${TMPDIR:-/tmp}/rotation-server-stuck.log"
  echo "the server did not stop within 30s of SIGTERM; its goroutines: ${TMPDIR:-/tmp}/rotation-server-stuck.log" >&2
fi
wait $SERVER 2>/dev/null || true
if grep -q 'level=ERROR' "$WORK/server.log"; then
  echo "== server errors"
  grep 'level=ERROR' "$WORK/server.log" | sort | uniq -c | sort -rn | head -5
fi
