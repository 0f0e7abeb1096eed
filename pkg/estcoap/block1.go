package estcoap

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/mux"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/options/config"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/embark-iot/embark/pkg/onboard"
)

// Request bodies sent in blocks (RFC 7959 Block1) are reassembled here,
// before go-coap's block-wise layer, for two reasons:
//
//   - a cap: the whole body is refused with 4.13 as soon as it would exceed
//     the limit, before it is buffered;
//   - matching: clients may give every block its own token and tie the
//     blocks together with a Request-Tag (libcoap does), which go-coap's
//     token-keyed reassembly does not follow. Blocks are matched here by
//     connection, Request-Tag, method and path.
//
// Block-wise answers (Block2) stay with go-coap.

// optRequestTag is the Request-Tag option (RFC 9175).
const optRequestTag message.OptionID = 292

// blockVerdict is what the handler must answer for a request whose blocks
// were handled here.
type blockVerdict int

const (
	blockContinue   blockVerdict = iota + 1 // stored: 2.31 Continue
	blockComplete                           // whole body assembled: serve it
	blockTooLarge                           // 4.13
	blockIncomplete                         // out of order or unknown: 4.08
	blockBusy                               // too many bodies in reassembly: 5.03
)

type blockState struct {
	verdict blockVerdict
	// echo is the Block1 option value to put in the answer.
	echo uint32
}

type blockKeyCtx struct{}

type partialKey struct {
	conn any
	tag  string
	code codes.Code
	path string
}

type partial struct {
	body    []byte
	touched time.Time
}

// reassembler holds the bodies being received in blocks.
type reassembler struct {
	limit      int
	maxPending int
	ttl        time.Duration

	mu        sync.Mutex
	pending   map[partialKey]*partial
	lastSweep time.Time
}

func newReassembler(limit int) *reassembler {
	return &reassembler{limit: limit, maxPending: 4096, ttl: 30 * time.Second, pending: map[partialKey]*partial{}}
}

// intercept handles the Block1 and Size1 options of a request and decides
// what it becomes: untouched (no blocks, small enough), or stripped of its
// block options and marked in its context for ServeCOAP.
func (ra *reassembler) intercept(conn any, req *pool.Message) {
	if req.Code() != codes.POST && req.Code() != codes.PUT {
		return
	}
	size, _ := req.BodySize()
	if v, err := req.GetOptionUint32(message.Size1); err == nil && int64(v) > int64(ra.limit) {
		ra.mark(req, blockState{verdict: blockTooLarge}, nil)
		return
	}
	v, err := req.GetOptionUint32(message.Block1)
	if err != nil {
		if size > int64(ra.limit) {
			ra.mark(req, blockState{verdict: blockTooLarge}, nil)
		}
		return
	}
	szx, num, more, err := blockwise.DecodeBlockOption(v)
	if err != nil || szx > blockwise.SZX1024 {
		ra.mark(req, blockState{verdict: blockIncomplete}, nil)
		return
	}
	payload, err := readAll(req)
	if err != nil {
		ra.mark(req, blockState{verdict: blockIncomplete}, nil)
		return
	}
	path, _ := req.Options().Path()
	tag, _ := req.Options().GetBytes(optRequestTag)
	key := partialKey{conn: conn, tag: string(tag), code: req.Code(), path: path}
	off := int64(num) * szx.Size()
	now := time.Now()

	ra.mu.Lock()
	defer ra.mu.Unlock()
	ra.sweep(now)
	p := ra.pending[key]
	if num == 0 {
		if p == nil && len(ra.pending) >= ra.maxPending {
			ra.mark(req, blockState{verdict: blockBusy}, nil)
			return
		}
		p = &partial{} // a new body replaces an abandoned one
		ra.pending[key] = p
	}
	if p == nil || int64(len(p.body)) != off {
		delete(ra.pending, key)
		ra.mark(req, blockState{verdict: blockIncomplete}, nil)
		return
	}
	if off+int64(len(payload)) > int64(ra.limit) {
		delete(ra.pending, key)
		ra.mark(req, blockState{verdict: blockTooLarge}, nil)
		return
	}
	p.body = append(p.body, payload...)
	p.touched = now
	if more {
		// Every block but the last is a whole number of blocks.
		if int64(len(payload)) != szx.Size() {
			delete(ra.pending, key)
			ra.mark(req, blockState{verdict: blockIncomplete}, nil)
			return
		}
		echo, _ := blockwise.EncodeBlockOption(szx, num, true)
		ra.mark(req, blockState{verdict: blockContinue, echo: echo}, nil)
		return
	}
	delete(ra.pending, key)
	echo, _ := blockwise.EncodeBlockOption(szx, num, false)
	ra.mark(req, blockState{verdict: blockComplete, echo: echo}, p.body)
}

