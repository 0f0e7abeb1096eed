// Package cabackup seals the embedded CA's keys and certificates for
// backup, to a recipient's X-Wing public key, with HPKE (RFC 9180) from Go's
// crypto/hpke: the hybrid post-quantum KEM X-Wing (MLKEM768-X25519, which
// interoperates with circl's kem/xwing), HKDF-SHA256 and AES-256-GCM, in base
// mode. A backup is useless without the recipient's private key, which
// should live offline; only the public key needs to be on the server.
//
// # Basics
//
// [WriteKeyPair] makes a recipient key pair (NAME.key, 0600, and NAME.pub).
// [ReadCA] reads a CA directory (root.crt, root.key if present,
// intermediate.crt, intermediate.key) and checks that it forms a CA;
// [Seal] seals it; [Restore] opens a backup into the CA directory of a fresh
// data directory, refusing to overwrite any CA file, and checks that the
// result loads with pki.Load. [Open] only decrypts and checks.
//
// # Recipient keys
//
// PEM blocks "EMBARK X-WING PUBLIC KEY" (the 1216-byte X-Wing encapsulation
// key) and "EMBARK X-WING PRIVATE KEY" (the 32-byte X-Wing seed), each with
// the header "KEM: X-Wing (MLKEM768-X25519)". A key's KeyID is the
// lower-case hex SHA-256 of its public key encoding.
//
// # File format (version 1)
//
// All integers are big-endian.
//
//	offset     size  field
//	0          16    magic "EMBARK-CA-BACKUP" (ASCII)
//	16         1     format version: 1
//	17         2     HPKE KEM id: 0x647a (MLKEM768-X25519, X-Wing)
//	19         2     HPKE KDF id: 0x0001 (HKDF-SHA256)
//	21         2     HPKE AEAD id: 0x0002 (AES-256-GCM)
//	23         32    recipient KeyID (SHA-256 of the recipient's public key)
//	55         2     Ne, length of the encapsulated key (1120 for X-Wing)
//	57         Ne    encapsulated key (HPKE enc)
//	57+Ne      4     Nc, length of the ciphertext
//	61+Ne      Nc    ciphertext: AES-256-GCM, 16-byte tag last
//
// The HPKE context is set up in base mode with info = "Embark sealed CA
// backup, format 1" ([Info]); the one Seal's additional data is every byte
// before the ciphertext (offset 0 to 61+Ne), so no header byte can change
// without the open failing. The plaintext is deterministic CBOR:
//
//	{1: sealed at (unix seconds), 2: SHA-256 of the root certificate (DER),
//	 3: [{1: file name, 2: file content}, ...]}
//
// with the files of [Files] that exist, in that order. A reader refuses
// other versions and algorithms ([ErrUnsupported]), a backup sealed to
// another key ([ErrWrongKey], decided from the clear KeyID before any
// decryption), and one that does not decrypt ([ErrOpen]): a modified byte
// anywhere fails. Nothing is written before all of that has passed.
package cabackup
