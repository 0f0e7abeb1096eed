// Package device holds Embark's domain types: devices, their certificates
// and the state machine that moves a device through its life.
//
// # States
//
// A device is created only from a verified provenance manifest, in state
// [Expected]. Enrollment moves it to [Onboarded] (or [Quarantined] when policy
// restricts it to a quarantine zone); an operator's approval is awaited in
// [Held]. [Denied], [Revoked] and [Decommissioned] refuse every credential
// request until an operator re-onboards the device.
//
// The package is pure: no I/O, no clock. Callers pass the time in.
package device
