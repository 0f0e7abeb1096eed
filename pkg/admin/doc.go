// Package admin is Embark's operator API: JSON over HTTP, served on the
// local admin socket (a unix socket, mode 0600, in the data directory) and,
// later, on the HTTPS admin API with the same handlers.
//
// The CLI talks to a running server through [Client]; with no server
// running it opens the data directory itself and calls the same [Handler]
// in process, so both paths share one implementation.
//
// # Endpoints
//
//	GET  /v1/status                       server and registry status
//	GET  /v1/devices?state=&after=&limit= devices, in identifier order
//	GET  /v1/devices/{id}                 one device and its certificates
//	GET  /v1/manufacturers                trusted manufacturers
//	POST /v1/manufacturers                trust a manufacturer (body: trust bundle JSON)
//	POST /v1/manifests                    import a signed manifest (body: DSSE envelope)
//	GET  /v1/audit?after=&limit=          audit entries
//
// Errors are {"error": "..."} with 400 (bad input), 404 (unknown), 409
// (conflicts with the registry), 413 (body or manifest over its size limit)
// or 500.
package admin
