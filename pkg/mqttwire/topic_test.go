package mqttwire

import (
	"errors"
	"strings"
	"testing"
)

func TestParseRequestTopic(t *testing.T) {
	long := "urn:dev:embark:acme:" + strings.Repeat("x", MaxDeviceID)
	atLimit := strings.Repeat("d", MaxDeviceID)
	tests := []struct {
		name   string
		topic  string
		wantID string
		wantOp Op
		err    error
	}{
		{name: "ok/nonce", topic: "embark/v1/" + testDevice + "/nonce", wantID: testDevice, wantOp: OpNonce},
		{name: "ok/enroll", topic: "embark/v1/" + testDevice + "/enroll", wantID: testDevice, wantOp: OpEnroll},
		{name: "ok/renew", topic: "embark/v1/" + testDevice + "/renew", wantID: testDevice, wantOp: OpRenew},
		{name: "ok/state", topic: "embark/v1/" + testDevice + "/state", wantID: testDevice, wantOp: OpState},
		{name: "ok/id at the length limit", topic: RequestTopic(atLimit, OpEnroll), wantID: atLimit, wantOp: OpEnroll},
		{name: "fail/wrong prefix", topic: "embark/v2/" + testDevice + "/enroll", err: ErrTopic},
		{name: "fail/prefix without trailing slash", topic: "embark/v1" + testDevice + "/enroll", err: ErrTopic},
		{name: "fail/leading slash", topic: "/embark/v1/" + testDevice + "/enroll", err: ErrTopic},
		{name: "fail/empty", topic: "", err: ErrTopic},
		{name: "fail/no device", topic: "embark/v1//enroll", err: ErrTopic},
		{name: "fail/no device level", topic: "embark/v1/enroll", err: ErrTopic},
		{name: "fail/unknown op", topic: "embark/v1/" + testDevice + "/reboot", err: ErrTopic},
		{name: "fail/response topic", topic: ResponseTopic(testDevice), err: ErrTopic},
		{name: "fail/command topic", topic: CommandTopic(testDevice), err: ErrTopic},
		{name: "fail/op with a sub-level", topic: "embark/v1/" + testDevice + "/enroll/x", err: ErrTopic},
		{name: "fail/op case", topic: "embark/v1/" + testDevice + "/Enroll", err: ErrTopic},
		{name: "fail/no op", topic: "embark/v1/" + testDevice + "/", err: ErrTopic},
		{name: "fail/wildcard + as id", topic: "embark/v1/+/enroll", err: ErrTopic},
		{name: "fail/wildcard + in id", topic: "embark/v1/urn:dev:embark:acme:+/enroll", err: ErrTopic},
		{name: "fail/wildcard # in id", topic: "embark/v1/urn:dev:embark:acme:#/enroll", err: ErrTopic},
		{name: "fail/NUL in id", topic: "embark/v1/urn:dev:embark:acme:\x00/enroll", err: ErrTopic},
		{name: "fail/too-long id", topic: RequestTopic(long, OpEnroll), err: ErrTopic},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, op, err := ParseRequestTopic(tt.topic)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("ParseRequestTopic(%q) error = %v, want %v", tt.topic, err, tt.err)
				}
				if id != "" || op != "" {
					t.Fatalf("ParseRequestTopic(%q) = %q, %q with an error, want empty results", tt.topic, id, op)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRequestTopic(%q): %v", tt.topic, err)
			}
			if id != tt.wantID || op != tt.wantOp {
				t.Fatalf("ParseRequestTopic(%q) = %q, %q; want %q, %q", tt.topic, id, op, tt.wantID, tt.wantOp)
			}
		})
	}
}

// TestRequestTopicRoundTrip checks that every topic a device is told to
// publish to parses back to the same device and op.
func TestRequestTopicRoundTrip(t *testing.T) {
	for _, op := range Ops {
		id, got, err := ParseRequestTopic(RequestTopic(testDevice, op))
		if err != nil || id != testDevice || got != op {
			t.Errorf("ParseRequestTopic(RequestTopic(%q, %q)) = %q, %q, %v", testDevice, op, id, got, err)
		}
		if f, want := RequestFilter(op), "embark/v1/+/"+string(op); f != want {
			t.Errorf("RequestFilter(%q) = %q, want %q", op, f, want)
		}
	}
}

func TestCheckResponseTopic(t *testing.T) {
	const other = "urn:dev:embark:acme:SN-0002"
	base := ResponseTopic(testDevice)
	tests := []struct {
		name   string
		device string
		topic  string
		err    error
	}{
		{name: "ok/base", device: testDevice, topic: "embark/v1/" + testDevice + "/resp"},
		{name: "ok/sub-topic", device: testDevice, topic: base + "/c7f1"},
		{name: "ok/nested sub-topic", device: testDevice, topic: base + "/session/42"},
		{name: "ok/sub-topic at the length limit", device: testDevice, topic: base + "/" + strings.Repeat("a", 127)},
		{name: "fail/other device", device: testDevice, topic: ResponseTopic(other), err: ErrTopic},
		{name: "fail/other device sub-topic", device: testDevice, topic: ResponseTopic(other) + "/x", err: ErrTopic},
		{name: "fail/request topic of the same device", device: testDevice, topic: RequestTopic(testDevice, OpEnroll), err: ErrTopic},
		{name: "fail/nonce topic of the same device", device: testDevice, topic: RequestTopic(testDevice, OpNonce), err: ErrTopic},
		{name: "fail/cmd topic", device: testDevice, topic: CommandTopic(testDevice), err: ErrTopic},
		{name: "fail/wildcard +", device: testDevice, topic: base + "/+", err: ErrTopic},
		{name: "fail/wildcard #", device: testDevice, topic: base + "/#", err: ErrTopic},
		{name: "fail/NUL", device: testDevice, topic: base + "/a\x00b", err: ErrTopic},
		{name: "fail/prefix trick respX", device: testDevice, topic: "embark/v1/" + testDevice + "/respX", err: ErrTopic},
		{name: "fail/prefix trick resp-", device: testDevice, topic: base + "-x/y", err: ErrTopic},
		{name: "fail/device id prefix", device: testDevice, topic: "embark/v1/" + testDevice + "0/resp", err: ErrTopic},
		{name: "fail/namespace only", device: testDevice, topic: Namespace(testDevice), err: ErrTopic},
		{name: "fail/empty", device: testDevice, topic: "", err: ErrTopic},
		{name: "fail/too long", device: testDevice, topic: base + "/" + strings.Repeat("a", 128), err: ErrTopic},
		{name: "fail/other prefix", device: testDevice, topic: "embark/v2/" + testDevice + "/resp", err: ErrTopic},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckResponseTopic(tt.device, tt.topic)
			if tt.err == nil {
				if err != nil {
					t.Fatalf("CheckResponseTopic(%q, %q): %v", tt.device, tt.topic, err)
				}
				return
			}
			if !errors.Is(err, tt.err) {
				t.Fatalf("CheckResponseTopic(%q, %q) error = %v, want %v", tt.device, tt.topic, err, tt.err)
			}
		})
	}
}
