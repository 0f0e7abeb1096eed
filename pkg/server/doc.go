// Package server assembles Embark: it reads the configuration, opens the
// registry and the CA in the data directory, builds the onboarding core and
// starts the listeners (EST-coaps over DTLS and over TLS, the local admin
// socket).
//
// # Data directory
//
//	embark.json    configuration (package config)
//	ca/            root and intermediate CA, server certificate (package pki; keys 0600)
//	registry.db    the bbolt registry (package store/bolt)
//	admin.sock     the local admin socket (0600) while the server runs
//
// # CA rollover
//
// [Server.RolloverCA] introduces a new intermediate (or root) while the
// server runs, and moves Embark's own certificates onto it (ca.go); the
// previous intermediate keeps verifying until [Server.RetireIntermediate],
// which is refused while live certificates chain to it. The admin API
// serves both (GET /v1/ca, POST /v1/ca/rollover, POST
// /v1/ca/intermediates/{id}/retire) and `embark ca rollover|status|retire`.
package server
