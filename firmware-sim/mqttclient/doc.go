// Package mqttclient is the device side of Embark's MQTT v5 transport: a
// simulated device's connection to the broker, over which it asks for
// nonces, enrolls, renews and follows the commands Embark publishes for it.
//
// # Basics
//
// [Dial] opens a TLS connection to the broker with a full handshake (no
// session tickets, no resumption), presenting the device's certificate (the
// IDevID to enroll, the LDevID afterwards) and authenticating the broker
// with the Embark root. It sends CONNECT with the device URN as client id
// and a clean start, and subscribes with QoS 1 to the device's response
// topic and, with [Config].Commands, to its command topic (see package
// mqttwire for the topic layout).
//
// A request is a QoS 1 publish to the device's request topic with an MQTT
// v5 response topic and fresh random correlation data. The connection keeps
// its own map from correlation data to a buffered channel and routes every
// answer there from the client's publish callback, so an answer that comes
// back before the PUBACK is never lost.
//
// # What the device trusts
//
// Everything Embark sends is a COSE_Sign1 that must verify against the
// Embark root and carry the responder identity ([mqttwire.Verifier]).
// Responses must also echo the correlation data (in the packet and in the
// signed payload), name this device and echo the request's nonce. Commands
// must name this device. Anything else is ignored: counted in [Stats] and
// logged at debug level, never acted on. A forged "revoked" command, even
// one signed by another device's certificate under the same root, changes
// nothing.
//
// # Requests
//
// [Conn.Enroll], [Conn.Renew] and [Conn.ReportState] each ask a fresh nonce
// first ([Conn.Nonce]) and sign the request with the connection's key and
// chain. An answer refused because of the nonce ("replayed", "stale_nonce",
// "unknown_nonce") is resent at once with a fresh nonce (the server is
// idempotent for the same CSR key). Other refusals, and "retry" answers,
// come back as a [*StatusError]; a retry answer says after how long to ask
// again, and the caller resends later (with a fresh nonce, which Enroll asks
// for by itself).
//
// [Conn.PublishQoS1] is a bare publish that waits for the PUBACK: with
// [Config].PublishOnly the connection subscribes to nothing, which is the
// ceiling measurement of a TLS connect and one publish through the broker.
package mqttclient
