// Package broker is Embark's embedded MQTT v5 broker, built on
// github.com/mochi-mqtt/server/v2, plus what Embark needs to use Mosquitto
// instead: a generated configuration ([MosquittoConfig]), a service client
// identity ([LoadOrCreateService]) and a test harness (package brokertest).
//
// Embark itself is an ordinary MQTT client of whichever broker is used; this
// package only decides who may connect and what each client may publish and
// subscribe to.
//
// # Basics
//
// [New] builds a [Broker] from a [Config]; [Broker.Serve] starts it on a
// plain listener the caller made (net.Listen("tcp", "127.0.0.1:0") in tests)
// and applies TLS itself: TLS 1.2 or later, the broker's certificate, and
// tls.RequireAnyClientCert. The TLS layer does not verify client chains; it
// only requires a certificate and proof of possession of its key. On CONNECT
// the broker passes the presented chain to the [Authenticator], which knows
// every trust anchor and the revocation state and returns an [Identity]:
// [KindIDevID] (factory identity, may only enroll), [KindLDevID]
// (Embark-issued, operational) or [KindService] (Embark). The handshake and
// the CONNECT packet must arrive within 10 seconds.
//
// A CONNECT is refused, with a CONNACK reason code and an Info log line
// carrying the reason and the remote address, when the client speaks MQTT
// 3.x (only v5 is accepted), presents no certificate, the Authenticator
// refuses the chain (0x87 "not authorized"; the Authenticator's reason is
// logged, not sent), the client identifier differs from Identity.ID (0x85),
// the device ID is not a single topic level, or the will is not allowed.
//
// The broker keeps per-connection state keyed by mochi's client pointer, so
// a takeover by the same client identifier never clobbers the new
// connection's state. [Broker.Disconnect] drops the live clients of given
// certificate serials; [Broker.Refresh] runs the Authenticator again for a
// device's live clients, applies new zone topics at once and drops clients
// it now refuses. Both close the connections before returning (a client
// that does not read has its socket closed after half a second) and
// suppress the dropped client's will.
//
// # Topics and access rules
//
// Each device has the namespace NS = "embark/v1/<device ID>" (the URN is one
// topic level). The protocol topics are:
//
//	NS/nonce NS/enroll NS/renew NS/state   device → Embark requests
//	NS/voucher                             device → Embark voucher request (IDevID)
//	NS/resp, NS/resp/#                     Embark → device responses
//	NS/cmd                                 Embark → device retained desired state
//
// IDevID clients may publish NS/nonce, NS/enroll and NS/voucher and subscribe to
// NS/resp and NS/resp/#; nothing else. LDevID clients may publish NS/nonce,
// NS/renew and NS/state, subscribe to NS/resp, NS/resp/# and NS/cmd, and
// read and write the topic filters of their zone (Identity.Topics). Zone
// grants never open a protocol topic or anything below one, in any device's
// namespace: "protocol topics win", so a zone topic "embark/v1/<id>/#" does
// not let a device publish to its own cmd or resp. Service clients may read
// and write everything under "embark/v1/", including shared subscriptions
// "$share/<group>/..." of such filters. Nobody may use $SYS; devices may
// use nothing starting with '$'.
//
// A subscription is granted only if every topic the filter can match is
// allowed ([FilterContains]: a grant "#" covers the rest of a topic, a grant
// "+" one level including a requested "+", and a requested "#" is covered
// only by a grant "#" at that level or above). So a device may not subscribe
// to "embark/v1/#" nor to its zone "embark/v1/<id>/#", which includes
// protocol topics it may not read. The ACL is also asked for every delivery,
// so narrowing a zone with Refresh stops messages on existing subscriptions.
//
// Devices may not publish retained messages (PUBACK 0x87 for QoS 1, dropped
// for QoS 0) and the CONNACK tells them so ("retain not available"), along
// with the maximum packet size and "shared subscriptions not available". A
// will must be on a topic the client may publish to, never retained for a
// device, and is dropped if the client's ACL no longer allows it when it
// would be sent.
//
// Sessions end with their connection (the CONNACK answers any session
// expiry request with 0): the ACL allows nothing to a disconnected client,
// so a kept session could only accumulate undeliverable state. Devices
// subscribe again after each CONNECT and get the retained NS/cmd document
// then.
//
// # Capacity
//
// The settings are chosen for 10,000 mostly idle devices. Measured with
// BenchmarkIdleClients (10,000 TLS 1.3 clients in a separate process, 2
// cores): about 42 KiB of resident memory per idle client, 420 MiB in all,
// of which about 20 KiB is heap and 20 KiB goroutine stacks (mochi runs a
// reader and a writer goroutine per client). With mochi's defaults the heap
// is 84 KiB per client, mostly a preallocated 64 KiB write queue that stays
// unresident only while unused. The tuned values: a 256-packet write queue
// and a 1 KiB read buffer per client, a receive maximum of 16 for devices
// and 65535 for service clients, maximum QoS 1, no topic aliases, and
// 16 KiB packets.
//
// # Caveats (mochi 2.7.9)
//
// Found while building this package; each is worked around here:
//
//   - Mochi's flow control towards a client that announces a Receive
//     Maximum stalls: held-back QoS 1 messages are released without being
//     kept in flight, their PUBACKs never return the quota, and the client
//     receives nothing after about twice its Receive Maximum (and what it
//     receives is reordered). The broker disables that quota; messages go
//     to the client's write queue, and when a client stops reading, first
//     its socket and then its queue fill and further messages are dropped
//     and logged at Warn.
//   - The default maximum message expiry (one day) also deletes retained
//     messages older than that, which would lose NS/cmd documents; it is
//     off here.
//   - Wills are published without an ACL check; a hook filters them.
//   - A packet rejected by a publish hook gets no PUBACK; the hook sends it.
//   - The ACL check on PUBLISH sees the topic before topic-alias
//     resolution, so the broker offers no topic aliases and checks the
//     topic again after resolution.
//   - "$share" is matched without regard to case.
//   - Mochi's own listeners read CONNECT without a deadline and stop for
//     good on a temporary accept error; the broker's listener does neither.
//
// # External brokers (Mosquitto)
//
// [MosquittoConfig] and [MosquittoServiceACL] generate a Mosquitto 2.0
// configuration with a device listener (manufacturer roots plus Embark's
// root, client identifier replaced by the certificate CN) and a service
// listener (service CA only), each with its own ACL file: Mosquitto ACL
// entries match user names, and a trusted manufacturer could issue a
// certificate whose CN is the service's name. Tested with Mosquitto 2.0.11:
// %u is substituted inside a topic level; an unauthorised QoS 1 publish is
// answered with PUBACK 0x87 and not delivered; a subscription to a filter
// wider than the ACL is granted and each message is filtered.
//
// An external broker cannot enforce:
//
//   - client identifier = identity: Mosquitto replaces device client
//     identifiers with the CN instead of refusing a mismatch, and client
//     identifiers share one space across listeners, so a device certificate
//     whose CN equals the service's client identifier takes over Embark's
//     connection. The service must use a client identifier no certificate
//     CN can take (not its bare name).
//   - live revocation: there is no Disconnect or Refresh, and the
//     configuration sets no crlfile: Mosquitto 2.0.11 then refuses every
//     client whose issuer has no CRL in that file (tried: with Embark's CRL
//     alone, every IDevID fails the handshake).
//   - zones: the static ACL knows only protocol topics; application topics
//     need hand-written entries.
//   - which manufacturer signed a CN: an IDevID's CN is only a serial
//     number, so any trusted manufacturer's certificate with CN S may enroll
//     for S under every listed manufacturer, and a manufacturer CA can issue
//     a certificate whose CN is another device's URN and so act in that
//     device's LDevID namespace (read its responses and commands).
//   - retained messages and wills from devices on their own topics.
//
// Embark enforces the rest itself: every device request is a COSE_Sign1
// signed by the device's current key and checked against the registry
// (identity, revocation, freshness through a server nonce), every response
// and command is signed by Embark and bound to the request, and a response
// topic must lie in the requesting device's namespace.
//
// # Service identity
//
// [LoadOrCreateService] keeps Embark's MQTT client identity in a directory:
// a self-signed P-256 service CA (10 years) and a client certificate (1
// year, renewed when less than 30 days are left). Brokers trust that CA for
// service clients only.
package broker
