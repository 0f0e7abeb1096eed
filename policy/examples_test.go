package policy

import (
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// exampleCase is a device that one rule of an example policy must decide.
type exampleCase struct {
	name   string
	edit   func(*Input)
	rule   string
	action string
	zone   string // "" for hold and deny
	level  int
}

// runExample decides every case with the example policy file and checks
// that the cases together exercise every rule of it.
func runExample(t *testing.T, file string, base func() Input, cases []exampleCase) {
	t.Helper()
	p, err := Load(filepath.Join("examples", file))
	if err != nil {
		t.Fatal(err)
	}
	for _, z := range p.Zones() {
		if z.SecurityLevel < 1 || z.SecurityLevel > MaxSecurityLevel {
			t.Errorf("zone %s has level %d", z.Name, z.SecurityLevel)
		}
	}
	seen := map[string]bool{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := base()
			c.edit(&in)
			d, err := p.Decide(in)
			if err != nil {
				t.Fatal(err)
			}
			if d.Rule != c.rule || d.Action != c.action || d.Zone.Name != c.zone || d.Zone.SecurityLevel != c.level {
				t.Errorf("decided %s by rule %s into %q (SL %d); want %s by rule %s into %q (SL %d)",
					d.Action, d.Rule, d.Zone.Name, d.Zone.SecurityLevel, c.action, c.rule, c.zone, c.level)
			}
			admits := c.action == ActionAllow || c.action == ActionQuarantine
			if admits != (d.Lifetime > 0 && len(d.Topics) > 0 && d.Segment != "") {
				t.Errorf("lifetime %v, topics %v, segment %q for %s", d.Lifetime, d.Topics, d.Segment, d.Action)
			}
			for _, topic := range d.Topics {
				if !slices.Contains([]string{"", in.Device.ID}, topicDevice(topic)) {
					t.Errorf("topic %q is not in the device's namespace", topic)
				}
			}
		})
		seen[c.rule] = true
	}
	for _, r := range p.Rules() {
		if !seen[r.Name] {
			t.Errorf("no case exercises rule %s", r.Name)
		}
	}
}

// topicDevice returns the device level of an embark/v1/<device>/... topic.
func topicDevice(topic string) string {
	const prefix = "embark/v1/"
	if len(topic) <= len(prefix) || topic[:len(prefix)] != prefix {
		return ""
	}
	rest := topic[len(prefix):]
	for i := range len(rest) {
		if rest[i] == '/' {
			return rest[:i]
		}
	}
	return rest
}

// fleetDevice is a device every example policy admits when its model fits.
func fleetDevice(model string) Input {
	return Input{
		Device: Device{
			ID: "urn:dev:embark:acme:SN-0001", State: "expected", Manufacturer: "acme", Model: model,
			Serial: "SN-0001", HardwareRev: "B", FirmwareRecorded: "1.4.2", FirmwareReported: "1.4.2",
		},
		Provenance: Provenance{ManufacturerTrusted: true, OwnerOurs: true, Owner: "example-operator", ManifestRevision: 1, Site: "plant-7"},
		Vulns:      Vulns{DataVersion: 3},
		History:    History{Enrollments: 1, LastDecision: ActionAllow, LastRule: "known-device"},
		// A Tuesday, 10:00 UTC.
		Request: Request{Transport: "coaps", Time: time.Date(2026, 3, 3, 10, 0, 0, 0, time.UTC)},
	}
}

