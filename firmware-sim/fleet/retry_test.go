package fleet

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/embark-iot/embark/firmware-sim/estclient"
	"github.com/embark-iot/embark/firmware-sim/estclient/esttest"
	"github.com/embark-iot/embark/firmware-sim/mqttclient"
	"github.com/embark-iot/embark/pkg/mqttwire"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

func testPKI(t *testing.T) *esttest.PKI {
	t.Helper()
	p, err := esttest.NewPKI()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// result is one scripted answer of an attempt.
type result struct {
	cert *x509.Certificate
	err  error
}

func TestDeviceRetries(t *testing.T) {
	p := testPKI(t)
	certA, err := p.IDevID("A")
	if err != nil {
		t.Fatal(err)
	}
	certB, err := p.IDevID("B")
	if err != nil {
		t.Fatal(err)
	}
	a, b := certA.Leaf, certB.Leaf
	held := &estclient.StatusError{Code: codes.ServiceUnavailable, Reason: "held", MaxAge: 2 * time.Second}
	denied := &estclient.StatusError{Code: codes.Forbidden, Reason: "denied", Message: "rule r1"}
	timeout := fmt.Errorf("%w: %w", estclient.ErrHandshake, context.DeadlineExceeded)
	untrusted := fmt.Errorf("%w: %w", estclient.ErrHandshake, x509.UnknownAuthorityError{})
	mqttHeld := &mqttclient.StatusError{Op: mqttwire.OpEnroll, Status: mqttwire.StatusRetry, Reason: "held", RetryAfter: 4 * time.Second}
	mqttRefused := &mqttclient.StatusError{Op: mqttwire.OpEnroll, Status: mqttwire.StatusRefused, Reason: "unknown_device"}
	busy := &mqttclient.ConnectError{Code: 0x89}
	notAuthorized := &mqttclient.ConnectError{Code: 0x87}
	refusedSession := fmt.Errorf("%w: %w: %w", mqttclient.ErrHandshake, mqttclient.ErrRefused, syscall.ECONNRESET)

	for _, tc := range []struct {
		name    string
		loss    float64
		rand    []float64
		results []result
		want    *x509.Certificate
		wantErr error
		reason  string
		retries int
		waits   []time.Duration
	}{
		{name: "ok/first try", results: []result{{cert: a}}, want: a},
		{name: "ok/5.03 then success waits Max-Age", results: []result{{err: held}, {cert: a}},
			want: a, retries: 1, waits: []time.Duration{2 * time.Second}},
		{name: "ok/timeout then success backs off", results: []result{{err: timeout}, {err: timeout}, {cert: a}},
			want: a, retries: 2, waits: []time.Duration{backoff(0, 0), backoff(1, 0)}},
		{name: "ok/lost answer, resend gets the same certificate", loss: 0.5, rand: []float64{0.1, 0, 0.9},
			results: []result{{cert: a}, {cert: a}}, want: a, retries: 1, waits: []time.Duration{backoff(0, 0)}},
		{name: "ok/mqtt retry answer then success waits RetryAfter", results: []result{{err: mqttHeld}, {cert: a}},
			want: a, retries: 1, waits: []time.Duration{4 * time.Second}},
		{name: "ok/mqtt lost retry answer backs off", loss: 0.5, rand: []float64{0.1, 0, 0.9},
			results: []result{{err: mqttHeld}, {cert: a}}, want: a, retries: 1, waits: []time.Duration{backoff(0, 0)}},
		{name: "ok/broker busy then success backs off", results: []result{{err: busy}, {cert: a}},
			want: a, retries: 1, waits: []time.Duration{backoff(0, 0)}},
		{name: "ok/mqtt connection lost then success backs off", results: []result{{err: mqttclient.ErrConnectionLost}, {cert: a}},
			want: a, retries: 1, waits: []time.Duration{backoff(0, 0)}},
		{name: "fail/mqtt refusal is final", results: []result{{err: mqttRefused}, {cert: a}},
			wantErr: mqttRefused, reason: "unknown_device"},
		{name: "fail/broker not authorizing is final", results: []result{{err: notAuthorized}, {cert: a}},
			wantErr: notAuthorized, reason: ReasonConnectRefused},
		{name: "fail/session refused after the handshake is final", results: []result{{err: refusedSession}, {cert: a}},
			wantErr: mqttclient.ErrRefused, reason: ReasonHandshakeRefused},
		{name: "fail/4.03 is final", results: []result{{err: denied}, {cert: a}},
			wantErr: denied, reason: "denied"},
		{name: "fail/5.03 until the retries run out", results: []result{{err: held}, {err: held}, {err: held}, {err: held}, {cert: a}},
			wantErr: held, reason: "held", retries: 3, waits: []time.Duration{2 * time.Second, 2 * time.Second, 2 * time.Second}},
		{name: "fail/untrusted server is final", results: []result{{err: untrusted}, {cert: a}},
			wantErr: estclient.ErrHandshake, reason: ReasonUntrustedServer},
		{name: "fail/unusable answer is final", results: []result{{err: estclient.ErrResponse}, {cert: a}},
			wantErr: estclient.ErrResponse, reason: ReasonBadResponse},
		{name: "fail/lost answer, resend gets another certificate", loss: 0.5, rand: []float64{0.1, 0, 0.9},
			results: []result{{cert: a}, {cert: b}}, wantErr: ErrNotIdempotent, reason: ReasonNotIdempotent,
			retries: 1, waits: []time.Duration{backoff(0, 0)}},
		{name: "fail/every answer lost", loss: 0.5, rand: []float64{0.1, 0, 0.1, 0, 0.1, 0, 0.1},
			results: []result{{cert: a}, {cert: a}, {cert: a}, {cert: a}}, wantErr: ErrResponseLost, reason: ReasonResponseLost,
			retries: 3, waits: []time.Duration{backoff(0, 0), backoff(1, 0), backoff(2, 0)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRunner(Options{Retries: 3, Loss: tc.loss}, p.Root.Cert)
			draws := slices.Clone(tc.rand)
			r.rand = func() float64 {
				if len(draws) == 0 {
					return 0
				}
				v := draws[0]
				draws = draws[1:]
				return v
			}
			var waits []time.Duration
			r.wait = func(_ context.Context, d time.Duration) bool {
				waits = append(waits, d)
				return true
			}
			calls := 0
			out := r.device(context.Background(), func(context.Context) (*x509.Certificate, error) {
				res := tc.results[calls]
				calls++
				return res.cert, res.err
			})
			if !errors.Is(out.err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", out.err, tc.wantErr)
			}
			if tc.wantErr != nil && reasonOf(out.err) != tc.reason {
				t.Fatalf("reason = %q, want %q", reasonOf(out.err), tc.reason)
			}
			if out.cert != tc.want {
				t.Fatalf("certificate = %v, want %v", out.cert, tc.want)
			}
			if out.retries != tc.retries || calls != tc.retries+1 {
				t.Fatalf("retries = %d after %d attempts, want %d", out.retries, calls, tc.retries)
			}
			if !slices.Equal(waits, tc.waits) {
				t.Fatalf("waits = %v, want %v", waits, tc.waits)
			}
		})
	}

	t.Run("fail/canceled run stops at once", func(t *testing.T) {
		r := newRunner(Options{Retries: 3}, p.Root.Cert)
		ctx, cancel := context.WithCancel(context.Background())
		calls := 0
		out := r.device(ctx, func(context.Context) (*x509.Certificate, error) {
			calls++
			cancel()
			return nil, timeout
		})
		if calls != 1 || reasonOf(out.err) != ReasonCanceled {
			t.Fatalf("after cancel: %d attempts, reason %q; want 1, %q", calls, reasonOf(out.err), ReasonCanceled)
		}
	})
}

func TestReasonOf(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{name: "ok/server reason", err: fmt.Errorf("sen: %w", &estclient.StatusError{Code: codes.Forbidden, Reason: "clone_suspected"}), want: "clone_suspected"},
		{name: "ok/server code without reason", err: &estclient.StatusError{Code: codes.NotFound}, want: "coap_4.04"},
		{name: "ok/key mismatch", err: ErrKeyMismatch, want: ReasonKeyMismatch},
		{name: "ok/untrusted LDevID", err: fmt.Errorf("%w: %w", ErrUntrustedCert, x509.UnknownAuthorityError{}), want: ReasonUntrustedLDevID},
		{name: "ok/untrusted server", err: fmt.Errorf("%w: %w", estclient.ErrHandshake, x509.HostnameError{}), want: ReasonUntrustedServer},
		{name: "ok/timeout", err: fmt.Errorf("%w: %w", estclient.ErrHandshake, context.DeadlineExceeded), want: ReasonTimeout},
		{name: "ok/other handshake failure", err: fmt.Errorf("%w: connection refused", estclient.ErrHandshake), want: ReasonHandshake},
		{name: "ok/canceled", err: context.Canceled, want: ReasonCanceled},
		{name: "ok/mqtt server reason", err: fmt.Errorf("x: %w", &mqttclient.StatusError{Status: mqttwire.StatusRefused, Reason: "held"}), want: "held"},
		{name: "ok/mqtt status without reason", err: &mqttclient.StatusError{Status: mqttwire.StatusRefused}, want: "mqtt_refused"},
		{name: "ok/mqtt untrusted broker", err: fmt.Errorf("%w: %w", mqttclient.ErrHandshake, &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}),
			want: ReasonUntrustedServer},
		{name: "ok/mqtt unusable answer", err: fmt.Errorf("%w: nonce", mqttclient.ErrResponse), want: ReasonBadResponse},
		{name: "ok/mqtt publish refused", err: fmt.Errorf("%w: 0x87", mqttclient.ErrPublishRefused), want: ReasonPublishRefused},
		{name: "ok/mqtt no answer in time", err: fmt.Errorf("mqttclient: enroll: no answer: %w", context.DeadlineExceeded), want: ReasonTimeout},
		{name: "ok/wrong identity", err: ErrWrongIdentity, want: ReasonWrongIdentity},
		{name: "ok/not connected", err: ErrNotConnected, want: ReasonNotConnected},
		{name: "ok/anything else", err: errors.New("broken pipe"), want: ReasonTransport},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := reasonOf(tc.err); got != tc.want {
				t.Fatalf("reasonOf(%v) = %q, want %q", tc.err, got, tc.want)
			}
		})
	}
}
