package broker

import (
	"errors"
	"slices"
	"testing"
)

func TestCompileACL(t *testing.T) {
	tests := []struct {
		name    string
		id      Identity
		err     error
		ignored []string
	}{
		{"ok/ldevid", Identity{Kind: KindLDevID, ID: devA, Topics: []string{"plant/#"}}, nil, nil},
		{"ok/service", Identity{Kind: KindService, ID: "embark"}, nil, nil},
		{"ok/invalid zone topics are ignored", Identity{Kind: KindLDevID, ID: devA, Topics: []string{"a/#/b", "$SYS/#", "$share/g/x", "", "ok/+"}},
			nil, []string{"a/#/b", "$SYS/#", "$share/g/x", ""}},
		{"fail/unknown kind", Identity{Kind: 9, ID: devA}, ErrInvalidIdentity, nil},
		{"fail/zero kind", Identity{ID: devA}, ErrInvalidIdentity, nil},
		{"fail/empty id", Identity{Kind: KindLDevID}, ErrInvalidIdentity, nil},
		{"fail/id with slash", Identity{Kind: KindIDevID, ID: "urn:dev:embark:a:b/c"}, ErrInvalidIdentity, nil},
		{"fail/id with plus", Identity{Kind: KindLDevID, ID: "urn:dev:embark:a:+"}, ErrInvalidIdentity, nil},
		{"fail/id with hash", Identity{Kind: KindLDevID, ID: "#"}, ErrInvalidIdentity, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, ignored, err := compileACL(tt.id)
			if !errors.Is(err, tt.err) {
				t.Fatalf("compileACL: %v, want %v", err, tt.err)
			}
			if (err == nil) != (a != nil) {
				t.Fatalf("acl %v with error %v", a, err)
			}
			if !slices.Equal(ignored, tt.ignored) {
				t.Fatalf("ignored %q, want %q", ignored, tt.ignored)
			}
		})
	}
}

