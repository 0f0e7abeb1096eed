// Package operator holds the identities of the people who run Embark: a
// dedicated operator CA, the certificates it issues, the roles they carry,
// and the registry records that say which of them are still valid.
//
// # Operator CA
//
// The operator CA lives in DIR/operators/ (ca.crt, ca.key with mode 0600):
// a self-signed ECDSA P-256 root, distinct from the device CA, so that no
// device certificate can ever pass as an operator certificate. [Init]
// creates it on first use; [Load] refuses a key file readable by others.
//
// # Identities and roles
//
// An operator certificate names its holder and role in a single URI SAN,
// urn:embark:operator:<role>:<name> ([Identity.URI]), with the clientAuth
// extended key usage. Roles are ordered: [RoleAuditor] reads,
// [RoleOperator] also acts on devices, [RoleAdmin] may do everything.
//
// # Registry
//
// Each issued certificate is recorded in the registry (opaque records of
// kind [KindOperator], keyed by name) and a removed one goes on a deny list
// (kind [KindRemoved], keyed by serial). [Check] accepts a certificate only
// if it is the current one of a registered operator and not on the deny
// list; the admin API calls it on every request, so that a removal takes
// effect on the next request, live connections included.
package operator
