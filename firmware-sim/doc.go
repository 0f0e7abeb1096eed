// Command firmware-sim plays the device side of Embark: a manufacturer that
// mints devices, and a fleet of simulated devices that onboard over the
// public wire protocols only.
//
// Usage:
//
//	firmware-sim factory --count N --out DIR [--manufacturer acme --owner example-operator --owner-key FILE --expired N --revision N]
//	firmware-sim masa --factory DIR [--listen 127.0.0.1:8444 --owner-key NAME=FILE --max-nonceless 720h --log FILE]
//	firmware-sim fleet --factory DIR --server coaps://127.0.0.1:5684 [--ca FILE --count N --concurrency 64
//	                   --mode enroll|crts|both|compare --renew --allow-nonceless --rate R --loss F --state FILE --cpuprofile FILE]
//	firmware-sim fleet --transport mqtt --factory DIR --server mqtts://127.0.0.1:8883 --ca FILE [same flags
//	                   and --stay DURATION]
//	firmware-sim version
//
// factory writes a manufacturer CA, N devices with their IDevIDs and a
// signed provenance manifest into DIR (see package factory). fleet runs the
// devices of DIR against an Embark server and prints a report per phase
// (see package fleet). The transport is EST-coaps (--transport coap, the
// default; coaps:// for DTLS, coaps+tcp:// for TLS) or Embark's MQTT v5 API
// through a broker (--transport mqtt, mqtts://, see package mqttclient);
// with mqtt, --stay keeps the enrolled devices connected and following
// Embark's commands for a while. The server (and over MQTT every message
// Embark signs) is authenticated with the Embark root in --ca, always.
// Without --ca (CoAP), devices onboard zero-touch: each asks for a voucher
// over plain CoAP (--voucher, default port 5683 on the --server host; the
// request and the voucher are signed), verifies it against the anchor of
// its firmware image, and opens a DTLS/TLS session verified against the
// root the voucher pins to enroll. masa serves the manufacturer's voucher service
// for the factory's devices over HTTPS (TLS 1.3, X25519MLKEM768 only; see
// package masa).
//
// Exit codes: 0 all went well, 1 a device failed or the run could not be
// completed, 2 the command line was wrong.
package main
