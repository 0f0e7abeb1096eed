// Package factory is the simulated manufacturer of firmware-sim: it mints a
// manufacturer CA, devices with their own keys and IDevIDs, and the signed
// provenance manifest that lists them, as files that the operator side
// (embark) and the simulated fleet read.
//
// # Output directory
//
// [Run] writes into Options.Out (created with mode 0700):
//
//	root.pem               manufacturer root CA certificate (ECDSA P-256, 20 years)
//	root-key.pem           its PKCS#8 private key (0600)
//	intermediate.pem       the "IDevID CA" that issues device certificates
//	intermediate-key.pem   its PKCS#8 private key (0600)
//	manifest-signer.key    hybrid (ECDSA P-256 + ML-DSA-65) manifest signing key (0600)
//	manifest-signer.pub    its public key
//	trust.json             the trust bundle for operators (package manifest)
//	manifest.json          the signed manifest, a DSSE envelope (package manifest)
//	devices.jsonl          one device per line (0600): {"serial", "key", "cert"}
//	masa-voucher.pem       the voucher-signing certificate (issued by the root)
//	masa-voucher-key.pem   its ECDSA P-256 private key (0600), for the MASA
//	firmware.json          the firmware image: the voucher anchors every device trusts
//
// In devices.jsonl, "key" is the device's PKCS#8 PEM private key and "cert"
// its IDevID PEM followed by the intermediate's. [ReadDevices] and
// [ScanDevices] read it back; [WriteDeviceFiles] writes one device's
// cert.pem and key.pem for tools such as libcoap's coap-client.
//
// # Devices
//
// Each device gets its own ECDSA P-256 key and an IDevID issued by the
// intermediate: subject CN and serialNumber = the device serial, O = the
// manufacturer; key usage digitalSignature, extended key usage clientAuth; a
// random 128-bit certificate serial; valid from one hour before the run to
// 99991231235959Z (IEEE 802.1AR "no well-defined expiration"). The last
// Options.ExpiredIDevIDs devices of a run get IDevIDs that expired a day
// before it instead, for tests of expiry policy. Keys and certificates are
// made in parallel (Options.Workers).
//
// # Runs on an existing directory
//
// A run on a directory that already holds a manufacturer keeps its CA and
// signing key, mints Options.Count more devices (numbered after the highest
// existing serial of the same prefix), and writes the next manifest
// revision, which lists the earlier devices as they were and the new ones.
// Files are replaced atomically, manifest.json last. A directory whose
// devices.jsonl and manifest.json disagree is refused ([ErrInconsistent]).
//
// # Memory
//
// Nothing grows with the number of devices but a compact set of serial
// numbers and keys: device lines go to devices.jsonl as they are minted, and
// the manifest is built with a manifest.Writer in a temporary file in the
// output directory, then signed and written out (about 35 MB of memory for
// 100,000 devices; the signed manifest is about 64 MB).
package factory
