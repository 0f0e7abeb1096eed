// Package brokertest runs a real Mosquitto broker for tests, configured the
// way package broker describes for an external broker.
//
// [StartMosquitto] writes the certificates, the configuration and both ACLs
// that [broker.MosquittoConfig] and [broker.MosquittoServiceACL] generate to
// t.TempDir(), starts /usr/sbin/mosquitto (or mosquitto from PATH) on two
// free loopback ports, waits until both listen and stops it when the test
// ends. Without Mosquitto the test is skipped, unless the environment sets
// EMBARK_INTEROP_REQUIRED=1, in which case it fails.
package brokertest
