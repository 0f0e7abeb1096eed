#!/usr/bin/env bash
# Voucher benchmark: onboarding with the voucher round trip to a local MASA
# against onboarding with the Embark root given out of band, same run.
#
#   test/bench/voucher.sh [DEVICES]      (default 4000)
#
# `firmware-sim fleet --mode compare` enrolls half of the devices with the
# root given out of band (--ca) and the other half zero-touch: voucher
# request over plain CoAP, the registrar's round trip to the MASA over TLS
# 1.3 X25519MLKEM768, voucher verified against the firmware anchor, then a
# DTLS session verified against the pinned CA and the enrollment. Every
# device does full handshakes; the MASA, Embark and the devices share the
# machine.
set -euo pipefail
N=${1:-4000}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$ROOT/bin
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
cd "$ROOT"
if [ "${NOBUILD:-}" != 1 ]; then
  go build -o "$BIN/embark" ./cmd/embark
  go build -o "$BIN/firmware-sim" ./firmware-sim
fi
D=$WORK/data
"$BIN/embark" init --data "$D" >/dev/null
"$BIN/firmware-sim" factory --count "$N" --owner-key "$D/owner.pub" --out "$WORK/factory" --quiet >/dev/null
"$BIN/firmware-sim" masa --factory "$WORK/factory" --listen 127.0.0.1:28444 >"$WORK/masa.log" 2>&1 &
"$BIN/embark" serve --data "$D" --udp 127.0.0.1:25684 --tcp off --brski 127.0.0.1:25683 --mqtt off --https off \
  --log-level warn >"$WORK/embark.log" 2>&1 &
for _ in $(seq 100); do [ -S "$D/admin.sock" ] && break; sleep 0.1; done
"$BIN/embark" manufacturer trust "$WORK/factory/trust.json" --data "$D" >/dev/null
"$BIN/embark" provenance import "$WORK/factory/manifest.json" --data "$D" >/dev/null
for _ in $(seq 20); do
  "$BIN/embark" manufacturer masa acme https://127.0.0.1:28444 --data "$D" >/dev/null 2>&1 && break
  sleep 0.5
done
"$BIN/firmware-sim" fleet --factory "$WORK/factory" --server coaps://127.0.0.1:25684 --voucher coap://127.0.0.1:25683 \
  --ca "$D/ca/root.crt" --mode compare --quiet
