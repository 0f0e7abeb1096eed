package operator

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// Role is what an operator may do. Roles are ordered: each includes the
// rights of the ones before it.
type Role int

// The roles, weakest first. RoleNone is no role at all: it allows nothing.
const (
	RoleNone Role = iota
	// RoleAuditor reads (GET and HEAD only).
	RoleAuditor
	// RoleOperator reads and acts on devices (approve, deny, revoke,
	// decommission, re-onboard, rotate, re-evaluate), but changes no
	// trust, manifest, policy, transfer or vulnerability data.
	RoleOperator
	// RoleAdmin may do everything, including managing operators.
	RoleAdmin
)

var roleNames = map[Role]string{RoleAuditor: "auditor", RoleOperator: "operator", RoleAdmin: "admin"}

// String returns the role's name ("admin", "operator", "auditor"), or
// "none".
func (r Role) String() string {
	if s, ok := roleNames[r]; ok {
		return s
	}
	return "none"
}

// ParseRole returns the role named s.
func ParseRole(s string) (Role, error) {
	for r, n := range roleNames {
		if n == s {
			return r, nil
		}
	}
	return RoleNone, fmt.Errorf("%w: %q (want admin, operator or auditor)", ErrRole, s)
}

// Allows reports whether r includes the rights of min. RoleNone allows
// nothing and is allowed by nothing.
func (r Role) Allows(min Role) bool {
	return min > RoleNone && r.valid() && r >= min
}

func (r Role) valid() bool { _, ok := roleNames[r]; return ok }

// MarshalText implements encoding.TextMarshaler.
func (r Role) MarshalText() ([]byte, error) {
	if !r.valid() {
		return nil, fmt.Errorf("%w: %d", ErrRole, int(r))
	}
	return []byte(r.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (r *Role) UnmarshalText(b []byte) error {
	v, err := ParseRole(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// URNPrefix starts the URI SAN of every operator certificate.
const URNPrefix = "urn:embark:operator:"

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// CheckName validates an operator name: 1 to 63 characters of [a-z0-9._-],
// starting with a letter or digit. Names become file names and URN parts.
func CheckName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%w: %q (want 1-63 characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit)", ErrName, name)
	}
	return nil
}

// Identity is an authenticated operator.
type Identity struct {
	Name string `json:"name"`
	Role Role   `json:"role"`
	// Serial is the certificate's serial number, lower-case hex.
	Serial string `json:"serial,omitempty"`
}

// URI returns the identity's URI SAN, urn:embark:operator:<role>:<name>.
func (id Identity) URI() *url.URL {
	return &url.URL{Scheme: "urn", Opaque: "embark:operator:" + id.Role.String() + ":" + id.Name}
}

// parseURI reads an operator URN.
func parseURI(u *url.URL) (Identity, error) {
	s := u.String()
	rest, ok := strings.CutPrefix(s, URNPrefix)
	if !ok {
		return Identity{}, fmt.Errorf("%w: URI %q", ErrNotOperator, s)
	}
	roleName, name, ok := strings.Cut(rest, ":")
	if !ok {
		return Identity{}, fmt.Errorf("%w: URI %q", ErrNotOperator, s)
	}
	role, err := ParseRole(roleName)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: URI %q: %w", ErrNotOperator, s, err)
	}
	if err := CheckName(name); err != nil {
		return Identity{}, fmt.Errorf("%w: URI %q: %w", ErrNotOperator, s, err)
	}
	return Identity{Name: name, Role: role}, nil
}
