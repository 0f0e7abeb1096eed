// Package campaign runs rotation campaigns: asking a set of devices (one
// device, a model, a zone or the whole fleet) to renew with a new key, at a
// bounded rate, and following each device until its new certificate is
// confirmed in use and the old one retired.
//
// # Basics
//
// [Start] selects the devices and commits the campaign and one item per
// device in the registry (opaque records, kinds [Kind] and [ItemKind]),
// with an audit entry. Nothing is asked yet: a [Runner], started by the
// server, picks up every campaign that is not finished — after a restart
// too — and asks the devices through their desired state (package
// desired: Rotate with the campaign's ID), at most Rate devices per second.
// The transports tell the devices; the campaign knows none of them.
//
// Each device's item goes through these states:
//
//   - queued: not asked yet.
//   - pending: asked, not done.
//   - done: the device renewed with a new key after the ask and reported
//     the rotation applied; the runner then confirms the new certificate
//     in use through the core, which supersedes the old one (retired).
//   - failed: the device cannot complete (revoked, denied, held, it
//     reported the rotation applied without a new key) or it renewed but
//     did not report within the campaign's timeout.
//   - offline: the device neither renewed nor reported within the
//     timeout.
//   - cancelled: the campaign was cancelled before the device was done;
//     a pending request is withdrawn (a new generation without rotate).
//
// Failed and offline devices are still followed: one that comes back and
// completes moves to done, also after the campaign finished. A campaign
// is finished when no device is queued or pending.
//
// # Caveats
//
// "Confirmed in use" rests on the device's own report: the transports do
// not tell the core which certificate authenticated a connection (only a
// renewal marks a certificate in use). A device reports a rotation applied
// once it holds the new certificate — over MQTT signed with it, after it
// reconnected with it.
package campaign
