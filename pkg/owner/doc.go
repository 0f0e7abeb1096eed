// Package owner holds the operator's ownership identity: the owner name
// that manufacturers write into manifests for the devices they sold to this
// operator, and a hybrid key pair (package hybridsig) whose KeyID they may
// write as well. The key signs transfer records when the operator sells a
// device on; `embark init` creates it in the data directory (owner.key,
// 0600; owner.pub for manufacturers and buyers).
package owner