func TestExampleGeneral(t *testing.T) {
	base := func() Input { return fleetDevice("sensor-x") }
	runExample(t, "general.yaml", base, []exampleCase{
		{"fail/distrusted manufacturer", func(in *Input) { in.Provenance.ManufacturerTrusted = false }, "distrusted-manufacturer", ActionDeny, "", 0},
		{"fail/not our device", func(in *Input) { in.Provenance.OwnerOurs, in.Provenance.Owner = false, "someone-else" }, "not-our-device", ActionDeny, "", 0},
		{"fail/suspected clone", func(in *Input) { in.Provenance.Clone = true }, "suspected-clone", ActionHold, "", 0},
		{"fail/expired idevid", func(in *Input) { in.Provenance.IDevIDExpired = true }, "expired-idevid", ActionDeny, "", 0},
		{"fail/distrust beats a clone", func(in *Input) { in.Provenance.Clone, in.Provenance.ManufacturerTrusted = true, false }, "distrusted-manufacturer", ActionDeny, "", 0},
		{"ok/firmware mismatch", func(in *Input) { in.Device.FirmwareReported, in.Device.FirmwareMismatch = "1.3.0", true }, "firmware-mismatch", ActionQuarantine, "quarantine", 1},
		{"ok/critical vulnerability", func(in *Input) { in.Vulns.Open, in.Vulns.MaxCVSS, in.Vulns.IDs = 1, 9.8, []string{"CVE-2026-0001"} }, "critical-vulnerability", ActionQuarantine, "quarantine", 1},
		{"ok/high vulnerability on renewal", func(in *Input) { in.Vulns.Open, in.Vulns.MaxCVSS, in.Request.Renewal = 1, 7.5, true }, "high-vulnerability-renewal", ActionAllow, "production", 2},
		{"ok/high vulnerability on enrollment", func(in *Input) { in.Vulns.Open, in.Vulns.MaxCVSS = 1, 7.5 }, "known-device", ActionAllow, "production", 2},
		{"ok/known device", func(*Input) {}, "known-device", ActionAllow, "production", 2},
	})
}

