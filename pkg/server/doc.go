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
package server
