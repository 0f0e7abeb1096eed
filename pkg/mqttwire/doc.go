// Package mqttwire is the wire format of Embark's MQTT v5 transport: the
// topics, and the signed CBOR messages that travel on them. Server and
// simulated devices share it; it holds no policy.
//
// # Why every message is signed
//
// A broker hides the publisher's TLS identity from subscribers, and an
// external broker may be run by someone else. So every request a device
// sends is self-authenticating: a COSE_Sign1 (RFC 9052, tag 18) signed by
// the device's current key, carrying its certificate chain (x5chain, RFC
// 9360) in the protected header. Everything Embark sends — responses and
// commands — is a COSE_Sign1 signed by Embark's responder certificate
// (URI SAN [ResponderURI]), which devices check against the Embark root
// they trust. A message of one kind cannot pass as another: the protected
// content type names the kind ([TypeRequest], [TypeResponse],
// [TypeCommand]).
//
// # Topics
//
// Each device has its own namespace, "embark/v1/<device URN>/":
//
//	<ns>/nonce    device → Embark   ask for a nonce (empty payload)
//	<ns>/enroll   device → Embark   Request{Op: "enroll"}, signed with the IDevID key
//	<ns>/renew    device → Embark   Request{Op: "renew"}, signed with the LDevID key
//	<ns>/state    device → Embark   Request{Op: "state"}: the command generation applied
//	<ns>/voucher  device → Embark   a voucher request (package voucher), signed with the IDevID;
//	                                 the Response carries the voucher
//	<ns>/resp[/…] Embark → device   Response, to the MQTT v5 response topic of the request
//	<ns>/cmd      Embark → device   Command, retained: the desired state of the device
//
// Requests carry an MQTT v5 response topic, which must lie under
// "<ns>/resp", and correlation data, which the signed response echoes.
//
// # Freshness
//
// Devices need no clock. A device asks for a nonce, signs it into its
// request, and Embark accepts each nonce once, before it expires. Responses
// echo the nonce and the correlation data; commands carry a generation
// number the device only moves forward, and every message Embark signs
// carries a sequence number that grows.
package mqttwire
