package broker

import (
	"crypto/x509"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// hook is the broker's mochi hook: authentication on CONNECT, ACLs, the
// retained-publish ban, per-client CONNACK properties and will filtering.
type hook struct {
	mqtt.HookBase
	b *Broker

	dropped     atomic.Int64 // messages mochi dropped because a write queue was full
	lastDropLog atomic.Int64 // unix nanoseconds
}

func (h *hook) ID() string { return "embark-broker" }

func (h *hook) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnSessionEstablished, mqtt.OnDisconnect,
		mqtt.OnACLCheck, mqtt.OnPublish, mqtt.OnPacketEncode, mqtt.OnWill, mqtt.OnPublishDropped:
		return true
	}
	return false
}

// OnConnect authenticates the client and registers its session. Mochi has
// already refused protocol versions below 5. A refusal is answered here with
// a CONNACK carrying a precise reason code (mochi's own refusal from
// OnConnectAuthenticate would always say "bad user name or password").
func (h *hook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	c, ok := cl.Net.Conn.(*conn)
	if !ok {
		return h.refuse(cl, &refusedError{Code: packets.ErrNotAuthorized.Code, Reason: "connection did not come through the TLS listener"})
	}
	if err := h.b.admit(c, cl, pk); err != nil {
		return h.refuse(cl, err)
	}
	return nil
}

// refuse sends the CONNACK of a refused client, logs the refusal and returns
// the error for mochi, which then closes the connection.
func (h *hook) refuse(cl *mqtt.Client, e *refusedError) error {
	attrs := []any{"reason", e.Reason, "client_id", cl.ID, "remote", cl.Net.Remote}
	if e.Err != nil {
		attrs = append(attrs, "error", e.Err.Error())
	}
	h.b.log.Info("mqtt connection refused", attrs...)
	_ = cl.WritePacket(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Connack},
		ReasonCode:  e.Code,
		Properties:  packets.Properties{ReasonString: e.Reason},
	})
	return e
}

// OnConnectAuthenticate accepts exactly the clients OnConnect registered and
// nobody disconnected since.
func (h *hook) OnConnectAuthenticate(cl *mqtt.Client, _ packets.Packet) bool {
	s := h.b.reg.get(cl)
	return s != nil && !s.kicked.Load()
}

// OnACLCheck is asked for every PUBLISH (write), every SUBSCRIBE filter
// (read) and every delivery of a message to a subscriber (read, with the
// message's topic), so a narrowed zone takes effect on existing
// subscriptions too. Clients without a live session, including persisted
// sessions of disconnected clients, are allowed nothing.
func (h *hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	s := h.b.reg.get(cl)
	if s == nil {
		return false
	}
	return s.acl.Load().allowed(topic, write)
}

func (h *hook) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	if s := h.b.reg.get(cl); s != nil {
		h.b.reg.remove(s)
	}
}

// OnPublish runs after mochi's ACL check, on the topic resolved from a topic
// alias. It refuses retained messages from devices and checks the topic
// again. A refused QoS 1 message is answered with PUBACK "not authorized"
// here, because mochi answers nothing for a packet a hook rejects.
func (h *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	s := h.b.reg.get(cl)
	var a *acl
	if s != nil {
		a = s.acl.Load()
	}
	switch {
	case a != nil && a.kind == KindService:
		return pk, nil
	case !a.allowed(pk.TopicName, true):
		h.rejectPublish(cl, pk, "topic not allowed")
	case pk.FixedHeader.Retain:
		h.rejectPublish(cl, pk, "devices may not publish retained messages")
	default:
		return pk, nil
	}
	return pk, packets.ErrRejectPacket
}

func (h *hook) rejectPublish(cl *mqtt.Client, pk packets.Packet, reason string) {
	h.b.log.Debug("mqtt publish refused", "reason", reason, "client_id", cl.ID, "topic", pk.TopicName)
	var t byte
	switch pk.FixedHeader.Qos {
	case 1:
		t = packets.Puback
	case 2:
		t = packets.Pubrec
	default:
		return
	}
	_ = cl.WritePacket(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: t},
		PacketID:    pk.PacketID,
		ReasonCode:  packets.ErrNotAuthorized.Code,
		Properties:  packets.Properties{ReasonString: reason},
	})
}

// OnPacketEncode fills in the CONNACK properties mochi leaves out or sets
// for all clients alike: the receive maximum of the client's kind, the
// maximum packet size, and for devices "retain not available" and "shared
// subscriptions not available".
func (h *hook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type != packets.Connack || pk.ReasonCode >= packets.ErrUnspecifiedError.Code {
		return pk
	}
	s := h.b.reg.get(cl)
	if s == nil {
		return pk
	}
	pk.Properties.MaximumPacketSize = h.b.cfg.MaxPacketSize
	if s.acl.Load().kind == KindService {
		pk.Properties.ReceiveMaximum = h.b.tune.serviceReceiveMaximum
		return pk
	}
	pk.Properties.RetainAvailable, pk.Properties.RetainAvailableFlag = 0, true
	pk.Properties.SharedSubAvailable, pk.Properties.SharedSubAvailableFlag = 0, true
	return pk
}

