// Package audit defines Embark's audit entries and their hash chain.
//
// Every entry carries the SHA-256 of its predecessor, so that removing,
// changing or reordering entries breaks the chain at a point [VerifyChain]
// names. Stores persist entries through [Seal], which fills in the sequence
// number and both hashes.
package audit
