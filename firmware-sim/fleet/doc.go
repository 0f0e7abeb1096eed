// Package fleet runs many simulated devices against an Embark server over
// EST-coaps and measures what they see.
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
// runs after the phase's clock has stopped.
//
// # Retries
//
// 5.03 Service Unavailable ("held", "overloaded") is answered by resending
// the same request after Max-Age plus jitter; transport failures (timeouts,
// lost handshakes) by resending after a jittered exponential backoff. Other
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
