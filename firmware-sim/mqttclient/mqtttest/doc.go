// Package mqtttest provides an MQTT v5 broker with a small Embark
// responder, and a throw-away PKI, for tests of the device side of
// Embark's MQTT transport. It is test support: product code never imports
// it.
//
// [Start] runs a mochi broker on a loopback TLS listener that requires a
// client certificate (any topic is allowed to anyone: the messages
// authenticate themselves), and a responder that plays Embark: a paho
// client, authenticated with a certificate that carries
// mqttwire.ResponderURI, subscribed to the request topics of every device.
// It hands out nonces, enrolls and renews CSRs idempotently (a resent CSR
// key gets the certificate already issued, with the device URN as URI
// SAN), records the command generations devices report, and signs every
// answer. Options make it hold the first requests ("retry"), refuse them,
// or tamper with its answers, so that a client's reaction can be tested.
// It is not Embark's server and makes no policy decisions.
package mqtttest