// OnWill drops the will of a client that has been disconnected by the
// broker or whose will topic its current ACL no longer allows: mochi
// publishes wills without an ACL check. An empty topic reaches no
// subscriber.
func (h *hook) OnWill(cl *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	s := h.b.reg.get(cl)
	if s == nil || s.kicked.Load() {
		return mqtt.Will{}, nil
	}
	a := s.acl.Load()
	if !a.allowed(will.TopicName, true) || will.Retain && a.kind != KindService {
		return mqtt.Will{}, nil
	}
	return will, nil
}

// OnSessionEstablished disables the send quota again: taking over a live
// session copies its in-flight store, and mochi then resets the quota.
func (h *hook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	disableSendQuota(cl)
}

// OnPublishDropped counts messages mochi drops because a client's write
// queue is full and logs them at most once a second.
func (h *hook) OnPublishDropped(cl *mqtt.Client, pk packets.Packet) {
	n := h.dropped.Add(1)
	now := time.Now().UnixNano()
	last := h.lastDropLog.Load()
	if now-last < int64(time.Second) || !h.lastDropLog.CompareAndSwap(last, now) {
		return
	}
	h.b.log.Warn("mqtt message dropped: client write queue full",
		"client_id", cl.ID, "topic", pk.TopicName, "dropped_total", n)
}

// admit authenticates a CONNECT and registers the session.
func (b *Broker) admit(c *conn, cl *mqtt.Client, pk packets.Packet) *refusedError {
	chain := c.ConnectionState().PeerCertificates
	if len(chain) == 0 {
		return &refusedError{Code: packets.ErrNotAuthorized.Code, Reason: "no client certificate"}
	}
	epoch := b.epoch.Load()
	a, rerr := b.authorize(chain, pk.Connect.ClientIdentifier)
	if rerr != nil {
		return rerr
	}
	if pk.Connect.WillFlag {
		if pk.Connect.WillRetain && a.kind != KindService {
			return &refusedError{Code: packets.ErrNotAuthorized.Code, Reason: "devices may not set a retained will"}
		}
		if !a.allowed(pk.Connect.WillTopic, true) {
			return &refusedError{Code: packets.ErrNotAuthorized.Code, Reason: "will topic not allowed"}
		}
	}
	s := &session{
		client: cl,
		conn:   c,
		chain:  chain,
		id:     a.id,
		serial: serialOf(chain[0]),
		remote: cl.Net.Remote,
	}
	s.acl.Store(a)
	b.reg.add(s)
	c.sess.Store(s)
	if b.epoch.Load() != epoch {
		// A Disconnect or Refresh ran while we were authenticating and may
		// not have seen this session: ask again, now that it is registered.
		a, rerr = b.authorize(chain, pk.Connect.ClientIdentifier)
		if rerr != nil {
			b.reg.remove(s)
			return rerr
		}
		s.acl.Store(a)
	}
	if a.kind == KindService {
		cl.State.Inflight.ResetReceiveQuota(int32(b.tune.serviceReceiveMaximum))
	}
	disableSendQuota(cl)
	return nil
}

// disableSendQuota turns off mochi's flow control towards the client.
// Mochi 2.7.9 holds back messages beyond the client's Receive Maximum and
// releases them one per packet the client sends, but it drops a released
// QoS 1 message from its in-flight store as soon as it is written, so the
// client's PUBACK no longer returns the quota: after about twice its Receive
// Maximum of unacknowledged messages a client receives nothing more until it
// reconnects (TestBroker "ok/service with a small receive maximum keeps
// receiving"). Without the quota, messages go straight to the client's write
// queue; a client that stops reading fills its socket and then that queue,
// and further messages are dropped and logged (OnPublishDropped).
func disableSendQuota(cl *mqtt.Client) {
	cl.State.Inflight.ResetSendQuota(0)
}

// authorize runs the Authenticator on a chain and compiles the identity.
func (b *Broker) authorize(chain []*x509.Certificate, clientID string) (*acl, *refusedError) {
	var id Identity
	var err error
	// Certificate checks take a deep stack; run them beside the client's
	// long-lived read goroutine so that its stack stays small.
	onFreshStack(func() { id, err = b.cfg.Auth.Authenticate(chain) })
	if err != nil {
		return nil, &refusedError{Code: packets.ErrNotAuthorized.Code, Reason: "certificate not accepted", Err: err}
	}
	if serial := serialOf(chain[0]); id.CertSerial != "" && !strings.EqualFold(strings.TrimLeft(id.CertSerial, "0"), strings.TrimLeft(serial, "0")) {
		return nil, &refusedError{Code: packets.ErrNotAuthorized.Code, Reason: "unusable identity",
			Err: fmt.Errorf("%w: serial %s is not the leaf's %s", ErrInvalidIdentity, id.CertSerial, serial)}
	}
	a, ignored, err := compileACL(id)
	if err != nil {
		return nil, &refusedError{Code: packets.ErrNotAuthorized.Code, Reason: "unusable identity", Err: err}
	}
	if len(ignored) > 0 {
		b.log.Warn("mqtt zone topics ignored", "id", id.ID, "topics", ignored)
	}
	if clientID != id.ID {
		return nil, &refusedError{Code: packets.ErrClientIdentifierNotValid.Code,
			Reason: "client identifier must equal the certificate identity",
			Err:    fmt.Errorf("client identifier %q, identity %q", clientID, id.ID)}
	}
	return a, nil
}