// mark strips the block options (so that go-coap's block-wise layer passes
// the request on), sets the body and records the verdict.
func (ra *reassembler) mark(req *pool.Message, st blockState, body []byte) {
	req.Remove(message.Block1)
	req.Remove(message.Size1)
	req.SetBody(bytesReader(body))
	req.SetContext(context.WithValue(req.Context(), blockKeyCtx{}, st))
}

// sweep drops bodies abandoned for longer than the ttl. Called with mu held.
func (ra *reassembler) sweep(now time.Time) {
	if now.Sub(ra.lastSweep) < ra.ttl/3 {
		return
	}
	ra.lastSweep = now
	for k, p := range ra.pending {
		if now.Sub(p.touched) > ra.ttl {
			delete(ra.pending, k)
		}
	}
}

func (s *Server) block1UDP() config.ProcessReceivedMessageFunc[*udpclient.Conn] {
	return func(req *pool.Message, cc *udpclient.Conn, handler config.HandlerFunc[*udpclient.Conn]) {
		s.blocks.intercept(cc, req)
		cc.ProcessReceivedMessageWithHandler(req, handler)
	}
}

// ServeCOAP answers requests whose blocks were handled by the reassembler
// and hands the rest to the router.
func (s *Server) ServeCOAP(w mux.ResponseWriter, r *mux.Message) { s.serveVia(s.router, w, r) }

// serveVia is ServeCOAP with the router to hand requests to: the secure
// listeners' or the plain BRSKI listener's.
func (s *Server) serveVia(router *mux.Router, w mux.ResponseWriter, r *mux.Message) {
	st, ok := r.Context().Value(blockKeyCtx{}).(blockState)
	if !ok {
		// Over TCP no hook runs before this handler (go-coap v3.5.5's TCP
		// server does not install ProcessReceivedMessage), and go-coap's
		// block-wise layer is off there: requests arrive here as sent.
		// Over UDP the hook already ran and this finds nothing to do.
		s.blocks.intercept(w.Conn(), r.Message)
		st, _ = r.Context().Value(blockKeyCtx{}).(blockState)
	}
	switch st.verdict {
	case blockContinue:
		if err := w.SetResponse(codes.Continue, message.TextPlain, nil, uintOption(message.Block1, st.echo)); err != nil {
			s.log.Error("set response", "err", err)
		}
		return
	case blockTooLarge:
		s.fail(w, codes.RequestEntityTooLarge, onboard.ReasonPayloadTooLarge,
			fmt.Sprintf("request body exceeds %d bytes", s.cfg.MaxBody), 0)
		return
	case blockIncomplete:
		s.fail(w, codes.RequestEntityIncomplete, onboard.ReasonBadRequest, "block out of order or body unknown: start again at block 0", 0)
		return
	case blockBusy:
		s.fail(w, codes.ServiceUnavailable, onboard.ReasonOverloaded, "too many bodies in reassembly", s.cfg.busyRetry())
		return
	}
	router.ServeCOAP(w, r)
	if st.verdict == blockComplete {
		w.Message().SetOptionUint32(message.Block1, st.echo)
	}
}

func (c Config) busyRetry() time.Duration { return 2 * time.Second }

func uintOption(id message.OptionID, v uint32) message.Option {
	buf := make([]byte, 4)
	n, _ := message.EncodeUint32(buf, v)
	return message.Option{ID: id, Value: buf[:n]}
}
