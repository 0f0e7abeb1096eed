// Package e2e holds Embark's end-to-end tests: the real server, in process,
// on loopback listeners bound to port 0, driven by firmware-sim devices over
// real DTLS and TLS handshakes.
package e2e
