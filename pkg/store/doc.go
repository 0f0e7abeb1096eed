// Package store defines the registry Embark keeps: devices, their
// certificates, trusted manufacturers and the audit log.
//
// # Basics
//
// A [Store] runs functions in transactions: [Store.View] for reads,
// [Store.Update] for writes. Writes are serializable and durable when Update
// returns nil: a certificate is committed before it leaves the server.
// Device records carry a revision, and [Tx.PutDevice] is a compare-and-swap
// on it, which maps onto etcd's transactions as well as onto bbolt's single
// writer.
//
// # Caveats
//
// Update may run its function more than once (group commit retries a batch
// without a failing member), so the function must only read and write
// through the Tx: never sign, send or log inside it. Values returned by a
// Reader are copies and may be kept after the transaction.
//
// Backends live in sub-packages (bolt); package storetest is the conformance
// suite every backend passes.
package store
