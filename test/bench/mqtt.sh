#!/usr/bin/env bash
# MQTT benchmark: the real server (embedded broker) and `firmware-sim fleet
# --transport mqtt` on this machine.
#
#   test/bench/mqtt.sh [DEVICES]      (default 10000)
#
# Pass 1: the ceiling — every device makes a full TLS handshake to the
#         broker with its IDevID and publishes once (QoS 1, PUBACK awaited);
#         then enrollment — TLS connect, nonce, signed request, COSE and
#         chain verification, issuance, durable commit, signed answer
#         checked by the device; then every device connects again with its
#         LDevID and stays connected, and the server's RSS is read with all
#         of them connected.
# Pass 2: a fresh registry, enrollment offered at half the rate of pass 1,
#         for latency at half load.
# Every device does a full handshake for every connection; no resumption.
set -euo pipefail
N=${1:-10000}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$ROOT/bin
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
cd "$ROOT"
go build -o "$BIN/embark" ./cmd/embark
go build -o "$BIN/firmware-sim" ./firmware-sim
"$BIN/firmware-sim" factory --count "$N" --out "$WORK/factory" --quiet >/dev/null
MQTT=127.0.0.1:28883

start_server() { # $1 data dir
  "$BIN/embark" serve --data "$1" --udp 127.0.0.1:25684 --tcp off --mqtt "$MQTT" --https off \
    --log-level warn >"$1.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 100); do [ -S "$1/admin.sock" ] && break; sleep 0.1; done
  "$BIN/embark" manufacturer trust "$WORK/factory/trust.json" --data "$1" >/dev/null
  "$BIN/embark" provenance import "$WORK/factory/manifest.json" --data "$1" >/dev/null
}
rate_of() { awk -v p="$1" '$0 ~ "^"p":" {getline; for(i=1;i<=NF;i++) if($i ~ /\/s,$/){sub("/s,","",$i); print $i}}' "$2"; }
fleet() { "$BIN/firmware-sim" fleet --transport mqtt --factory "$WORK/factory" --server "mqtts://$MQTT" --quiet "$@"; }

echo "== pass 1: $N devices over MQTT (embedded broker): connect ceiling, enroll, stay connected"
start_server "$WORK/d1"
fleet --ca "$WORK/d1/ca/root.crt" --mode crts --concurrency 128 | tee "$WORK/crts.txt"
fleet --ca "$WORK/d1/ca/root.crt" --mode enroll --concurrency 128 --stay 40s >"$WORK/enroll.txt" 2>&1 &
FLEET=$!
# RSS once every device is connected with its LDevID.
PEAK=0
for _ in $(seq 600); do
  sleep 0.5
  C=$("$BIN/embark" status --data "$WORK/d1" 2>/dev/null | awk -F'[:,]' '/"mqtt_clients"/{gsub(/ /,"",$2); print $2}')
  RSS=$(awk '/VmRSS/{print $2}' /proc/$SERVER/status)
  [ "${RSS:-0}" -gt "$PEAK" ] && PEAK=$RSS
  if [ "${C:-0}" -ge "$N" ]; then
    sleep 2
    RSS=$(awk '/VmRSS/{print $2}' /proc/$SERVER/status)
    echo "server RSS with $C devices connected: $(awk -v r="$RSS" 'BEGIN{printf "%.1f MB", r/1024}')"
    break
  fi
  kill -0 $FLEET 2>/dev/null || break
done
wait $FLEET || true
cat "$WORK/enroll.txt"
echo "server peak RSS: $(awk '/VmHWM/{printf "%.1f MB", $2/1024}' /proc/$SERVER/status)"
CEIL=$(rate_of connect "$WORK/crts.txt")
RATE=$(rate_of enroll "$WORK/enroll.txt")
echo "enroll / connect ceiling: $RATE / $CEIL = $(awk -v a="$RATE" -v b="$CEIL" 'BEGIN{printf "%.2f", a/b}')"
kill $SERVER; wait $SERVER 2>/dev/null || true

HALF=$(awk -v r="$RATE" 'BEGIN{printf "%d", r/2}')
M=$(( N < 5000 ? N : 5000 ))
echo "== pass 2: $M devices offered at $HALF/s (half the enrollment rate), fresh registry"
start_server "$WORK/d2"
fleet --ca "$WORK/d2/ca/root.crt" --count "$M" --rate "$HALF" --concurrency 256
kill $SERVER; wait $SERVER 2>/dev/null || true
