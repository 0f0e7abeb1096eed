#!/usr/bin/env bash
# MQTT benchmark: the real server and `firmware-sim fleet --transport mqtt`
# on this machine.
#
#   test/bench/mqtt.sh [DEVICES] [embedded|mosquitto]     (defaults: 10000 embedded)
#
# Pass 1: the ceiling — every device makes a full TLS handshake to the
#         broker with its IDevID and publishes once (QoS 1, PUBACK awaited);
#         then enrollment — TLS connect, nonce, signed request, COSE and
#         chain verification, issuance, durable commit, signed answer
#         checked by the device; then every device connects again with its
#         LDevID and stays connected, and the resident memory of the broker
#         and Embark is read with all of them connected.
# Pass 2: a fresh registry, enrollment offered at half the rate of pass 1,
#         for latency at half load.
# Every device does a full handshake for every connection; no resumption.
# With "mosquitto", Debian's Mosquitto is the broker (configured by
# `embark mqtt mosquitto-config`) and Embark connects to it as a client.
set -euo pipefail
N=${1:-10000}
BROKER=${2:-embedded}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$ROOT/bin
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
cd "$ROOT"
if [ "${NOBUILD:-}" != 1 ]; then
  go build -o "$BIN/embark" ./cmd/embark
  go build -o "$BIN/firmware-sim" ./firmware-sim
fi
"$BIN/firmware-sim" factory --count "$N" --out "$WORK/factory" --quiet >/dev/null
PORT=28883
MOSQ=""

start_server() { # $1 data dir
  "$BIN/embark" init --data "$1" >/dev/null
  local mqtt="127.0.0.1:$PORT"
  if [ "$BROKER" = mosquitto ]; then
    "$BIN/embark" mqtt mosquitto-config --data "$1" --out "$1.mosq" --trust "$WORK/factory/trust.json" \
      --port "$PORT" --service-port $((PORT + 1)) >/dev/null
    /usr/sbin/mosquitto -c "$1.mosq/mosquitto.conf" >"$1.mosq.log" 2>&1 &
    MOSQ=$!
    python3 - "$1/embark.json" $((PORT + 1)) <<'PY'
import json, sys
p, port = sys.argv[1], sys.argv[2]
c = json.load(open(p))
c["mqtt"]["listen"], c["mqtt"]["broker"] = "", "mqtts://127.0.0.1:" + port
json.dump(c, open(p, "w"), indent=2)
PY
    mqtt=off
    sleep 0.5
  fi
  "$BIN/embark" serve --data "$1" --udp 127.0.0.1:25684 --tcp off --mqtt "$mqtt" --https off \
    --log-level warn >"$1.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 100); do [ -S "$1/admin.sock" ] && break; sleep 0.1; done
  "$BIN/embark" manufacturer trust "$WORK/factory/trust.json" --data "$1" >/dev/null
  "$BIN/embark" provenance import "$WORK/factory/manifest.json" --data "$1" >/dev/null
}
stop_server() {
  kill $SERVER; wait $SERVER 2>/dev/null || true
  if [ -n "$MOSQ" ]; then kill $MOSQ; wait $MOSQ 2>/dev/null || true; MOSQ=""; fi
}
rss_kb() { # resident memory of Embark plus the external broker, kB
  local r; r=$(awk '/VmRSS/{print $2}' /proc/$SERVER/status)
  if [ -n "$MOSQ" ]; then r=$((r + $(awk '/VmRSS/{print $2}' /proc/$MOSQ/status))); fi
  echo "$r"
}
connected() { ss -Htn state established "( sport = :$PORT )" | wc -l; }
rate_of() { awk -v p="$1" '$0 ~ "^"p":" {getline; for(i=1;i<=NF;i++) if($i ~ /\/s,$/){sub("/s,","",$i); print $i}}' "$2"; }
fleet() { "$BIN/firmware-sim" fleet --transport mqtt --factory "$WORK/factory" --server "mqtts://127.0.0.1:$PORT" --quiet "$@"; }

echo "== pass 1: $N devices over MQTT ($BROKER broker): connect ceiling, enroll, stay connected"
start_server "$WORK/d1"
fleet --ca "$WORK/d1/ca/root.crt" --mode crts --concurrency 128 | tee "$WORK/crts.txt"
fleet --ca "$WORK/d1/ca/root.crt" --mode enroll --concurrency 128 --stay 60s >"$WORK/enroll.txt" 2>&1 &
FLEET=$!
for _ in $(seq 1200); do
  sleep 0.5
  C=$(connected)
  if [ "$C" -ge "$N" ]; then
    sleep 3
    echo "RSS (Embark$([ "$BROKER" = mosquitto ] && echo " + Mosquitto")) with $(connected) devices connected: $(awk -v r="$(rss_kb)" 'BEGIN{printf "%.1f MB", r/1024}')"
    break
  fi
  kill -0 $FLEET 2>/dev/null || break
done
wait $FLEET || true
cat "$WORK/enroll.txt"
CEIL=$(rate_of connect "$WORK/crts.txt")
RATE=$(rate_of enroll "$WORK/enroll.txt")
echo "enroll / connect ceiling: $RATE / $CEIL = $(awk -v a="$RATE" -v b="$CEIL" 'BEGIN{printf "%.2f", a/b}')"
stop_server

HALF=$(awk -v r="$RATE" 'BEGIN{printf "%d", r/2}')
M=$(( N < 5000 ? N : 5000 ))
echo "== pass 2: $M devices offered at $HALF/s (half the enrollment rate), fresh registry"
start_server "$WORK/d2"
fleet --ca "$WORK/d2/ca/root.crt" --count "$M" --rate "$HALF" --concurrency 256
stop_server
