// Package fleet runs many simulated devices against an Embark server over
// EST-coaps or Embark's MQTT v5 API, and measures what they see.
//
// # Basics
//
// [Run] reads the devices a factory run produced (devices.jsonl), prepares
// every device's LDevID key pair and CSR before the clock starts, as a real
// device does on its own CPU, fetches the CA certificates once, and then
// runs one or more phases with a bounded number of devices at a time:
//
//   - "crts": each device opens a session with its IDevID and fetches the CA
//     certificates; nothing is issued. This is the ceiling: handshake and one
//     request, without the work of enrollment.
//   - "enroll": each device opens a session with its IDevID and POSTs its CSR
//     to sen.
//   - "renew" (with [Options].Renew): each enrolled device opens a session
//     with its LDevID and POSTs a CSR for a new key to sren.
//
// Every operation is a fresh connection with a full handshake, one request
// and a close. A device verifies what it gets: the certificate carries its
// CSR key and chains to the Embark root given out of band. Verification
// runs inside the phase's clock, as a real device's would.
//
// # MQTT
//
// With [Options].Transport "mqtt" the devices speak Embark's MQTT v5 API
// through a broker (package mqttclient): the device URN (manufacturer from
// the factory's trust bundle, serial) is the client id; every request asks
// a nonce first and is signed with the device's key; every answer must be
// signed by Embark's responder under the Embark root. The phases become:
//
//   - "connect" (mode crts): a TLS connect with the IDevID and one QoS 1
//     publish to the device's nonce topic without a response topic; the
//     ceiling of the broker's TLS connects.
//   - "enroll": connect with the IDevID, nonce, signed enroll request; the
//     certificate must also name the device (URI SAN), and its chain comes
//     with the answer (each intermediate is verified against the root once).
//   - "renew": connect with the LDevID, nonce, signed renew request for a
//     new key.
//   - "stay" (with [Options].Stay): every enrolled device stays connected
//     with its LDevID, subscribed to its command topic, and follows what
//     Embark publishes there: each generation once, in order ("rotate":
//     renew with a new key, reconnect with it; "revoked": forget the LDevID
//     and stop; a zone: remember it), then reports it on its state topic.
//     Commands that do not verify (a forged "revoked" from anyone but
//     Embark) are ignored and counted. Devices that lose their connection
//     reconnect with backoff while the stay lasts. The report counts the
//     devices connected at the end, the commands applied, the rotations,
//     the revocations, the commands ignored and the reconnections.
//
// Over CoAP, "stay" (with [Options].Stay) keeps a DTLS or TLS session per
// device with its LDevID, observes Embark's status resource
// (/embark/status, RFC 7641) and follows each new generation the same way:
// "rotate" renews at sren with a new key over the session, then opens a
// new session with the new LDevID; each generation is reported applied
// with a POST to the resource. A final notification "revoked" (Embark
// cutting the session of a revoked certificate) stops the device too.
// Sessions are pinged every 30 s so that they do not idle out. The report
// has the same counts (nothing is ever ignored: the session authenticates
// Embark).
//
// # Zero touch
//
// Without [Options].RootFile (over CoAP) the devices are factory-fresh:
// they know no Embark root, only the voucher anchors of the factory's
// firmware image. The enrollment phase becomes "zero-touch": each device
// asks for a voucher with a fresh nonce, signed with its IDevID, over plain
// CoAP ([Options].VoucherTarget), verifies it (serial, nonce, signature,
// validity with the simulator's clock), opens a DTLS/TLS session whose
// server must chain to the domain the voucher pins (a server that does not
// fails the handshake: "server_not_pinned"), reports voucher status (/vs),
// enrolls on that session,
// checks its LDevID against the verified chain and reports enrollment
// status (/es). A voucher the device refuses is final, with a reason such
// as "voucher_wrong_nonce" or "server_not_pinned". The later phases trust
// the root the devices pinned. Mode "both" runs the /crts ceiling after the
// zero-touch pass; mode "compare" (with a root) enrolls the first half of
// the devices with it and the second half zero-touch, and reports the
// ratio. [Options].AllowNonceless accepts prefetched nonceless vouchers.
//
// # Retries
//
// 5.03 Service Unavailable ("held", "overloaded") is answered by resending
// the same request after Max-Age plus jitter (over MQTT: a "retry" answer,
// after its RetryAfter plus jitter, with a fresh nonce); transport failures
// (timeouts, lost handshakes) by resending after a jittered exponential
// backoff. Other
// errors are final. [Options].Loss makes a device drop a fraction of the
// answers it receives and resend the same request: the server must answer
// with the certificate it already issued, which the device checks.
//
// # Figures
//
// A [Report] per phase gives the devices, the successes, the failures by
// reason code, throughput and latency percentiles. A device's latency runs
// from its start (its scheduled start when [Options].Rate paces the load)
// to its final answer, handshakes, retries and waits included.
package fleet
