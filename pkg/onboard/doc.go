// Package onboard is Embark's transport-agnostic core: it enrolls devices
// that prove their factory identity and renews the operational certificates
// (LDevIDs) it issued.
//
// # Flow
//
// [Service.Enroll] authenticates the presented IDevID chain against the
// trusted manufacturers (package idevid), finds the device by its IDevID key
// in the registry (created only from verified manifests), asks the [Decider]
// (the policy), issues an LDevID through the CA (package pki), and commits
// device, certificate and audit entry in one store transaction before it
// answers. [Service.Renew] does the same for a device that authenticates
// with its current LDevID.
//
// Transports (EST-coaps, MQTT, HTTPS) are thin adapters: they pass the peer
// chain and the request body in, and map the typed [*Error] and its
// [Reason] to their own status codes. Nothing here speaks CoAP or MQTT.
//
// # Enrollment semantics
//
//   - A retry with the same CSR key after a lost response gets the
//     certificate already issued (idempotency key: device + CSR key).
//   - A new key while the current LDevID was never seen in use (reboot
//     mid-enrollment) gets a new LDevID; the unused one is superseded.
//   - A new key while the current LDevID is in use is a re-onboarding
//     (factory reset or clone): the device is held for an operator.
//   - An IDevID whose serial is known under another key is a clone or a
//     counterfeit: refused, audited, the device held.
//   - An IDevID key in no manifest is refused and audited; nothing is created.
//   - A renewal may present the previous LDevID until its successor has been
//     seen in use; older certificates never renew.
package onboard
