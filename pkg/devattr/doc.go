// Package devattr is the wire format of what a device reports about itself
// when it asks for a certificate: its firmware version and the SHA-256 of
// its firmware image.
//
// Over EST-coaps they travel in the CSR, as extensions of its
// extensionRequest attribute (PKCS#9), with the firmware package
// attributes of RFC 4108:
//
//	id-aa-firmwarePackageID             1.2.840.113549.1.9.16.2.35
//	  FirmwarePackageIdentifier ::= SEQUENCE { name legacy OCTET STRING }   -- the version string
//	id-aa-firmwarePackageMessageDigest  1.2.840.113549.1.9.16.2.41
//	  SEQUENCE { algorithm AlgorithmIdentifier (id-sha256), msgDigest OCTET STRING }
//
// Both are optional and never copied into the issued certificate. With
// openssl (version "1.4.2"; DER in hex):
//
//	openssl req -new -key k.pem -subj /CN=x \
//	  -addext "1.2.840.113549.1.9.16.2.35=DER:30070405312e342e32" \
//	  -addext "1.2.840.113549.1.9.16.2.41=DER:$(DigestDER <sha256>)"
//
// The server lists both identifiers in its CSR attributes (/att).
package devattr