func TestACLAllowed(t *testing.T) {
	const w, r = true, false
	A, B := ns(devA), ns(devB)
	idevid := Identity{Kind: KindIDevID, ID: devA, Topics: []string{"#"}} // topics are ignored for IDevIDs
	ldevid := Identity{Kind: KindLDevID, ID: devA, Topics: []string{A + "/#", "plant/+/alarms", "embark/v1/+/status", "#"}}
	bare := Identity{Kind: KindLDevID, ID: devA}
	service := Identity{Kind: KindService, ID: "embark"}
	tests := []struct {
		name  string
		id    Identity
		topic string
		write bool
		want  bool
	}{
		{"ok/idevid writes nonce", idevid, A + "/nonce", w, true},
		{"ok/idevid writes enroll", idevid, A + "/enroll", w, true},
		{"ok/idevid writes voucher", idevid, A + "/voucher", w, true},
		{"fail/idevid writes another's voucher", idevid, B + "/voucher", w, false},
		{"fail/ldevid writes voucher", ldevid, A + "/voucher", w, false},
		{"ok/idevid reads resp", idevid, A + "/resp", r, true},
		{"ok/idevid reads resp subtree", idevid, A + "/resp/#", r, true},
		{"ok/idevid reads one response", idevid, A + "/resp/42", r, true},
		{"fail/idevid writes renew", idevid, A + "/renew", w, false},
		{"fail/idevid writes state", idevid, A + "/state", w, false},
		{"fail/idevid reads cmd", idevid, A + "/cmd", r, false},
		{"fail/idevid writes resp", idevid, A + "/resp", w, false},
		{"fail/idevid zone topics ignored", idevid, "plant/x", w, false},
		{"fail/idevid writes another device's enroll", idevid, B + "/enroll", w, false},
		{"fail/idevid reads another device's resp", idevid, B + "/resp/#", r, false},
		{"fail/idevid reads resp with wildcard device", idevid, "embark/v1/+/resp", r, false},

		{"ok/ldevid writes nonce", bare, A + "/nonce", w, true},
		{"ok/ldevid writes renew", bare, A + "/renew", w, true},
		{"ok/ldevid writes state", bare, A + "/state", w, true},
		{"ok/ldevid reads cmd", bare, A + "/cmd", r, true},
		{"ok/ldevid reads resp subtree", bare, A + "/resp/#", r, true},
		{"fail/ldevid writes enroll", bare, A + "/enroll", w, false},
		{"fail/ldevid writes cmd", bare, A + "/cmd", w, false},
		{"fail/ldevid reads cmd subtree", bare, A + "/cmd/#", r, false},
		{"fail/ldevid without zone writes status", bare, A + "/status", w, false},

		{"ok/zone own status", ldevid, A + "/status", w, true},
		{"ok/zone application topic", ldevid, "plant/7/alarms", w, true},
		{"ok/zone subscription with plus", ldevid, "plant/+/alarms", r, true},
		{"ok/zone other devices' status", ldevid, "embark/v1/+/status", r, true},
		{"ok/root zone grant", ldevid, "anything/else", w, true},
		{"fail/zone cannot write cmd", ldevid, A + "/cmd", w, false},
		{"fail/zone cannot write resp", ldevid, A + "/resp", w, false},
		{"fail/zone cannot write resp subtree", ldevid, A + "/resp/1", w, false},
		{"fail/zone cannot write enroll", ldevid, A + "/enroll", w, false},
		{"fail/zone cannot write below cmd", ldevid, A + "/cmd/x", w, false},
		{"fail/zone cannot write another device's cmd", ldevid, B + "/cmd", w, false},
		{"fail/zone cannot read another device's resp", ldevid, B + "/resp/1", r, false},
		{"fail/zone cannot read another device's requests", ldevid, B + "/renew", r, false},
		{"fail/zone subscription covering protocol topics", ldevid, A + "/#", r, false},
		{"fail/zone subscription with wildcard device level", ldevid, "embark/v1/+/+", r, false},
		{"fail/subscribe everything", ldevid, "#", r, false},
		{"fail/subscribe embark/v1", ldevid, "embark/v1/#", r, false},
		{"fail/$SYS", ldevid, "$SYS/broker/clients", r, false},
		{"fail/$share", ldevid, "$share/g/plant/1/alarms", r, false},
		{"fail/publish with wildcard", ldevid, "plant/+/alarms", w, false},
		{"fail/empty topic", ldevid, "", w, false},

		{"ok/service reads requests", service, "embark/v1/+/enroll", r, true},
		{"ok/service reads everything under embark/v1", service, "embark/v1/#", r, true},
		{"ok/service shared subscription", service, "$share/embark/embark/v1/+/renew", r, true},
		{"ok/service writes cmd", service, A + "/cmd", w, true},
		{"ok/service writes resp", service, A + "/resp/9", w, true},
		{"fail/service outside embark/v1", service, "plant/x", w, false},
		{"fail/service subscribes everything", service, "#", r, false},
		{"fail/service shared everything", service, "$share/g/#", r, false},
		{"fail/service $SYS", service, "$SYS/#", r, false},
		{"fail/service publishes with wildcard", service, "embark/v1/+/cmd", w, false},
		{"fail/service malformed share", service, "$share/embark", r, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, _, err := compileACL(tt.id)
			if err != nil {
				t.Fatal(err)
			}
			if got := a.allowed(tt.topic, tt.write); got != tt.want {
				t.Fatalf("allowed(%q, write=%v) = %v, want %v", tt.topic, tt.write, got, tt.want)
			}
		})
	}
	t.Run("fail/deny all", func(t *testing.T) {
		var none *acl
		if denyAll.allowed(A+"/nonce", w) || none.allowed(A+"/nonce", w) {
			t.Fatal("empty ACL allows")
		}
	})
}

func TestNormalizeSerial(t *testing.T) {
	for in, want := range map[string]string{"00AbC": "abc", " 1f ": "1f", "0": "", "": "", "-0a": "-a"} {
		if got := normalizeSerial(in); got != want {
			t.Errorf("normalizeSerial(%q) = %q, want %q", in, got, want)
		}
	}
}

func BenchmarkACLDelivery(b *testing.B) {
	a, _, err := compileACL(Identity{Kind: KindLDevID, ID: devA, Topics: []string{"plant/+/alarms", "embark/v1/+/status"}})
	if err != nil {
		b.Fatal(err)
	}
	topic := "plant/7/alarms"
	b.ReportAllocs()
	for b.Loop() {
		if !a.allowed(topic, false) {
			b.Fatal("denied")
		}
	}
}