func TestExampleGeneralLifetimes(t *testing.T) {
	p, err := Load(filepath.Join("examples", "general.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	in := fleetDevice("sensor-x")
	d, err := p.Decide(in)
	if err != nil || d.Lifetime != 720*time.Hour || d.Topics[0] != "embark/v1/urn:dev:embark:acme:SN-0001/#" || d.Segment != "vlan-20" {
		t.Errorf("known device: %+v, %v", d, err)
	}
	in.Request.Renewal, in.Vulns.MaxCVSS = true, 8.1
	if d, err := p.Decide(in); err != nil || d.Lifetime != 72*time.Hour {
		t.Errorf("high vulnerability on renewal: %+v, %v", d, err)
	}
}

func TestExampleHospital(t *testing.T) {
	pump := func() Input { return fleetDevice("infusion-pump-x1") }
	tablet := func() Input { return fleetDevice("bedside-tablet-3") }
	from := func(b func() Input, edit func(*Input)) func(*Input) {
		return func(in *Input) { *in = b(); edit(in) }
	}
	runExample(t, "hospital.yaml", pump, []exampleCase{
		{"fail/distrusted manufacturer", func(in *Input) { in.Provenance.ManufacturerTrusted = false }, "distrusted-manufacturer", ActionDeny, "", 0},
		{"fail/not our device", func(in *Input) { in.Provenance.OwnerOurs = false }, "not-our-device", ActionDeny, "", 0},
		{"fail/suspected clone", func(in *Input) { in.Provenance.Clone = true }, "suspected-clone", ActionHold, "", 0},
		{"fail/expired idevid held for approval", func(in *Input) { in.Provenance.IDevIDExpired = true }, "expired-idevid", ActionHold, "", 0},
		{"fail/first pump of a new model", func(in *Input) { in.Device.Model, in.History = "infusion-pump-x2", History{} }, "new-model-first-enrollment", ActionHold, "", 0},
		{"ok/new model after approval", func(in *Input) { in.Device.Model = "infusion-pump-x2" }, "clinical-device", ActionAllow, "clinical", 3},
		{"fail/new device with critical vulnerability", func(in *Input) { in.History, in.Vulns.MaxCVSS = History{}, 9.1 }, "critical-vulnerability-first-enrollment", ActionHold, "", 0},
		{"ok/deployed pump with critical vulnerability keeps working isolated", func(in *Input) { in.Vulns.MaxCVSS = 9.1 }, "vulnerable-clinical-device", ActionQuarantine, "clinical-isolated", 1},
		{"ok/pump with unexpected firmware isolated", func(in *Input) { in.Device.FirmwareMismatch = true }, "vulnerable-clinical-device", ActionQuarantine, "clinical-isolated", 1},
		{"ok/tablet with high vulnerability isolated", from(tablet, func(in *Input) { in.Vulns.MaxCVSS = 7.2 }), "vulnerable-guest-device", ActionQuarantine, "guest-isolated", 1},
		{"ok/clinical device", func(*Input) {}, "clinical-device", ActionAllow, "clinical", 3},
		{"ok/new clinical device of a known model", func(in *Input) { in.History = History{} }, "clinical-device", ActionAllow, "clinical", 3},
		{"ok/guest-facing device", from(tablet, func(*Input) {}), "guest-facing-device", ActionAllow, "guest-facing", 2},
		{"fail/unapproved model", func(in *Input) { in.Device.Model = "coffee-machine" }, "unapproved-model", ActionDeny, "", 0},
	})
}

func TestExampleOTUtility(t *testing.T) {
	sensor := func() Input { return fleetDevice("flow-meter-3") }
	rtu := func() Input { return fleetDevice("rtu-560") }
	from := func(b func() Input, edit func(*Input)) func(*Input) {
		return func(in *Input) { *in = b(); edit(in) }
	}
	saturday := time.Date(2026, 3, 7, 10, 0, 0, 0, time.UTC)
	night := time.Date(2026, 3, 3, 22, 30, 0, 0, time.UTC)
	runExample(t, "ot-utility.yaml", sensor, []exampleCase{
		{"fail/distrusted manufacturer", func(in *Input) { in.Provenance.ManufacturerTrusted = false }, "distrusted-manufacturer", ActionDeny, "", 0},
		{"fail/not our device", func(in *Input) { in.Provenance.OwnerOurs = false }, "not-our-device", ActionDeny, "", 0},
		{"fail/suspected clone", func(in *Input) { in.Provenance.Clone = true }, "suspected-clone", ActionHold, "", 0},
		{"fail/expired idevid", func(in *Input) { in.Provenance.IDevIDExpired = true }, "expired-idevid", ActionDeny, "", 0},
		{"fail/actuator with unexpected firmware held", from(rtu, func(in *Input) { in.Device.FirmwareMismatch = true }), "actuator-firmware-mismatch", ActionHold, "", 0},
		{"fail/actuator with critical vulnerability held", from(rtu, func(in *Input) { in.Vulns.MaxCVSS = 9.3 }), "actuator-critical-vulnerability", ActionHold, "", 0},
		{"fail/new actuator on a Saturday", from(rtu, func(in *Input) { in.History, in.Request.Time = History{}, saturday }), "actuator-outside-staffed-hours", ActionHold, "", 0},
		{"fail/new actuator at night", from(rtu, func(in *Input) { in.History, in.Request.Time = History{}, night }), "actuator-outside-staffed-hours", ActionHold, "", 0},
		{"ok/known actuator renews at night", from(rtu, func(in *Input) { in.Request.Renewal, in.Request.Time = true, night }), "actuator", ActionAllow, "control", 3},
		{"ok/new actuator in staffed hours", from(rtu, func(in *Input) { in.History = History{} }), "actuator", ActionAllow, "control", 3},
		{"ok/sensor with unexpected firmware quarantined", func(in *Input) { in.Device.FirmwareMismatch = true }, "sensor-firmware-mismatch", ActionQuarantine, "sensor-quarantine", 1},
		{"ok/sensor with high vulnerability quarantined", func(in *Input) { in.Vulns.MaxCVSS = 7.0 }, "sensor-vulnerability", ActionQuarantine, "sensor-quarantine", 1},
		{"ok/actuator with high vulnerability stays", from(rtu, func(in *Input) { in.Vulns.MaxCVSS = 8.0 }), "actuator", ActionAllow, "control", 3},
		{"ok/sensor", func(*Input) {}, "sensor", ActionAllow, "monitoring", 2},
		{"fail/unknown model", func(in *Input) { in.Device.Model = "camera-2" }, "unknown-model", ActionDeny, "", 0},
	})
}

// TestExamplesParse parses every file in examples/: Parse checks that each
// zone a rule names is defined.
func TestExamplesParse(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("examples", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 {
		t.Fatalf("found %d example policies, want at least 3", len(files))
	}
	for _, f := range files {
		p, err := Load(f)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		zones := map[string]bool{}
		for _, z := range p.Zones() {
			zones[z.Name] = true
		}
		for _, r := range p.Rules() {
			if (r.Zone != "") != (r.Action == ActionAllow || r.Action == ActionQuarantine) || (r.Zone != "" && !zones[r.Zone]) {
				t.Errorf("%s: rule %s (%s) names zone %q", f, r.Name, r.Action, r.Zone)
			}
		}
	}
}
