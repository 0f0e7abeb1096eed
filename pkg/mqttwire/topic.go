package mqttwire

import (
	"fmt"
	"strings"
)

// Prefix is the root of every Embark topic.
const Prefix = "embark/v1/"

// Op names a device → Embark request topic.
type Op string

// Request operations.
const (
	OpNonce  Op = "nonce"
	OpEnroll Op = "enroll"
	OpRenew  Op = "renew"
	OpState  Op = "state"
	// OpVoucher carries a device's signed voucher request (package
	// voucher), published with its IDevID; the answer carries the voucher.
	OpVoucher Op = "voucher"
)

// Ops lists the request operations, in the order Embark subscribes to them.
var Ops = []Op{OpNonce, OpEnroll, OpRenew, OpState, OpVoucher}

// MaxDeviceID bounds the device identifier in a topic.
const MaxDeviceID = 256

// Namespace returns the topic namespace of a device: "embark/v1/<id>".
func Namespace(deviceID string) string { return Prefix + deviceID }

// RequestTopic returns the topic a device publishes op requests to.
func RequestTopic(deviceID string, op Op) string { return Namespace(deviceID) + "/" + string(op) }

// ResponseTopic returns the default response topic of a device.
func ResponseTopic(deviceID string) string { return Namespace(deviceID) + "/resp" }

// CommandTopic returns the topic of a device's desired-state document.
func CommandTopic(deviceID string) string { return Namespace(deviceID) + "/cmd" }

// RequestFilter returns the filter matching op requests of every device.
func RequestFilter(op Op) string { return Prefix + "+/" + string(op) }

// ParseRequestTopic splits a request topic into device identifier and op.
func ParseRequestTopic(topic string) (string, Op, error) {
	rest, ok := strings.CutPrefix(topic, Prefix)
	if !ok {
		return "", "", fmt.Errorf("%w: %q is not under %s", ErrTopic, topic, Prefix)
	}
	id, op, ok := strings.Cut(rest, "/")
	if !ok || !validID(id) {
		return "", "", fmt.Errorf("%w: %q has no device level", ErrTopic, topic)
	}
	for _, o := range Ops {
		if op == string(o) {
			return id, o, nil
		}
	}
	return "", "", fmt.Errorf("%w: %q is not a request topic", ErrTopic, topic)
}

// CheckResponseTopic checks that a response topic lies in the device's own
// namespace, under "<ns>/resp", so that Embark never publishes for one
// device into another's topics, nor into a request or command topic.
func CheckResponseTopic(deviceID, topic string) error {
	base := ResponseTopic(deviceID)
	if topic != base && !strings.HasPrefix(topic, base+"/") {
		return fmt.Errorf("%w: response topic %q is outside %s", ErrTopic, topic, base)
	}
	if strings.ContainsAny(topic, "+#\x00") || len(topic) > len(base)+128 {
		return fmt.Errorf("%w: response topic %q is not a plain topic name", ErrTopic, topic)
	}
	return nil
}

func validID(id string) bool {
	return id != "" && len(id) <= MaxDeviceID && !strings.ContainsAny(id, "/+#\x00")
}
